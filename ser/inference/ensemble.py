"""Several checkpoints as one Predictor: each member extracts its own features, probabilities are averaged.

``load_predictor`` is what ``ser.predict`` calls: one checkpoint gives the plain :class:`Predictor`
(behaviour unchanged), a list or a run/sweep folder (every job's ``checkpoints/best.ckpt``) gives an
:class:`EnsemblePredictor`. Files, timelines and live streams all go through ``forward_batch``, so
they average alike.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch

from ser.inference.predictor import Predictor
from ser.models.checkpoint import rebuild
from ser.models.ensemble import check_members, resolve_checkpoints


class EnsemblePredictor(Predictor):
    """Members' mean probabilities. They share classes and sample rate (they are fed the same decoded audio);
    features, normalization, network and loss may differ. ``net``/``extractor`` are the first member's, for
    code that inspects one model; every prediction uses all members."""

    def __init__(self, members: Sequence[Predictor]) -> None:
        if not members:
            raise ValueError("an ensemble needs at least one member")
        first = members[0]
        super().__init__(
            first.net,
            first.extractor,
            first.to_probabilities,
            first.classes,
            first.sample_rate,
            device=first.device,
            batch_size=first.batch_size,
            source=", ".join(m.source for m in members),
            config=first.config,
            # "speaker" when any member needs a speaker's statistics: callers then know fit_speaker matters.
            normalization="speaker" if any(m.normalization == "speaker" for m in members) else first.normalization,
        )
        self.members = list(members)
        # Every member must be able to frame the shortest input.
        self.min_samples = max(m.min_samples for m in members)

    @classmethod
    def from_checkpoints(
        cls, spec: str | Path | Iterable[str | Path], device: str | torch.device = "cpu", batch_size: int = 64
    ) -> EnsemblePredictor:
        """Members from checkpoint files, a list or run/sweep folders (ser.models.ensemble.resolve_checkpoints)."""
        models = [rebuild(p) for p in resolve_checkpoints(spec)]
        check_members(models, same_sample_rate=True)
        return cls([Predictor.from_rebuilt(m, device=device, batch_size=batch_size) for m in models])

    @torch.inference_mode()
    def forward_batch(self, waves: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Mean of the members' probabilities [B, C] of a zero-padded batch of waves."""
        return torch.stack([m.forward_batch(waves, lengths) for m in self.members]).mean(0)

    def fit_speaker(self, waves: Sequence[np.ndarray]) -> None:
        for m in self.members:
            m.fit_speaker(waves)


def load_predictor(
    ckpt: str | Path | Iterable[str | Path], device: str | torch.device = "cpu", batch_size: int = 64
) -> Predictor:
    """A Predictor for ``ckpt=``: one checkpoint as before; several (a list, a sweep folder) as an ensemble."""
    paths = resolve_checkpoints(ckpt)
    if len(paths) == 1:
        return Predictor.from_checkpoint(paths[0], device=device, batch_size=batch_size)
    return EnsemblePredictor.from_checkpoints(paths, device=device, batch_size=batch_size)
