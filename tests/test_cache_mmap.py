"""The feature cache maps its entries: identical features to a full load, pages backed by the file, not copied."""

from __future__ import annotations

from pathlib import Path

import torch

from ser.data.cache import FeatureSet, load_state


def _mapped_files(ptr: int) -> list[str]:
    """Paths of the file mappings of this process that hold the address ``ptr``."""
    found = []
    for line in Path("/proc/self/maps").read_text().splitlines():
        fields = line.split(maxsplit=5)
        lo, hi = (int(x, 16) for x in fields[0].split("-"))
        if lo <= ptr < hi and len(fields) == 6:
            found.append(fields[5].strip())
    return found


def _entry(tmp_path: Path) -> Path:
    gen = torch.Generator().manual_seed(0)
    fs = FeatureSet(
        clip_ids=["a", "b", "c"],
        features=torch.randn(300, 16, generator=gen),
        offsets=torch.tensor([0, 100, 250, 300]),
    )
    path = tmp_path / "features-x.pt"
    torch.save(fs.to_state(), path)  # as FeatureCache writes it: torch.save's default zip format
    return path


def test_mapped_load_equals_full_load(tmp_path: Path) -> None:
    path = _entry(tmp_path)
    mapped = FeatureSet.from_state(load_state(path))
    full = FeatureSet.from_state(load_state(path, mmap=False))
    assert mapped.clip_ids == full.clip_ids
    assert torch.equal(mapped.offsets, full.offsets)
    assert torch.equal(mapped.features, full.features)
    for i in range(len(full)):
        assert torch.equal(mapped.get(i), full.get(i))


def test_mapped_features_are_backed_by_the_cache_file(tmp_path: Path) -> None:
    path = _entry(tmp_path)
    mapped = FeatureSet.from_state(load_state(path))
    assert str(path.resolve()) in _mapped_files(mapped.features.data_ptr())
    assert str(path.resolve()) in _mapped_files(mapped.get(2).data_ptr())  # rows are views into the mapping
    full = FeatureSet.from_state(load_state(path, mmap=False))
    assert str(path.resolve()) not in _mapped_files(full.features.data_ptr())  # the old load: an anonymous copy
