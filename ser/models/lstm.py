"""The network of the original work: LSTM -> dropout -> dense (ReLU) -> 12-way output.

Padded batches go through the LSTM as they are and each clip's result is read at its own last
valid frame (or averaged over its valid frames), so padding never changes a clip's output. A
backward direction runs over each clip reversed within its own length, for the same reason.
Measured (bench/bench_lstm_padding.py): forward + backward is about 25-30x faster on CPU than
``pack_padded_sequence`` for length-bucketed batches, with identical per-clip states and gradients.
"""

from __future__ import annotations

import torch
from torch import nn

from ser.labels import NUM_CLASSES


class Normalizer(nn.Module):
    """Per-dimension standardization with statistics stored in the checkpoint."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    def set_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.mean.copy_(mean)
        self.std.copy_(std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def valid_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """[B, T] bool, True on each clip's valid frames."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


def reverse_within_length(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse each sequence's valid frames in place of the padded ones: [a b c 0] -> [c b a 0]."""
    t = torch.arange(x.shape[1], device=x.device)[None, :]
    idx = (lengths[:, None] - 1 - t).clamp_min(0)
    idx = torch.where(t < lengths[:, None], idx, t)
    return x.gather(1, idx[..., None].expand_as(x))


class LSTMClassifier(nn.Module):
    """LSTM over [B, T, F] features -> dropout -> dense + ReLU -> logits [B, num_classes]."""

    def __init__(
        self,
        input_dim: int,
        num_classes: int = NUM_CLASSES,
        hidden_size: int = 128,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.3,
        dense_size: int = 64,
        pooling: str = "mean",
    ) -> None:
        super().__init__()
        if pooling not in ("last", "mean"):
            raise ValueError(f"model.pooling={pooling!r}: choose last or mean")
        if num_layers < 1:
            raise ValueError(f"model.num_layers={num_layers}: need at least 1")
        self.pooling = pooling
        self.bidirectional = bidirectional
        self.normalizer = Normalizer(input_dim)
        directions = 2 if bidirectional else 1
        self.forward_layers = nn.ModuleList()
        self.backward_layers = nn.ModuleList()
        for layer in range(num_layers):
            in_dim = input_dim if layer == 0 else hidden_size * directions
            self.forward_layers.append(nn.LSTM(in_dim, hidden_size, batch_first=True))
            if bidirectional:
                self.backward_layers.append(nn.LSTM(in_dim, hidden_size, batch_first=True))
        self.dropout = nn.Dropout(dropout)
        self.dense = nn.Linear(hidden_size * directions, dense_size)
        self.output = nn.Linear(dense_size, num_classes)

    def encode(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Pooled LSTM state per clip: [B, hidden * directions]."""
        lengths = lengths.to(features.device)
        mask = valid_mask(lengths, features.shape[1])[..., None]
        x = self.normalizer(features) * mask
        for i, fwd in enumerate(self.forward_layers):
            if i > 0:
                x = self.dropout(x)
            out_f, _ = fwd(x)
            if self.bidirectional:
                out_b, _ = self.backward_layers[i](reverse_within_length(x, lengths))
                out_b = reverse_within_length(out_b, lengths)
                x = torch.cat([out_f, out_b], dim=-1) * mask
            else:
                x = out_f * mask
        if self.pooling == "mean":
            return x.sum(1) / lengths[:, None].clamp_min(1).to(x.dtype)
        last = (lengths - 1).clamp_min(0)
        h = x.shape[-1] // (2 if self.bidirectional else 1)
        fwd_last = x[torch.arange(x.shape[0], device=x.device), last, :h]
        if not self.bidirectional:
            return fwd_last
        return torch.cat([fwd_last, x[:, 0, h:]], dim=-1)  # backward direction ends at frame 0

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        z = self.dropout(self.encode(features, lengths))
        return self.output(torch.relu(self.dense(z)))
