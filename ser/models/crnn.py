"""CRNN: strided 1-D convolutions over time -> (Bi)LSTM -> attention pooling -> dropout -> dense -> logits.

The convolutions shorten the sequence (stride 2 twice: 4x fewer frames), which makes the recurrent
part about 4x cheaper and lets it see longer context per step. Every layer works per frame or on
zeroed padding, so padding never changes a clip's output: before each convolution the frames past a
clip's (shortened) length are zeroed, which is exactly the zero padding the clip would get alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ser.labels import NUM_CLASSES
from ser.models.components import ClassifierHead, MaskedLSTM, Pooling, SERNetwork, valid_mask


class ConvBlock(nn.Module):
    """Conv1d over time -> LayerNorm over channels (per frame) -> ReLU -> dropout."""

    def __init__(self, in_dim: int, channels: int, kernel_size: int, stride: int, dropout: float) -> None:
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"model.kernel_size={kernel_size}: use an odd size (frames stay centred)")
        if stride < 1:
            raise ValueError(f"model.strides: each stride must be >= 1, got {stride}")
        self.stride = stride
        self.kernel_size = kernel_size
        self.padding = kernel_size // 2
        self.conv = nn.Conv1d(in_dim, channels, kernel_size, stride=stride, padding=self.padding)
        self.norm = nn.LayerNorm(channels)
        self.dropout = nn.Dropout(dropout)

    def out_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return torch.div(lengths + 2 * self.padding - self.kernel_size, self.stride, rounding_mode="floor") + 1

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, T, F] with padding zeroed -> ([B, T', C] with padding zeroed, lengths T')."""
        y = self.conv(x.transpose(1, 2)).transpose(1, 2)
        out_lengths = self.out_lengths(lengths)
        mask = valid_mask(out_lengths, y.shape[1])[..., None]
        return self.dropout(torch.relu(self.norm(y))) * mask, out_lengths


class CRNN(SERNetwork):
    """Conv front-end (frames / prod(strides)) -> (Bi)LSTM -> pooling -> dropout -> dense + ReLU -> logits."""

    def __init__(
        self,
        input_dim: int,
        num_classes: int = NUM_CLASSES,
        channels: int = 128,
        kernel_size: int = 5,
        strides: Sequence[int] = (2, 2),
        conv_dropout: float = 0.1,
        hidden_size: int = 128,
        num_layers: int = 1,
        bidirectional: bool = True,
        dropout: float = 0.3,
        dense_size: int = 128,
        pooling: str = "attention",
        attention_dim: int = 64,
    ) -> None:
        super().__init__(input_dim, num_classes)
        dims = [input_dim] + [channels] * len(strides)
        self.convs = nn.ModuleList(
            ConvBlock(dims[i], channels, kernel_size, int(s), conv_dropout) for i, s in enumerate(strides)
        )
        self.lstm = MaskedLSTM(dims[-1], hidden_size, num_layers, bidirectional, dropout)
        self.pool = Pooling(pooling, self.lstm.out_dim, bidirectional, attention_dim)
        self.head = ClassifierHead(self.lstm.out_dim, dense_size, num_classes, dropout)

    def out_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Frames per clip after the front-end."""
        for block in self.convs:
            lengths = block.out_lengths(lengths)
        return lengths

    def encode(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        lengths = lengths.to(features.device)
        x, _ = self.normalized(features, lengths)
        for block in self.convs:
            x, lengths = block(x, lengths)
        mask = valid_mask(lengths, x.shape[1])[..., None]
        return self.pool(self.lstm(x, lengths, mask), lengths, mask)

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.head(self.encode(features, lengths))
