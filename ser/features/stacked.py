"""Several front ends side by side: their features concatenated per frame, on one aligned frame grid."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from ser.features.base import FeatureExtractor

__all__ = ["Stacked"]


class Stacked(FeatureExtractor):
    """waves [B, N] -> features [B, T, sum of the views' out_dim], frame lengths [B].

    The views must share the sample rate and the hop. Their frame grids may start at different places
    (``first_frame_centre``: the log-mels' frame 0 is centred on sample 0, openSMILE's on its 10th ms), so
    each view's leading frames before the latest-starting view's frame 0 are dropped, and a clip has as many
    frames as its shortest view has left: frame t of every view is centred on the same sample (to within
    what a view declares; eGeMAPS' F0 descriptors sit 20 ms later, see ``EGeMAPS.first_frame_centre``).
    Each view pads nothing into a clip, so padding never changes a clip's stacked features either.

    ``views`` maps a name to an extractor (Hydra builds them from ``features/<view>`` configs); the order
    of the mapping is the order of the channels.
    """

    def __init__(self, views: Mapping[str, FeatureExtractor]) -> None:
        if not views:
            raise ValueError("features.views is empty: name at least one front end to stack")
        extractors = dict(views)
        first = next(iter(extractors.values()))
        for name, view in extractors.items():
            if (view.sample_rate, view.hop_length) != (first.sample_rate, first.hop_length):
                raise ValueError(
                    f"features.views.{name}: {view.sample_rate} Hz, hop {view.hop_length}; every view needs "
                    f"{first.sample_rate} Hz and hop {first.hop_length} so that frames line up (set each view's "
                    f"sample_rate and hop_length alike, e.g. features.views.{name}.hop_length)"
                )
        super().__init__(first.sample_rate, first.hop_length)
        self.views = nn.ModuleDict(extractors)
        start = max(view.first_frame_centre for view in extractors.values())
        self.offsets: dict[str, int] = {}
        for name, view in extractors.items():
            shift = start - view.first_frame_centre
            if shift % self.hop_length:
                raise ValueError(
                    f"features.views.{name}: its frames are centred {shift} samples off the other views' grid "
                    f"(hop {self.hop_length}); stack views whose frames fall on the same grid"
                )
            self.offsets[name] = shift // self.hop_length
        self._first_frame_centre = start

    @property
    def out_dim(self) -> int:
        """The views' feature sizes added up."""
        return sum(view.out_dim for view in self.views.values())

    @property
    def min_samples(self) -> int:
        """The most any view needs."""
        return max(view.min_samples for view in self.views.values())

    @property
    def first_frame_centre(self) -> int:
        """The latest-starting view's first frame: where the stacked frame 0 is centred."""
        return self._first_frame_centre

    @property
    def context_samples(self) -> int | None:
        """The widest view's context when every view is framed alike; otherwise whole clips."""
        contexts = [view.context_samples for view in self.views.values()]
        if any(c is None for c in contexts) or any(self.offsets.values()):
            return None
        return max(contexts)

    def num_frames(self, num_samples: torch.Tensor) -> torch.Tensor:
        """Frames every view has after its dropped leading frames (the fewest wins)."""
        counts = [view.num_frames(num_samples) - self.offsets[name] for name, view in self.views.items()]
        if isinstance(num_samples, torch.Tensor):
            return torch.stack([torch.as_tensor(c) for c in counts]).min(dim=0).values.clamp(min=0)
        return max(min(counts), 0)

    def too_short(self, num_samples: int) -> str:
        neediest = max(self.views.values(), key=lambda view: view.min_samples)
        return neediest.too_short(num_samples)

    def forward(self, waves: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """waves [B, N] (zero padded past each clip's length) -> (features [B, T, F], frame_lengths [B])."""
        waves, lengths_t = self.check_batch(waves, lengths)
        frames = int(self.num_frames(torch.tensor(waves.shape[1])))
        parts = []
        for name, view in self.views.items():
            feats, _ = view(waves, lengths_t)
            start = self.offsets[name]
            parts.append(feats[:, start : start + frames])
        frame_lengths = self.num_frames(lengths_t)
        # A view with more valid frames than the shortest keeps values past the clip's stacked end.
        return self.mask_frames(torch.cat(parts, dim=-1), frame_lengths), frame_lengths
