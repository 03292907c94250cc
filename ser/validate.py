"""A run's config checked before any work: values that cannot work, unwritable folders, typos in keys."""

from __future__ import annotations

import difflib
import importlib
import inspect
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ser.results import SCALARS

# torch.set_float32_matmul_precision's values; null keeps torch's own ("highest").
MATMUL_PRECISIONS = ("highest", "high", "medium")
MATMUL_CHOICES = "choose highest, high or medium (or null)"


class ConfigError(ValueError):
    """A config value or a path that cannot work; the message is one line and names the key."""


def _get(cfg: DictConfig, key: str) -> Any:
    return OmegaConf.select(cfg, key, default=None, throw_on_missing=False)


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _walk(node: Any, prefix: str) -> Iterator[tuple[str, Any]]:
    """(dotted key, value) of every leaf of a plain config."""
    if isinstance(node, Mapping):
        for k, v in node.items():
            yield from _walk(v, f"{prefix}.{k}" if prefix else str(k))
    else:
        yield prefix, node


def problems(cfg: DictConfig) -> list[str]:
    """Every value of a train config that cannot work, as ``key=value: why``; empty when all is well."""
    out: list[str] = []

    def need(key: str, ok: bool, why: str) -> None:
        if not ok:
            out.append(f"{key}={_get(cfg, key)!r}: {why}")

    def positive(key: str, integer: bool = False, allow_none: bool = False) -> None:
        v = _get(cfg, key)
        if v is None and (allow_none or key not in _keys):
            return
        kind = _is_int(v) if integer else _is_number(v)
        need(key, kind and v > 0, f"must be a positive {'integer' if integer else 'number'}")

    plain = OmegaConf.to_container(cfg, resolve=False) if isinstance(cfg, DictConfig) else dict(cfg)
    plain = {k: v for k, v in plain.items() if k != "hydra"}
    _keys = {k for k, _ in _walk(plain, "")}

    positive("optimizer.lr")
    for key in ("optimizer.weight_decay", "trainer.gradient_clip_val", "data.num_workers"):
        v = _get(cfg, key)
        need(key, v is None or (_is_number(v) and v >= 0), "must be 0 or more")
    positive("data.batch_size", integer=True)
    positive("data.sample_rate", integer=True)
    positive("data.feature_workers", integer=True, allow_none=True)
    positive("num_threads", integer=True, allow_none=True)
    need("matmul_precision", _get(cfg, "matmul_precision") in (None, *MATMUL_PRECISIONS), MATMUL_CHOICES)
    need("data.on_error", _get(cfg, "data.on_error") in (None, "raise", "skip"), "choose raise or skip")
    need(
        "data.normalization",
        _get(cfg, "data.normalization") in (None, "global", "utterance", "speaker"),
        "choose global, utterance or speaker",
    )
    corpora = _get(cfg, "data.corpora")
    if corpora is not None:
        from ser.data.corpora import CORPORA

        names = list(corpora) if not isinstance(corpora, str) else [corpora]
        unknown = [n for n in names if n != "all" and n not in CORPORA]
        need("data.corpora", bool(names) and not unknown, f"known corpora: {', '.join(sorted(CORPORA))} (or all)")

    seed = _get(cfg, "seed")
    need("seed", seed is None or (_is_int(seed) and 0 <= seed < 2**32), "must be null or an integer in 0..2**32-1")
    out += split_problems(cfg)
    out += trainer_problems(cfg)

    for group in ("model", "loss"):
        out += unknown_arguments(plain.get(group), group)
    for key, v in _walk(plain.get("model") or {}, "model"):
        leaf = key.rsplit(".", 1)[-1]
        if "dropout" in leaf:
            need(key, _is_number(v) and 0 <= v < 1, "a dropout rate must be in [0, 1)")
        elif leaf.endswith(("_size", "_dim", "num_layers", "channels")) and not isinstance(v, str):
            need(key, _is_int(v) and v > 0, "must be a positive integer")
    for key, v in _walk(plain.get("augment") or {}, "augment"):
        if key.rsplit(".", 1)[-1] == "p":
            need(key, _is_number(v) and 0 <= v <= 1, "a probability must be in [0, 1]")
        elif key.rsplit(".", 1)[-1] == "max_frames":
            need(key, _is_int(v) and v > 0, "must be a positive number of frames")
    crop = (plain.get("augment") or {}).get("crop") if isinstance(plain.get("augment"), Mapping) else None
    if crop is not None and (not isinstance(crop, Mapping) or set(crop) != {"max_frames"}):
        out.append(f"augment.crop={crop!r}: write +augment.crop.max_frames=<frames> (its one setting)")
    if isinstance(plain.get("augment"), Mapping) and plain["augment"].get("speed"):
        from ser.data.speed import SpeedPerturbation

        try:  # its own check, so the message is the one the DataModule would give
            SpeedPerturbation.from_config(plain["augment"], 0)
        except ValueError as exc:
            out.append(str(exc))

    metric = str(_get(cfg, "optimized_metric") or "val/uar")
    stage, _, name = metric.partition("/")
    need(
        "optimized_metric",
        stage in ("val", "test") and name in (*SCALARS, "loss"),
        f"must be val/<metric> or test/<metric> with a metric of {', '.join(SCALARS)}",
    )
    progress = _get(cfg, "progress")
    need("progress", progress in (None, True, False, "auto", "bar", "none"), "choose auto, bar or none")

    train, test, ckpt = _get(cfg, "train"), _get(cfg, "test"), _get(cfg, "ckpt_path")
    if ckpt is not None:
        need("ckpt_path", Path(str(ckpt)).is_file(), "no such checkpoint file")
    if train is False and test is not False and ckpt is None:
        out.append("train=false test=true: testing needs trained weights; give ckpt_path=<.../checkpoints/best.ckpt>")
    if train is False and test is False:
        out.append("train=false test=false: nothing to do")
    return out


def unknown_arguments(node: Any, group: str) -> list[str]:
    """Keys of a group's config that its ``_target_`` does not take (a ``+model.new_key=`` typo, say).

    Instantiation would fail with a TypeError after the data were indexed and cached; found here, the
    run stops before any work with the key named.
    """
    if not isinstance(node, Mapping) or not isinstance(node.get("_target_"), str):
        return []
    module, _, name = node["_target_"].rpartition(".")
    try:
        target = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return [f"{group}._target_={node['_target_']!r}: cannot be imported ({first})"]
    try:
        params = inspect.signature(target).parameters
    except (TypeError, ValueError):  # a builtin without a signature: instantiation will judge its arguments
        return []
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return []
    out = []
    for key in node:
        if not key.startswith("_") and key not in params:
            hint = nearest(key, [k for k in params if k != "self"])
            also = f" (did you mean {group}.{hint}?)" if hint else ""
            name = node["_target_"].rsplit(".", 1)[-1]
            out.append(f"{group}.{key}: {name} takes no argument {key!r}{also}")
    return out


def split_problems(cfg: DictConfig) -> list[str]:
    """The split group's values, checked as ser.data.splits would check them after indexing and features."""
    from ser.data.splits import STRATEGIES

    strategy = _get(cfg, "split.strategy")
    if strategy is None:
        return []
    if strategy not in STRATEGIES:
        return [f"split.strategy={strategy!r}: choose one of {', '.join(STRATEGIES)} (split={'|'.join(STRATEGIES)})"]
    out = []
    val, test = _get(cfg, "split.val_fraction"), _get(cfg, "split.test_fraction")
    fractions = [v for v in (val, test if strategy != "kfold" else None) if v is not None]
    if not all(_is_number(v) and 0 < v < 1 for v in fractions) or sum(fractions) >= 1:
        shown = f"split.val_fraction={val}" + (f", split.test_fraction={test}" if strategy != "kfold" else "")
        out.append(f"{shown}: need each in (0, 1) and together below 1")
    if strategy == "kfold":
        folds, fold = _get(cfg, "split.num_folds"), _get(cfg, "split.fold")
        if not (_is_int(folds) and folds >= 2):
            out.append(f"split.num_folds={folds!r}: need an integer of at least 2")
        elif not (_is_int(fold) and 0 <= fold < folds):
            out.append(f"split.fold={fold!r}: must be in 0..{folds - 1} for split.num_folds={folds}")
    return out


# Lightning's precision flags. Not the *-true half modes: they would store half-precision weights and feature
# statistics in the checkpoint.
PRECISIONS = ("32-true", "bf16-mixed", "16-mixed", "64-true")
# Lightning's older names for them: one spelling per setting, so that runs group together in ser.compare.
PRECISION_ALIASES = {"32": "32-true", "bf16": "bf16-mixed", "16": "16-mixed", "64": "64-true"}


def trainer_problems(cfg: DictConfig) -> list[str]:
    out = []
    max_epochs, min_epochs = _get(cfg, "trainer.max_epochs"), _get(cfg, "trainer.min_epochs")
    if _get(cfg, "train") is not False and max_epochs is not None:
        if not (_is_int(max_epochs) and (max_epochs >= 1 or max_epochs == -1)):
            out.append(
                f"trainer.max_epochs={max_epochs!r}: need at least 1 (-1: until early stopping); "
                "to test a trained model without training, use train=false ckpt_path=<checkpoint>"
            )
        elif _is_int(min_epochs) and max_epochs != -1 and min_epochs > max_epochs:
            out.append(f"trainer.min_epochs={min_epochs} is above trainer.max_epochs={max_epochs}")
    for part in ("train", "val", "test"):
        key = f"trainer.limit_{part}_batches"
        v = _get(cfg, key)
        if v is not None and not (_is_number(v) and v > 0):
            out.append(f"{key}={v!r}: must be above 0 (a fraction, or a number of batches)")
    precision = _get(cfg, "trainer.precision")
    if str(precision) in PRECISION_ALIASES:
        out.append(f"trainer.precision={precision!r}: write {PRECISION_ALIASES[str(precision)]} (its current name)")
    elif precision is not None and str(precision) not in PRECISIONS:
        out.append(f"trainer.precision={precision!r}: choose 32-true, bf16-mixed or 16-mixed (GPU)")
    elif str(precision) == "16-mixed" and _get(cfg, "trainer.accelerator") == "cpu":
        # Lightning would switch to bf16-mixed with a warning, and the run record would say 16-mixed.
        out.append(f"trainer.precision={precision!r}: float16 autocast needs a GPU (trainer=gpu); on a CPU: bf16-mixed")
    accelerator = str(_get(cfg, "trainer.accelerator") or "")
    if accelerator in ("gpu", "cuda") and not _cuda_available():
        out.append(
            f"trainer.accelerator={accelerator!r}: no CUDA device is available here; "
            "use trainer=cpu (or trainer.accelerator=auto)"
        )
    patience = _get(cfg, "callbacks.early_stopping.patience")
    if patience is not None and not (_is_int(patience) and patience >= 0):
        out.append(f"callbacks.early_stopping.patience={patience!r}: must be an integer of 0 or more")
    return out


def _cuda_available() -> bool:
    import torch  # here: the commands that only check a config's keys need not load torch

    return torch.cuda.is_available()


def writable_problem(path: str | Path, key: str) -> str | None:
    """Why a folder cannot be written, or None; nothing is created (a missing folder's nearest parent is judged)."""
    path = Path(path).absolute()
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is None:
        return None
    if not existing.is_dir():
        return f"{key}={path}: {existing} is a file, not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{key}={path}: {existing} is not writable (permission denied)"
    return None


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError naming every value of a train config that cannot work, and unwritable folders."""
    found = problems(cfg)
    for key in ("paths.output_dir", "data.cache_dir"):
        try:
            value = _get(cfg, key)
        except Exception:  # a ${hydra:...} outside a Hydra app: nothing to check
            value = None
        if value is not None:
            problem = writable_problem(value, key)
            if problem:
                found.append(problem)
    if found:
        raise ConfigError("; ".join(found))


# --------------------------------------------------------------------------------- checkpoint shapes


def checkpoint_mismatch(state: Mapping[str, Any], expected: Mapping[str, Any]) -> str | None:
    """How a checkpoint's weights differ from the model built from the config (names and shapes), or None."""
    diffs = [
        f"{k}: {list(state[k].shape)} in the checkpoint, {list(v.shape)} here"
        for k, v in expected.items()
        if k in state and hasattr(state[k], "shape") and tuple(state[k].shape) != tuple(v.shape)
    ]
    missing = [k for k in expected if k not in state]
    if not diffs and not missing:
        return None
    first = diffs[0] if diffs else f"{missing[0]} is not in the checkpoint"
    more = len(diffs) + len(missing) - 1
    return first + (f" (and {more} more)" if more > 0 else "")


# ------------------------------------------------------------------------------------- override typos


def _keys_of(cfg: Any, prefix: str = "") -> list[str]:
    out = []
    if isinstance(cfg, Mapping):
        for k, v in cfg.items():
            key = f"{prefix}.{k}" if prefix else str(k)
            out.append(key)
            out.extend(_keys_of(v, key))
    return out


def nearest(word: str, candidates: Sequence[str]) -> str | None:
    """The existing key closest to a typo: among its siblings when its parent exists, else over whole keys."""
    parent, _, leaf = word.rpartition(".")
    if not parent or parent in candidates:
        siblings = [c.rpartition(".")[2] for c in candidates if c.rpartition(".")[0] == parent]
        found = difflib.get_close_matches(leaf, siblings, n=1, cutoff=0.6)
        return (f"{parent}.{found[0]}" if parent else found[0]) if found else None
    found = difflib.get_close_matches(word, candidates, n=1, cutoff=0.8)  # a typo in the parent: model -> modle
    return found[0] if found else None


def config_keys(config_dir: str, config_name: str, overrides: Sequence[str]) -> list[str]:
    """Every key of the composed config (hydra excluded), composed with whichever overrides still compose."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    for attempt in (list(overrides), [o for o in overrides if "=" in o and "." not in o.split("=", 1)[0]], []):
        GlobalHydra.instance().clear()
        try:
            with initialize_config_dir(version_base="1.3", config_dir=config_dir):
                cfg = compose(config_name=config_name, overrides=attempt)
            return _keys_of(OmegaConf.to_container(cfg, resolve=False))
        except Exception:
            continue
        finally:
            GlobalHydra.instance().clear()
    return []


def explain_hydra_error(exc: BaseException, config_dir: str, config_name: str, overrides: Sequence[str]) -> str:
    """One line for a config composition error: the bad key or option, and the nearest that exists."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    options = list(getattr(exc, "options", None) or [])
    missing = getattr(exc, "missing_cfg_file", None)
    if missing and options:  # loss=binar: a config group without that option
        group, _, option = str(missing).rpartition("/")
        near = difflib.get_close_matches(option, options, n=1, cutoff=0.5)
        hint = f" (did you mean `{group}={near[0]}`?)" if near else ""
        return f"no option {option!r} in config group {group!r}{hint}; options: {', '.join(options)}"
    if first.startswith("Could not append to config. An item is already at '"):
        key = first.split("'")[1]
        return f"`{key}` exists already: drop the + to override it (or use ++{key}=... to add or override)"
    if first.startswith("Could not override '"):
        key = first.split("'")[1]
        value = next((o.split("=", 1)[1] for o in overrides if o.lstrip("+~").split("=", 1)[0] == key), "...")
        near = nearest(key, [k for k in config_keys(config_dir, config_name, overrides) if k != key])
        hint = f" (did you mean `{near}`?)" if near else ""
        return f"no config key `{key}`{hint}; to add a new key on purpose use +{key}={value}"
    override = getattr(exc, "override", None)
    return f"cannot read the override `{override}`: {first}" if override else first
