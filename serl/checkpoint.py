"""Checkpoints: one safetensors file holding every tensor plus a JSON metadata block.

An agent's `state_dict()` is a nested tree of dicts, lists, tensors and plain scalars
(optimizer states included). The tree is split in two: tensors go into the safetensors body
under their path in the tree ("optim/critic/state/0/exp_avg"), everything else into a JSON
"skeleton" stored in the file's metadata, together with the resolved config, its hash, free
user metadata (counters, env id, replay cursors) and a SHA-256 over the tensor bytes AND the
rest of the header, so a flipped bit anywhere (a counter, a cursor, the skeleton) is caught,
not only in the weights. Nothing is pickled.

Writes are atomic: the file is written to a temporary name in the same directory, fsynced and
renamed over the target, so a crash mid-write leaves the previous checkpoint intact. Loading
checks the checksum, the config hash and every tensor's name, shape and dtype against the live
agent BEFORE touching it, so a bad checkpoint fails with a clear message; a skeleton that does
not rebuild (crafted or damaged) is a `CheckpointError` too, and should the agent's own
`load_state_dict` still fail part-way, its previous state is put back: it never half-loads.
"""

from __future__ import annotations

import copy
import glob
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load, save

FORMAT_VERSION = 2
"""2: the checksum covers the header too (1 covered the tensors only)."""
_TENSOR = "__tensor__"
_TUPLE = "__tuple__"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read, is corrupt, or does not fit the agent."""


def flatten_state(tree: Any, prefix: str = "") -> tuple[Any, dict[str, torch.Tensor]]:
    """Split a state tree into a JSON-able skeleton and a flat {path: tensor} dict."""
    tensors: dict[str, torch.Tensor] = {}

    def walk(node: Any, path: str) -> Any:
        if isinstance(node, torch.Tensor):
            tensors[path] = node.detach().cpu().contiguous()
            return {_TENSOR: path}
        if isinstance(node, np.ndarray):
            tensors[path] = torch.from_numpy(np.ascontiguousarray(node))
            return {_TENSOR: path, "numpy": True}
        if isinstance(node, dict):
            for key in node:
                if not isinstance(key, (str, int)):
                    raise TypeError(f"state key {key!r} at {path!r} is not a str or int")
            # JSON keys are strings; remember which were ints (optimizer state ids).
            return {
                "__dict__": [
                    [key, walk(value, f"{path}/{key}" if path else str(key))]
                    for key, value in node.items()
                ]
            }
        if isinstance(node, (list, tuple)):
            items = [walk(v, f"{path}/{i}") for i, v in enumerate(node)]
            return {_TUPLE: items} if isinstance(node, tuple) else items
        if node is None or isinstance(node, (bool, int, float, str)):
            return node
        raise TypeError(f"state value at {path!r} has unsupported type {type(node).__name__}")

    return walk(tree, prefix), tensors


def unflatten_state(skeleton: Any, tensors: dict[str, torch.Tensor]) -> Any:
    def build(node: Any) -> Any:
        if isinstance(node, dict):
            if _TENSOR in node:
                tensor = tensors[node[_TENSOR]]
                return tensor.numpy() if node.get("numpy") else tensor
            if _TUPLE in node:
                return tuple(build(v) for v in node[_TUPLE])
            return {key: build(value) for key, value in node["__dict__"]}
        if isinstance(node, list):
            return [build(v) for v in node]
        return node

    return build(skeleton)


def _digest(tensors: dict[str, torch.Tensor], header: dict[str, Any]) -> str:
    """SHA-256 of the header (all but its "sha256" entry, as canonical JSON) and the tensors."""
    sha = hashlib.sha256()
    rest = {k: v for k, v in header.items() if k != "sha256"}
    sha.update(json.dumps(rest, sort_keys=True, separators=(",", ":")).encode())
    for name in sorted(tensors):
        sha.update(name.encode())
        sha.update(tensors[name].numpy().tobytes() if tensors[name].numel() else b"")
    return sha.hexdigest()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see the old file or the new one, never a mix.

    Temp files of an earlier write of `path` that was killed are deleted first (one writer per
    file): a checkpoint's worth of disk each.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_checkpoint(
    path: str | Path,
    state: Any,
    *,
    config: dict[str, Any],
    config_hash: str,
    metadata: dict[str, Any] | None = None,
) -> None:
    """Write `state` atomically; refused (CheckpointError, the file untouched) when a float
    tensor holds NaN/Inf, so a diverged agent never replaces the last good checkpoint."""
    skeleton, tensors = flatten_state(state)
    bad = [
        name
        for name, t in tensors.items()
        if t.is_floating_point() and not bool(torch.isfinite(t).all())
    ]
    if bad:
        raise CheckpointError(
            f"not writing {path}: NaN/Inf in {sorted(bad)[:5]}{' ...' if len(bad) > 5 else ''}; "
            "the file there (the last good checkpoint) is kept"
        )
    header = {
        "format_version": FORMAT_VERSION,
        "config": config,
        "config_hash": config_hash,
        "metadata": metadata or {},
        "skeleton": skeleton,
    }
    header["sha256"] = _digest(tensors, header)
    data = save(tensors, metadata={"serl": json.dumps(header)})
    atomic_write_bytes(Path(path), data)


def read_checkpoint(path: str | Path) -> tuple[dict[str, Any], Any]:
    """(header, state tree) of a checkpoint file, after checking its integrity."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    raw = path.read_bytes()
    try:
        tensors = load(raw)
        header_len = int.from_bytes(raw[:8], "little")
        file_meta = json.loads(raw[8 : 8 + header_len]).get("__metadata__", {})
        header = json.loads(file_meta["serl"])
        if not isinstance(header, dict):
            raise ValueError("the serl metadata is not a JSON object")
    except (
        SafetensorError,
        ValueError,
        KeyError,
        TypeError,
        UnicodeDecodeError,
        RecursionError,
    ) as exc:
        raise CheckpointError(
            f"{path}: not a readable serl checkpoint ({exc}); the file is truncated or corrupt — "
            "use an earlier checkpoint"
        ) from exc
    if header.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format {header.get('format_version')}, this serl reads "
            f"{FORMAT_VERSION}"
        )
    if _digest(tensors, header) != header.get("sha256"):
        raise CheckpointError(
            f"{path}: contents do not match the checksum; the file is corrupt — use an "
            "earlier checkpoint"
        )
    try:
        state = unflatten_state(header["skeleton"], tensors)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, RecursionError) as exc:
        raise CheckpointError(
            f"{path}: the state layout does not rebuild ({type(exc).__name__}: {exc}); the file "
            "was not written by serl or is damaged — use an earlier checkpoint"
        ) from None
    return header, state


def check_compatible(path: Any, loaded: Any, live: Any, where: str = "") -> None:
    """Raise CheckpointError at the first tensor whose name, shape or dtype differs."""
    if isinstance(live, torch.Tensor):
        if not isinstance(loaded, torch.Tensor):
            raise CheckpointError(f"{path}: {where!r} is not a tensor in the checkpoint")
        if loaded.shape != live.shape or loaded.dtype != live.dtype:
            raise CheckpointError(
                f"{path}: tensor {where!r} has shape {tuple(loaded.shape)} {loaded.dtype}, the "
                f"agent expects {tuple(live.shape)} {live.dtype}; was this checkpoint written "
                "with another config (network sizes, --num-qs, observation space)?"
            )
        return
    if isinstance(live, dict):
        if not isinstance(loaded, dict):
            raise CheckpointError(f"{path}: {where!r} has the wrong structure")
        missing = sorted(str(k) for k in set(live) - set(loaded))
        never_stepped = not loaded and where.endswith("state")  # an optimizer's empty state
        if missing and not never_stepped:
            raise CheckpointError(f"{path}: missing {missing[:5]} under {where or 'the root'!r}")
        for key, value in live.items():
            if key not in loaded:
                continue
            check_compatible(path, loaded[key], value, f"{where}/{key}" if where else str(key))
        return
    if isinstance(live, (list, tuple)):
        if not isinstance(loaded, (list, tuple)) or len(loaded) != len(live):
            raise CheckpointError(f"{path}: {where!r} has the wrong length or structure")
        for i, (a, b) in enumerate(zip(loaded, live, strict=True)):
            check_compatible(path, a, b, f"{where}/{i}")


def load_into(path: str | Path, target: Any, *, config_hash: str | None = None) -> dict[str, Any]:
    """Load a checkpoint into anything with state_dict/load_state_dict; returns the header.

    With `config_hash`, a checkpoint of another config is refused with both hashes and the
    differing fields named.
    """
    header, state = read_checkpoint(path)
    if config_hash is not None and header["config_hash"] != config_hash:
        raise CheckpointError(
            f"{path}: written with config {header['config_hash']}, this run has {config_hash}; "
            "resume with the checkpoint's config (it is stored in the file: "
            "`serl checkpoint-info PATH`) or start a new run"
        )
    before = target.state_dict()
    check_compatible(path, state, before)
    backup = copy.deepcopy(before)
    try:
        target.load_state_dict(state)
    except Exception as exc:
        target.load_state_dict(backup)  # all or nothing: the agent is as it was
        raise CheckpointError(
            f"{path}: the agent could not take this state ({type(exc).__name__}: {exc}); "
            "nothing was loaded"
        ) from exc
    return header
