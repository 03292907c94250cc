"""Search spaces of ser.tune: a ``search_space`` config mapping -> checked Optuna distributions."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from omegaconf import OmegaConf

_FIELDS = {
    "int": {"low", "high", "step", "log"},
    "float": {"low", "high", "step", "log"},
    "categorical": {"choices"},
}


class SearchSpaceError(ValueError):
    """A search space entry that cannot be a distribution; the message is one line naming the key."""


@dataclass(frozen=True)
class Param:
    """One searched override: its path in the train config and its distribution."""

    key: str
    type: str
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()

    def suggest(self, trial: optuna.Trial) -> Any:
        if self.type == "int":
            step = int(self.step or 1)
            return trial.suggest_int(self.key, int(self.low), int(self.high), step=step, log=self.log)  # type: ignore[arg-type]
        if self.type == "float":
            return trial.suggest_float(self.key, float(self.low), float(self.high), step=self.step, log=self.log)  # type: ignore[arg-type]
        return trial.suggest_categorical(self.key, list(self.choices))


def _number(key: str, spec: Mapping[str, Any], field: str, integer: bool) -> float | None:
    value = spec.get(field)
    if value is None and field in ("low", "high"):
        raise SearchSpaceError(f"search_space.{key}: '{field}' is required for type {spec['type']}")
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise SearchSpaceError(f"search_space.{key}: '{field}' must be a number, got {value!r}")
    if value is not None and integer and value != int(value):
        raise SearchSpaceError(f"search_space.{key}: '{field}' must be an integer for type int, got {value!r}")
    return value


def parse_param(key: str, spec: Any) -> Param:
    """One entry of the search space, checked; SearchSpaceError names the key and what is wrong."""
    if not isinstance(spec, Mapping):
        raise SearchSpaceError(
            f"search_space.{key}: expected a distribution like {{type: float, low: 0.0, high: 1.0}}, got {spec!r}"
        )
    kind = spec.get("type")
    if kind not in _FIELDS:
        raise SearchSpaceError(f"search_space.{key}: type must be one of int, float, categorical; got {kind!r}")
    unknown = sorted(set(spec) - _FIELDS[kind] - {"type"})
    if unknown:
        allowed = ", ".join(sorted(_FIELDS[kind]))
        raise SearchSpaceError(f"search_space.{key}: unknown field(s) {', '.join(unknown)} for type {kind} ({allowed})")
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, Sequence) or isinstance(choices, str) or not choices:
            raise SearchSpaceError(f"search_space.{key}: 'choices' must be a non-empty list, got {choices!r}")
        bad = [c for c in choices if c is not None and not isinstance(c, (bool, int, float, str))]
        if bad:
            raise SearchSpaceError(
                f"search_space.{key}: choices must be numbers, strings, booleans or null; got {bad[0]!r}"
            )
        return Param(key, kind, choices=tuple(choices))
    integer = kind == "int"
    low, high = _number(key, spec, "low", integer), _number(key, spec, "high", integer)
    step = _number(key, spec, "step", integer)
    use_log = spec.get("log", False)
    if not isinstance(use_log, bool):
        raise SearchSpaceError(f"search_space.{key}: 'log' must be true or false, got {use_log!r}")
    if not low < high:  # type: ignore[operator]
        raise SearchSpaceError(f"search_space.{key}: low ({low}) must be below high ({high})")
    if use_log and low <= 0:  # type: ignore[operator]
        raise SearchSpaceError(f"search_space.{key}: log: true needs low > 0, got low={low}")
    if use_log and step is not None:
        raise SearchSpaceError(f"search_space.{key}: 'step' and log: true cannot be combined")
    if step is not None and step <= 0:
        raise SearchSpaceError(f"search_space.{key}: 'step' must be positive, got {step}")
    return Param(key, kind, low=low, high=high, step=step, log=use_log)


def parse_search_space(space: Any, prefix: str = "") -> list[Param]:
    """The searched parameters of a ``search_space`` mapping.

    Keys are override paths, written flat (``optimizer.lr: {...}``) or nested (``optimizer: {lr: {...}}``);
    a mapping with a ``type`` is a distribution.
    """
    if OmegaConf.is_config(space):
        space = OmegaConf.to_container(space, resolve=True)
    if not prefix and not space:
        raise SearchSpaceError("search_space: no parameters to search; pick a file with search_space=<name>")
    if not isinstance(space, Mapping):
        raise SearchSpaceError(f"search_space{'.' + prefix if prefix else ''}: expected a mapping, got {space!r}")
    params: list[Param] = []
    for name, spec in space.items():
        key = f"{prefix}{name}"
        if isinstance(spec, Mapping) and "type" not in spec and spec:
            params.extend(parse_search_space(spec, key + "."))
        else:
            params.append(parse_param(key, spec))
    seen: set[str] = set()
    for p in params:  # `a.b: {...}` and `a: {b: {...}}` in one space
        if p.key in seen:
            raise SearchSpaceError(f"search_space.{p.key}: given twice (as a flat and as a nested key)")
        seen.add(p.key)
    return params


def override_value(value: Any) -> str:
    """A suggested value as Hydra override text (``null``, ``true``, ``0.003``, ``mfcc``, ``'a b'``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value)
    if re.fullmatch(r"[\w./:@-]+", text):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def override_key(override: str) -> str:
    """The config path an override sets (``+a.b=1`` -> ``a.b``)."""
    return override.split("=", 1)[0].lstrip("+~")
