"""Config dataclasses as plain data: to JSON-able dicts, back, and a stable hash.

The resolved config is saved with every checkpoint, and its hash is compared when an actor
connects to a learner (DESIGN §2), so both must be exact and independent of dict order.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """A dataclass (possibly nested) as a JSON-able dict; tuples become lists, paths strings."""
    return json.loads(json.dumps(dataclasses.asdict(cfg), default=str))


def config_hash(cfg: Any) -> str:
    """SHA-256 of the config's canonical JSON (sorted keys), as 16 hex digits."""
    text = json.dumps(config_to_dict(cfg), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def config_from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Rebuild a (nested) config dataclass; unknown keys are an error that names them."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{cls.__name__} has no field(s) {unknown}; known fields: {sorted(names)}")
    kwargs = {}
    for name, value in data.items():
        hint = hints[name]
        if name == "agent_cfg" and isinstance(data.get("agent"), str):
            hint = _agent_config_type(data["agent"], hint)
        kwargs[name] = _coerce(hint, value)
    return cls(**kwargs)


def _agent_config_type(agent: str, default: Any) -> Any:
    """The config class of agent preset `agent` (DR-RPO, IWOCS, BC have their own), so a
    saved `agent_cfg` comes back as that class whatever the field's declared type."""
    from serl.agents.registry import AGENTS  # lazy: the agents import this module

    spec = AGENTS.get(agent)
    return spec.config_type if spec is not None else default


def _coerce(hint: Any, value: Any) -> Any:
    if dataclasses.is_dataclass(hint) and isinstance(value, dict):
        return config_from_dict(hint, value)
    if hint is Path and isinstance(value, str):
        return Path(value)
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(hint):
            if dataclasses.is_dataclass(arg) and isinstance(value, dict):
                return config_from_dict(arg, value)
            if arg is Path and isinstance(value, str):
                return Path(value)
    if origin is tuple and isinstance(value, list):
        return tuple(value)
    return value
