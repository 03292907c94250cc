"""The network of the original work: LSTM -> dropout -> dense (ReLU) -> 12-way output.

Padded batches go through the LSTM as they are and each clip is pooled over its own valid frames
(``mean``, the ``last`` valid frame as in the original, or learned ``attention``), so padding never
changes a clip's output.
"""

from __future__ import annotations

import torch

from ser.labels import NUM_CLASSES
from ser.models.components import ClassifierHead, MaskedLSTM, Pooling, SERNetwork

# Parameter names of checkpoints written before the network was built from shared components.
_OLD_PREFIXES = {
    "forward_layers.": "lstm.forward_layers.",
    "backward_layers.": "lstm.backward_layers.",
    "dense.": "head.dense.",
    "output.": "head.output.",
}


class LSTMClassifier(SERNetwork):
    """LSTM over [B, T, F] features -> pooling -> dropout -> dense + ReLU -> logits [B, num_classes]."""

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
        attention_dim: int = 64,
    ) -> None:
        super().__init__(input_dim, num_classes)
        self.lstm = MaskedLSTM(input_dim, hidden_size, num_layers, bidirectional, dropout)
        self.head = ClassifierHead(self.lstm.out_dim, dense_size, num_classes, dropout)
        self.pool = Pooling(pooling, self.lstm.out_dim, bidirectional, attention_dim)
        self._register_load_state_dict_pre_hook(_rename_old_keys)

    def encode(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Pooled LSTM state per clip: [B, hidden * directions]."""
        lengths = lengths.to(features.device)
        x, mask = self.normalized(features, lengths)
        return self.pool(self.lstm(x, lengths, mask), lengths, mask)

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.head(self.encode(features, lengths))


def _rename_old_keys(state_dict: dict, prefix: str, *args: object) -> None:
    for key in [k for k in state_dict if k.startswith(prefix)]:
        rest = key[len(prefix) :]
        for old, new in _OLD_PREFIXES.items():
            if rest.startswith(old):
                state_dict[prefix + new + rest[len(old) :]] = state_dict.pop(key)
                break
