"""Features of one long clip in bounded memory: streamed blocks in, overlapping chunks through the extractor."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch

from ser.features.base import FeatureExtractor


@dataclass
class StreamedFeatures:
    """A long clip's features [T, F] in consecutive chunks, and what the cache checks on every clip.

    The chunks stay apart: the cache concatenates every clip's features once, so joining them here would
    hold a long clip's features twice for nothing.
    """

    chunks: list[torch.Tensor] | None  # None when a non-finite sample stopped the extraction
    samples: int
    peak: float
    finite: bool

    @property
    def features(self) -> torch.Tensor | None:
        return None if self.chunks is None else torch.cat(self.chunks)


def _frames(extractor: FeatureExtractor, wave: np.ndarray) -> torch.Tensor:
    with torch.inference_mode():
        feats, frames = extractor(torch.from_numpy(wave)[None])
    return feats[0, : int(frames[0])]


def extract_chunked(
    extractor: FeatureExtractor, blocks: Iterable[np.ndarray], chunk_frames: int = 6000
) -> StreamedFeatures:
    """The extractor's features of the clip whose samples arrive as ``blocks``, ``chunk_frames`` frames at a time.

    Frame t sits at sample t * hop and depends on the samples within ``extractor.context_samples`` of it (and
    on where the clip starts and ends), so each chunk is extracted from the samples of its frames plus that
    context on either side, rounded out to whole hops, and keeps only its own frames: the result equals
    extracting the whole clip at once (tests/test_long_inputs.py), while memory holds one chunk.
    """
    context = extractor.context_samples
    if context is None:
        raise ValueError(f"{type(extractor).__name__} frames depend on the whole clip; it cannot be chunked")
    hop = int(extractor.hop_length)
    ctx = -(-int(context) // hop) * hop
    # Kept before a chunk's first sample so that the last chunk can reach back to min_samples if it must.
    margin = -(-int(extractor.min_samples) // hop) * hop
    buf = np.zeros(0, dtype=np.float32)
    base = 0  # buf holds the samples [base, base + buf.size) of the clip
    first = 0  # the next frame to extract
    out: list[torch.Tensor] = []
    peak, total = 0.0, 0
    for block in blocks:
        if not np.isfinite(block).all():
            return StreamedFeatures(None, total + block.size, peak, finite=False)
        if block.size:
            peak = max(peak, float(np.max(np.abs(block))))
        total += block.size
        buf = np.concatenate([buf, block]) if buf.size else block
        # Frames [first, first + chunk_frames) are final once the samples reach the last one's context.
        while base + buf.size >= (first + chunk_frames - 1) * hop + ctx:
            start = max(0, first * hop - ctx)
            stop = (first + chunk_frames - 1) * hop + ctx
            feats = _frames(extractor, buf[start - base : stop - base])
            offset = start // hop
            out.append(feats[first - offset : first + chunk_frames - offset].clone())
            first += chunk_frames
            drop = max(0, first * hop - ctx - margin) - base
            buf, base = buf[drop:], base + drop
    num = int(extractor.num_frames(torch.tensor(total)))
    if first < num:
        start = max(0, first * hop - ctx)
        while start > 0 and total - start < extractor.min_samples:
            start -= hop
        feats = _frames(extractor, buf[start - base :])
        offset = start // hop
        out.append(feats[first - offset : num - offset].clone())
    if sum(c.shape[0] for c in out) != num:
        raise RuntimeError(f"chunked extraction gave {sum(c.shape[0] for c in out)} frames, expected {num}")
    return StreamedFeatures(out, total, peak, finite=True)
