"""Building blocks every network shares: the network base, feature normalizer, masks, a padding-exact
LSTM stack and pooling over each clip's valid frames (mean, last, attention)."""

from __future__ import annotations

import torch
from torch import nn

from ser.labels import NUM_CLASSES

POOLINGS = ("mean", "last", "attention")


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


class SERNetwork(nn.Module):
    """Base of every network: ``forward(features [B, T, F], lengths [B]) -> logits [B, num_classes]``.

    It owns the feature normalizer (statistics of the training frames, set before training and saved
    in the checkpoint) so a checkpoint alone turns raw features into predictions.
    """

    def __init__(self, input_dim: int, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.input_dim = input_dim
        self.num_classes = num_classes
        self.normalizer = Normalizer(input_dim)

    def normalized(self, features: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalized features with padding zeroed, and the [B, T, 1] mask of valid frames."""
        mask = valid_mask(lengths, features.shape[1])[..., None]
        return self.normalizer(features) * mask, mask

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


def valid_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """[B, T] bool, True on each clip's valid frames."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


def reverse_within_length(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse each sequence's valid frames in place of the padded ones: [a b c 0] -> [c b a 0]."""
    t = torch.arange(x.shape[1], device=x.device)[None, :]
    idx = (lengths[:, None] - 1 - t).clamp_min(0)
    idx = torch.where(t < lengths[:, None], idx, t)
    rows = torch.arange(x.shape[0], device=x.device)[:, None]
    return x[rows, idx]  # advanced indexing, not gather+expand: exports to ONNX with dynamic frames


class MaskedLSTM(nn.Module):
    """(Bi)LSTM layers over padded batches whose outputs never depend on the padding.

    The padded batch goes through ``nn.LSTM`` as it is (no packing) and the backward direction runs
    over each clip reversed within its own length. Measured in bench/bench_lstm_padding.py: about
    25-30x faster on CPU than ``pack_padded_sequence`` for length-bucketed batches, identical results.
    """

    def __init__(
        self, input_dim: int, hidden_size: int, num_layers: int = 1, bidirectional: bool = False, dropout: float = 0.0
    ) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"model.num_layers={num_layers}: need at least 1")
        self.bidirectional = bidirectional
        directions = 2 if bidirectional else 1
        self.out_dim = hidden_size * directions
        self.forward_layers = nn.ModuleList()
        self.backward_layers = nn.ModuleList()
        for layer in range(num_layers):
            in_dim = input_dim if layer == 0 else self.out_dim
            self.forward_layers.append(nn.LSTM(in_dim, hidden_size, batch_first=True))
            if bidirectional:
                self.backward_layers.append(nn.LSTM(in_dim, hidden_size, batch_first=True))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """[B, T, F] (padding zeroed) -> [B, T, out_dim] (padding zeroed)."""
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
        return x


class Pooling(nn.Module):
    """One vector per clip from [B, T, D] frames, over each clip's valid frames only.

    ``mean``: average; ``last``: the state at the last valid frame (for a bidirectional stack, the
    backward half is read at frame 0, where that direction ends); ``attention``: a learned softmax
    weighting of the frames (additive attention, masked so padding gets zero weight).
    """

    def __init__(self, kind: str, dim: int, bidirectional: bool = False, attention_dim: int = 64) -> None:
        super().__init__()
        if kind not in POOLINGS:
            raise ValueError(f"model.pooling={kind!r}: choose one of {', '.join(POOLINGS)}")
        self.kind = kind
        self.bidirectional = bidirectional
        if kind == "attention":
            self.score = nn.Sequential(nn.Linear(dim, attention_dim), nn.Tanh(), nn.Linear(attention_dim, 1))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.kind == "mean":
            return x.sum(1) / lengths[:, None].clamp_min(1).to(x.dtype)
        if self.kind == "attention":
            scores = self.score(x).masked_fill(~mask, float("-inf"))
            weights = torch.softmax(scores, dim=1).nan_to_num(0.0)  # an empty clip has no valid frame
            return (weights * x).sum(1)
        last = (lengths - 1).clamp_min(0)
        h = x.shape[-1] // (2 if self.bidirectional else 1)
        fwd_last = x[torch.arange(x.shape[0], device=x.device), last, :h]
        if not self.bidirectional:
            return fwd_last
        return torch.cat([fwd_last, x[:, 0, h:]], dim=-1)


class ClassifierHead(nn.Module):
    """The original work's read-out: dropout -> dense + ReLU -> logits."""

    def __init__(self, in_dim: int, dense_size: int, num_classes: int, dropout: float) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.dense = nn.Linear(in_dim, dense_size)
        self.output = nn.Linear(dense_size, num_classes)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.output(torch.relu(self.dense(self.dropout(z))))
