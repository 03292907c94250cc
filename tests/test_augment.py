"""SpecAugment masks and mixup on padded feature batches: valid frames only, padding untouched, seeded."""

from __future__ import annotations

import pytest
import torch

from ser.features.augment import (
    MixedBatch,
    Mixup,
    RandomCrop,
    SpecAugment,
    mixup,
    mixup_targets,
    random_crop,
    spec_augment,
)


def _batch(lengths: list[int], dims: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Features in raw-dB-like range (never 0 inside a clip), zero padded past each clip's length."""
    g = torch.Generator().manual_seed(seed)
    lengths_t = torch.tensor(lengths)
    feats = torch.rand(len(lengths), max(lengths) + 7, dims, generator=g) * 50 - 80
    valid = torch.arange(feats.shape[1]) < lengths_t.unsqueeze(1)
    return feats * valid.unsqueeze(-1), lengths_t


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_masks_stay_within_valid_frames_and_padding_is_untouched() -> None:
    feats, lengths = _batch([50, 13, 80, 1])
    out = spec_augment(feats, lengths, 2, 5, 3, 10, value=123.0, generator=_gen(1))
    changed = out != feats
    assert changed.any()
    valid = torch.arange(feats.shape[1]) < lengths.unsqueeze(1)
    assert not changed[~valid].any()  # nothing past a clip's length
    assert torch.equal(out[~valid], feats[~valid])
    assert (out[changed] == 123.0).all()


def test_mask_widths_and_counts_respect_their_limits() -> None:
    feats, lengths = _batch([60] * 64, dims=20)
    out = spec_augment(
        feats, lengths, freq_masks=1, freq_width=4, time_masks=1, time_width=6, value=1e3, generator=_gen(2)
    )
    masked = out == 1e3
    for b in range(64):
        full_time = masked[b].all(dim=1)  # frames masked in every feature: the time mask
        full_freq = masked[b, :60].all(dim=0)  # features masked in every valid frame: the frequency band
        assert int(full_time.sum()) <= 6 and int(full_freq.sum()) <= 4
        for span in (full_time, full_freq):  # one mask each: contiguous
            idx = span.nonzero().flatten()
            if idx.numel():
                assert int(idx[-1] - idx[0]) + 1 == idx.numel()
    # Over many clips the widths reach their maximum and zero.
    time_widths = masked.all(dim=2).sum(dim=1)
    assert int(time_widths.max()) == 6 and int(time_widths.min()) == 0


def test_time_ratio_caps_masks_by_each_clips_length() -> None:
    feats, lengths = _batch([10, 200] * 32)
    out = spec_augment(feats, lengths, 0, 0, 1, 50, time_ratio=0.2, value=1e3, generator=_gen(3))
    widths = (out == 1e3).all(dim=2).sum(dim=1)
    assert int(widths[0::2].max()) <= 2  # 20% of 10 frames
    assert int(widths[1::2].max()) > 2


def test_same_seed_same_masks_and_p0_is_identity() -> None:
    feats, lengths = _batch([40, 25, 33])
    a = spec_augment(feats, lengths, generator=_gen(7))
    b = spec_augment(feats, lengths, generator=_gen(7))
    c = spec_augment(feats, lengths, generator=_gen(8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert spec_augment(feats, lengths, p=0.0, generator=_gen(7)) is feats
    assert torch.equal(spec_augment(feats, lengths, freq_masks=0, time_masks=0), feats)


def test_mean_fill_is_the_clips_own_mean() -> None:
    feats, lengths = _batch([30, 12] * 4, dims=4)
    out = spec_augment(feats, lengths, freq_masks=0, time_masks=1, time_width=30, generator=_gen(4))
    total = 0
    for b, n in enumerate(lengths.tolist()):
        mean = feats[b, :n].mean(dim=0)
        masked = (out[b, :n] != feats[b, :n]).all(dim=1)
        total += int(masked.sum())
        torch.testing.assert_close(out[b, :n][masked], mean.expand(int(masked.sum()), -1))
    assert total > 0


def test_module_acts_in_training_only() -> None:
    feats, lengths = _batch([40, 25])
    aug = SpecAugment(time_masks=2, time_width=10)
    assert not torch.equal(aug(feats, lengths, _gen(0)), feats)
    aug.eval()
    assert aug(feats, lengths, _gen(0)) is feats


def test_bad_arguments_raise() -> None:
    feats, lengths = _batch([10])
    with pytest.raises(ValueError, match="batch, frames, dims"):
        spec_augment(feats[0], lengths)
    with pytest.raises(ValueError, match="p="):
        spec_augment(feats, lengths, p=1.5)
    with pytest.raises(ValueError, match="value="):
        spec_augment(feats, lengths, value="median")


def test_mixup_mixes_valid_frames_with_a_looped_partner() -> None:
    feats, lengths = _batch([20, 7, 15, 30])
    labels = torch.tensor([0, 1, 2, 3])
    out = mixup(feats, lengths, labels, alpha=1.0, generator=_gen(5))
    assert isinstance(out, MixedBatch) and 0.5 <= out.lam <= 1.0
    assert torch.equal(out.lengths, lengths) and torch.equal(out.targets_a, labels)
    perm = [int((labels == t).nonzero()) for t in out.targets_b]
    for b, n in enumerate(lengths.tolist()):
        p_len = int(lengths[perm[b]])
        partner = feats[perm[b], torch.arange(n) % p_len]
        torch.testing.assert_close(out.features[b, :n], out.lam * feats[b, :n] + (1 - out.lam) * partner)
        assert torch.equal(out.features[b, n:], feats[b, n:])  # padding untouched


def test_mixup_is_seeded_and_alpha0_is_identity() -> None:
    feats, lengths = _batch([20, 7, 15, 30])
    labels = torch.arange(4)
    a = mixup(feats, lengths, labels, 0.4, _gen(9))
    b = mixup(feats, lengths, labels, 0.4, _gen(9))
    assert a.lam == b.lam and torch.equal(a.features, b.features) and torch.equal(a.targets_b, b.targets_b)
    same = mixup(feats, lengths, labels, 0.0, _gen(9))
    assert same.lam == 1.0 and torch.equal(same.features, feats)


def test_mixup_soft_targets_match_the_weighted_loss() -> None:
    feats, lengths = _batch([20, 7, 15, 30])
    out = mixup(feats, lengths, torch.tensor([0, 1, 2, 1]), 1.0, _gen(6))
    soft = mixup_targets(out, num_classes=3)
    assert torch.allclose(soft.sum(dim=1), torch.ones(4))
    logits = torch.randn(4, 3, generator=_gen(0))
    ce = torch.nn.functional.cross_entropy
    weighted = out.lam * ce(logits, out.targets_a) + (1 - out.lam) * ce(logits, out.targets_b)
    torch.testing.assert_close(ce(logits, soft), weighted)


def test_mixup_module_p_and_eval() -> None:
    feats, lengths = _batch([20, 7])
    labels = torch.tensor([0, 1])
    mix = Mixup(alpha=0.4, p=0.0)
    assert mix(feats, lengths, labels, _gen(0)).lam == 1.0
    mix = Mixup(alpha=0.4, p=1.0).eval()
    out = mix(feats, lengths, labels, _gen(0))
    assert out.lam == 1.0 and out.features is feats


def test_crop_keeps_one_window_of_each_clips_own_frames() -> None:
    feats, lengths = _batch([50, 13, 80, 30], dims=4)
    frame_id = torch.arange(feats.shape[1]).float().view(1, -1, 1) + 1  # 1-based, so padding (0) stands out
    feats = (frame_id + 1000 * torch.arange(4).view(-1, 1, 1)) * (feats != 0)
    out, kept = random_crop(feats, lengths, 30, generator=_gen(3))
    assert kept.tolist() == [30, 13, 30, 30] and out.shape == (4, 30, 4)
    for b, n in enumerate(kept.tolist()):
        window = out[b, :n, 0] - 1000 * b
        assert window[0] >= 1 and window[-1] <= lengths[b]  # inside the clip's own frames
        assert torch.equal(window, window[0] + torch.arange(n).float())  # consecutive
        assert (out[b, n:] == 0).all()  # zero padded past the window
    assert torch.equal(out[1, :13], feats[1, :13])  # a short clip is kept whole


def test_crop_starts_vary_are_seeded_and_a_fitting_batch_is_untouched() -> None:
    feats, lengths = _batch([200] * 64, dims=2)
    a, _ = random_crop(feats, lengths, 50, generator=_gen(4))
    b, _ = random_crop(feats, lengths, 50, generator=_gen(4))
    c, _ = random_crop(feats, lengths, 50, generator=_gen(5))
    assert torch.equal(a, b) and not torch.equal(a, c)
    starts = {int((feats[i, :, 0] == a[i, 0, 0]).nonzero()[0]) for i in range(64)}
    assert len(starts) > 20 and min(starts) >= 0 and max(starts) <= 150
    short, short_len = _batch([20, 9])
    out, kept = random_crop(short, short_len, 20)
    assert out is short and kept is short_len


def test_crop_module_acts_in_training_only_and_rejects_bad_sizes() -> None:
    feats, lengths = _batch([90, 40])
    crop = RandomCrop(32)
    assert crop(feats, lengths, _gen(0))[0].shape[1] == 32
    crop.eval()
    out, kept = crop(feats, lengths)
    assert out is feats and kept is lengths
    with pytest.raises(ValueError, match="max_frames=0"):
        RandomCrop(0)
    with pytest.raises(ValueError, match="max_frames=-3"):
        random_crop(feats, lengths, -3)


def test_crop_reaches_both_ends_and_keeps_the_lengths_dtype() -> None:
    feats, _ = _batch([12] * 200, dims=1)
    lengths = torch.full((200,), 12, dtype=torch.int32)
    out, kept = random_crop(feats, lengths, 10, generator=_gen(6))
    assert kept.dtype == torch.int32 and kept.tolist() == [10] * 200
    starts = {int((feats[i, :, 0] == out[i, 0, 0]).nonzero()[0]) for i in range(200)}
    assert starts == {0, 1, 2}  # every start from the first frame to length - max_frames


def test_crop_of_an_empty_clip_and_of_a_batch_padded_past_its_longest_clip() -> None:
    feats, lengths = _batch([40, 1], dims=3)
    lengths = torch.tensor([40, 0])
    out, kept = random_crop(feats, lengths, 16, generator=_gen(7))
    assert kept.tolist() == [16, 0] and out.shape == (2, 16, 3) and (out[1] == 0).all()
    wide, wide_len = _batch([10, 8], dims=3)  # padded to 17 frames, both clips shorter than the window
    out, kept = random_crop(wide, wide_len, 12)
    assert out is wide and kept is wide_len
