"""Padded batch + gather vs ``pack_padded_sequence`` for the CPU LSTM (the design claim of ser/models/lstm.py).

    .venv/bin/python bench/bench_lstm_padding.py                 # 4 batches, 3 repeats, 1 thread
    .venv/bin/python bench/bench_lstm_padding.py --mean          # + the mean-pooling read-out
    .venv/bin/python bench/bench_lstm_padding.py --threads 0     # torch's default thread count

Claim under test: "pack_padded_sequence made the CPU LSTM about 10x slower than a padded batch of
similar lengths with that gather". Forward + backward of ``nn.LSTM(64 -> 128)`` on length-bucketed
batches of 64 clips: lengths drawn uniformly from 150-400 frames for a pool of 50 batches, sorted and
cut into batches as BucketBatchSampler does (so the lengths within a batch are similar); the timed
batches are drawn from that pool and run in random order. The read-out is LSTMClassifier's
pooling=last: the output at each clip's last valid frame (padded: a gather; packed: h_n). ``--mean``
adds pooling=mean, the model's default: the mean over each clip's valid frames (padded: mask and sum;
packed: pad_packed_sequence first).

Each padded pass and each packed pass covers all batches; they alternate (padded, packed, padded, ...)
and the medians are compared. Before timing, the script asserts that both ways give the same per-clip
final states (and the same gradients; with ``--mean`` the same pooled means).

Threads: one intra-op thread by default. On a 2-core machine shared with other jobs, torch's default
of 2 threads measures OpenMP threads waiting for each other at every one of the LSTM's many small
ops (here 20-40x slower than 1 thread), not the LSTM; ``--threads 0`` keeps torch's default.
"""

from __future__ import annotations

import argparse
import time

import torch
from _common import interleave, load_note, machine_note, median, print_table
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


def make_batches(args: argparse.Namespace) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Length-bucketed, zero-padded batches [B, T, F] with their lengths (as ser.data.batching.collate pads).

    As BucketBatchSampler does: lengths of a pool of 50 batches are sorted and cut into batches; the
    timed batches are a random draw from that pool, in random order.
    """
    gen = torch.Generator().manual_seed(args.seed)
    pool = max(50, args.batches)
    lengths = torch.randint(args.min_len, args.max_len + 1, (pool * args.batch_size,), generator=gen)
    lengths = lengths.sort().values.split(args.batch_size)
    batches = []
    for i in torch.randperm(pool, generator=gen)[: args.batches].tolist():
        lens = lengths[i][torch.randperm(len(lengths[i]), generator=gen)]  # unsorted within the batch
        x = torch.randn(len(lens), int(lens.max()), args.input_size, generator=gen)
        x = x * (torch.arange(x.shape[1])[None, :, None] < lens[:, None, None])
        batches.append((x, lens))
    return batches


def padded_forward(lstm: nn.LSTM, x: torch.Tensor, lengths: torch.Tensor, pooling: str) -> torch.Tensor:
    out, _ = lstm(x)
    if pooling == "last":
        return out[torch.arange(x.shape[0]), lengths - 1]
    mask = torch.arange(x.shape[1])[None, :, None] < lengths[:, None, None]
    return (out * mask).sum(1) / lengths[:, None]


def packed_forward(lstm: nn.LSTM, x: torch.Tensor, lengths: torch.Tensor, pooling: str) -> torch.Tensor:
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    out, (h_n, _) = lstm(packed)
    if pooling == "last":
        return h_n[-1]
    padded, _ = pad_packed_sequence(out, batch_first=True)  # zeros past each clip's end
    return padded.sum(1) / lengths[:, None]


def step(lstm: nn.LSTM, forward, x: torch.Tensor, lengths: torch.Tensor, pooling: str, weight: torch.Tensor):
    """Forward + backward of a fixed linear read-out of the pooled states; returns states and gradients."""
    lstm.zero_grad(set_to_none=True)
    x = x.detach().requires_grad_(True)
    h = forward(lstm, x, lengths, pooling)
    (h * weight).sum().backward()
    return h.detach(), x.grad, [p.grad for p in lstm.parameters()]


def check_same(lstm: nn.LSTM, batches, weight: torch.Tensor, poolings: list[str]) -> None:
    for pooling in poolings:
        for x, lengths in batches:
            h_a, gx_a, gp_a = step(lstm, padded_forward, x, lengths, pooling, weight)
            h_b, gx_b, gp_b = step(lstm, packed_forward, x, lengths, pooling, weight)
            assert torch.allclose(h_a, h_b, atol=1e-5, rtol=1e-4), f"{pooling}: per-clip states differ"
            assert torch.allclose(gx_a, gx_b, atol=1e-5, rtol=1e-3), f"{pooling}: input gradients differ"
            for a, b in zip(gp_a, gp_b, strict=True):
                assert torch.allclose(a, b, atol=1e-4, rtol=1e-3), f"{pooling}: parameter gradients differ"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=4, help="batches per timed pass")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--min-len", type=int, default=150, help="shortest clip, frames")
    parser.add_argument("--max-len", type=int, default=400, help="longest clip, frames")
    parser.add_argument("--input-size", type=int, default=64)
    parser.add_argument("--hidden-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3, help="timed passes of each way, interleaved")
    parser.add_argument("--mean", action="store_true", help="also the mean-pooling read-out")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (0: torch's default)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(machine_note())

    torch.manual_seed(args.seed)
    lstm = nn.LSTM(args.input_size, args.hidden_size, batch_first=True)
    weight = torch.randn(args.hidden_size)
    batches = make_batches(args)
    poolings = ["last", "mean"] if args.mean else ["last"]
    check_same(lstm, batches, weight, poolings)
    spread = [int(lens.max() - lens.min()) for _, lens in batches]
    print(
        f"checked: padded+gather and packed give the same per-clip final states and gradients "
        f"({len(batches)} batches of {args.batch_size}, lengths {args.min_len}-{args.max_len} frames, "
        f"max-min within a batch: median {median(spread):.0f} frames)"
    )

    def timed(forward, pooling: str):
        def run() -> float:
            start = time.perf_counter()
            for x, lengths in batches:
                step(lstm, forward, x, lengths, pooling, weight)
            return time.perf_counter() - start

        return run

    rows = []
    for pooling in poolings:
        for forward in (padded_forward, packed_forward):  # untimed warm-up of both, one batch
            step(lstm, forward, *batches[0], pooling, weight)
        times = interleave(
            [("padded", timed(padded_forward, pooling)), ("packed", timed(packed_forward, pooling))], args.repeats
        )
        pad, pack = median(times["padded"]), median(times["packed"])
        per = 1000 / len(batches)
        rows += [
            (f"{pooling}: padded + {'gather' if pooling == 'last' else 'mask'} ms/batch", f"{pad * per:.1f}"),
            (f"{pooling}: pack_padded_sequence ms/batch", f"{pack * per:.1f}"),
            (f"{pooling}: packed / padded", f"{pack / pad:.2f}x"),
        ]
        if pooling == "last":
            ratio_last = pack / pad
    print_table(
        rows,
        f"bench_lstm_padding: forward+backward of nn.LSTM({args.input_size}->{args.hidden_size}), "
        f"medians of {args.repeats} interleaved passes over {len(batches)} batches",
    )
    if ratio_last >= 7:
        verdict = f"holds: packed is {ratio_last:.1f}x slower"
    elif ratio_last >= 2:
        verdict = f"holds only in part: packed is slower, but {ratio_last:.1f}x, not ~10x"
    else:
        verdict = f"does not hold: packed is {ratio_last:.2f}x the padded time"
    print(
        f'claim "pack_padded_sequence about 10x slower than padded + gather" ({torch.get_num_threads()} '
        f"intra-op thread(s), this machine): {verdict}"
    )
    print(load_note())


if __name__ == "__main__":
    main()
