"""A replay buffer that stores every observation once, for image-based RL on real robots.

Slot layout
-----------
Storage is a ring of `capacity` slots. Slot k holds one observation (one array per key of the
observation space, in the space's dtype, so camera frames stay uint8) and, when that
observation starts a transition, the transition: `action`, `reward`, `terminated`,
`truncated`, the extras, and `next_index[k]`, the slot of its next observation. `valid[k]` is
True exactly when slot k holds a complete transition; `prev_index[k]` is the slot whose
transition leads into k. Tags (`source`, `episode_id`, `t`, `policy_version`, `actor_id`)
describe the observation in the slot, which for a valid slot is its transition's.

An episode of T transitions takes T + 1 slots, o_0 -> o_1 -> ... -> o_T, the last one a
non-valid terminal-observation slot. A buffer of (obs, next_obs) pairs needs 2T frames; for
128x128x3 cameras the frames are nearly all the memory, so this halves it (as DrQ-v2, Yarats et
al. 2021, and SERL's memory-efficient buffer do). `next_obs` is rebuilt at sample time through
`next_index`, so it can never come from another episode.

Several actors
--------------
Transitions of several actors arrive interleaved, so neighbouring slots need not belong to one
episode; `next_index` links them explicitly. For each open episode `(actor_id, episode_id)` the
buffer keeps its "pending slot", where its latest next_obs was written, and the step `t` it
expects next. A transition that continues it writes its fields into the pending slot and takes
ONE new slot for its next_obs; anything else (a new episode, a gap in `t`) takes two.
`terminated or truncated` closes the episode. Truncation is not termination: a time-limit end
stores terminated False and its next_obs is the real final observation, which the critic
bootstraps from.

Ring overwrite
--------------
When the write pointer reuses slot k, three things go: the transition stored in k, the
transition whose next observation is k (found through `prev_index[k]`), and the pending entry
of an episode whose next observation sat in k (that episode goes on from a fresh pair of
slots). Nothing else changes, so every valid transition keeps both its observations. In this
FIFO ring a transition's own slot is always older than its next-observation slot, so it has
already gone by the time that one is reused; `prev_index` keeps the rule explicit and the links
consistent rather than doing work the first case misses.

Frame features
--------------
With `frame_features` (a frozen image backbone per camera, `serl.nets.backbones`) the buffer
also stores each camera frame's backbone features, computed once when the frame is written,
as float16 next to the frame (frames are kept: reward classifiers and a later re-encoding need
them). Batches then carry the features under the spec's key ``<camera>@<digest>`` instead of
the frames, so an update never runs the backbone. The key names the encoder that made the
features: a saved buffer loads only under the same backbone.

Not thread-safe: one thread (the learner's ingest loop) owns a buffer.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import tokenize
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from numpy.typing import ArrayLike

from serl.data.batch import Batch, Obs
from serl.data.tags import EVAL_SOURCE, SOURCES, source_code

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
"""Version of the `.npz` layout written by `ReplayBuffer.save`."""
_BOX_KEY = "obs"
"""Storage key of the single observation array of a `Box` space."""
_MAX_REDRAWS = 16
"""Rejection rounds in `sample_indices` before drawing from an explicit list of valid slots.
At least about half of the written slots hold a transition (all of them but one per episode),
so 16 rounds leave about 1e-5 of the draws to the fallback."""
_T_MAX = np.iinfo(np.int32).max
_EVAL_CODE = source_code(EVAL_SOURCE)
_TAG_FIELDS = ("source", "episode_id", "t", "policy_version", "actor_id", "truncated")
_RESERVED = {"obs", "action", "reward", "terminated", "next_obs", *_TAG_FIELDS}


_CORRUPT_FILE_ERRORS = (
    zipfile.BadZipFile,
    ValueError,
    OSError,
    EOFError,
    KeyError,
    NotImplementedError,  # zipfile: a member claims a compression method it does not know
    RuntimeError,  # zipfile: a member claims to be encrypted
    tokenize.TokenError,  # numpy's .npy header parser, on an unclosed bracket
)
"""What numpy and zipfile raise on a damaged .npz; `load` turns each into ReplayFileError."""


@dataclass(frozen=True)
class FrameFeatures:
    """How one camera's frames become stored features (see "Frame features" above)."""

    key: str
    """Batch key of the features, ``<camera>@<backbone digest>``."""
    dim: int
    """Features per frame."""
    encode: Callable[[np.ndarray], np.ndarray]
    """(n, H, W, 3) uint8 frames -> (n, dim) float features."""


class ReplayFileError(ValueError):
    """A saved buffer is unreadable (truncated, corrupt) or does not match the requested spaces."""


class EmptyBufferError(RuntimeError):
    """Sampling was asked of a buffer that holds no complete transition."""


@dataclass
class _Chunk:
    """n validated transitions of one actor, every field with leading dim n."""

    obs: dict[str, np.ndarray]
    next_obs: dict[str, np.ndarray]
    action: np.ndarray
    reward: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    source: np.ndarray
    episode_id: np.ndarray
    t: np.ndarray
    policy_version: np.ndarray
    actor_id: int
    extras: dict[str, np.ndarray]


def _observation_spec(space: gym.Space) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Storage key -> (shape, dtype) of each observation array of a Box or a Dict of Boxes."""
    if isinstance(space, gym.spaces.Box):
        return {_BOX_KEY: (tuple(space.shape), np.dtype(space.dtype))}
    if isinstance(space, gym.spaces.Dict):
        spec = {}
        for key, sub in space.spaces.items():
            if not isinstance(key, str) or not isinstance(sub, gym.spaces.Box):
                raise TypeError(
                    f"observation space entry {key!r} is {type(sub).__name__}; a ReplayBuffer "
                    "stores a Box or a Dict of Boxes with str keys (flatten nested spaces)"
                )
            spec[key] = (tuple(sub.shape), np.dtype(sub.dtype))
        return spec
    raise TypeError(
        f"observation space is {type(space).__name__}; a ReplayBuffer stores a Box or a Dict "
        "of Boxes"
    )


def _array(
    name: str,
    value: ArrayLike,
    shape: tuple[int, ...],
    kinds: str,
    *,
    dtype: np.dtype | None = None,
) -> np.ndarray:
    """`value` as an array of exactly `shape`, a dtype kind in `kinds`, finite if float."""
    arr = np.asarray(value)
    if arr.shape != shape:
        raise ValueError(f"{name}: got shape {arr.shape}, expected {shape}")
    if dtype is not None and arr.dtype != dtype:
        raise ValueError(
            f"{name}: got dtype {arr.dtype}, expected {dtype} (the observation space's dtype; "
            "convert before adding, frames stay uint8)"
        )
    if arr.dtype.kind not in kinds:
        names = {"b": "bool", "i": "int", "u": "uint", "f": "float"}
        want = "/".join(names[k] for k in kinds)
        raise ValueError(f"{name}: got dtype {arr.dtype}, expected {want}")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ValueError(f"{name} holds NaN or Inf; fix the data source before adding it")
    return arr


def _flag(name: str, value: ArrayLike, shape: tuple[int, ...]) -> np.ndarray:
    arr = _array(name, value, shape, "biuf")
    if arr.dtype.kind != "b" and not np.isin(arr, (0, 1)).all():
        raise ValueError(f"{name}: got values other than 0/1 in a {arr.dtype} array")
    return arr.astype(bool)


def _int_tag(
    name: str, value: ArrayLike, n: int, lead: tuple[int, ...], low: int, high: int
) -> np.ndarray:
    """An integer tag given per transition (`lead`) or once for all, as an int64 (n,) array."""
    arr = np.asarray(value)
    if arr.shape not in ((), lead):
        raise ValueError(f"{name}: got shape {arr.shape}, expected {lead} or a scalar")
    arr = _array(name, arr, arr.shape, "iu")
    if arr.size and (arr.min() < low or arr.max() > high):
        raise ValueError(
            f"{name}: got values in [{arr.min()}, {arr.max()}], expected [{low}, {high}]"
        )
    return np.broadcast_to(arr.astype(np.int64), (n,))


def _source_codes(value: ArrayLike, n: int, lead: tuple[int, ...]) -> np.ndarray:
    """Source names (or uint8 codes) as a uint8 (n,) array; "eval" is refused."""
    arr = np.asarray(value)
    if arr.shape not in ((), lead):
        raise ValueError(f"source: got shape {arr.shape}, expected {lead} or a single name")
    if arr.dtype.kind in "US":
        names, inverse = np.unique(arr, return_inverse=True)
        codes = np.array([source_code(str(name)) for name in names], dtype=np.uint8)[inverse]
    elif arr.dtype.kind in "iu":
        if arr.size and (arr.min() < 0 or arr.max() >= len(SOURCES)):
            raise ValueError(
                f"source: got codes in [{arr.min()}, {arr.max()}], expected codes of {SOURCES}"
            )
        codes = arr.astype(np.uint8)
    else:
        raise ValueError(f"source: got dtype {arr.dtype}, expected names from {SOURCES}")
    if (codes == _EVAL_CODE).any():
        allowed = ", ".join(s for s in SOURCES if s != EVAL_SOURCE)
        raise ValueError(
            f"source: got {EVAL_SOURCE!r}; evaluation transitions never enter a training "
            f"buffer (allowed: {allowed})"
        )
    return np.broadcast_to(codes.reshape(arr.shape), (n,))


def _is_run(x: np.ndarray) -> bool:
    return len(x) == 1 or bool((np.diff(x) == 1).all())


def _scatter(dst: np.ndarray, slots: np.ndarray, src: np.ndarray, rows: np.ndarray) -> None:
    """dst[slots] = src[rows], as one slice copy when both are consecutive runs (no wrap)."""
    if len(slots) == 0:
        return
    if _is_run(slots) and _is_run(rows):
        dst[slots[0] : slots[0] + len(slots)] = src[rows[0] : rows[0] + len(rows)]
    else:
        dst[slots] = src[rows]


def _fsync_dir(directory: Path) -> None:
    """Make a finished `os.replace` durable; not every platform can open a directory."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class ReplayBuffer:
    """Ring buffer of transitions that stores each observation once (see the module doc)."""

    def __init__(
        self,
        observation_space: gym.Space,
        action_dim: int,
        capacity: int,
        *,
        extras: dict[str, tuple[int, ...]] | None = None,
        frame_features: Mapping[str, FrameFeatures] | None = None,
    ) -> None:
        if capacity < 2:
            raise ValueError(f"capacity={capacity}; a transition needs at least 2 slots")
        if action_dim < 1:
            raise ValueError(f"action_dim={action_dim}; expected at least 1")
        extras = dict(extras or {})
        for name in extras:
            if name in _RESERVED:
                raise ValueError(f"extra field {name!r} clashes with a built-in field; rename it")
        self.observation_space = observation_space
        self.action_dim = int(action_dim)
        self.capacity = int(capacity)
        self.observation_spec = _observation_spec(observation_space)
        """Storage key -> (shape, dtype) of each observation array."""
        self.extras_spec = {name: tuple(shape) for name, shape in extras.items()}
        """Extra float32 field -> per-transition shape."""
        self.frame_features = dict(frame_features or {})
        """Camera key -> how its frames become the stored features batches carry instead."""
        for camera in self.frame_features:
            shape, dtype = self.observation_spec.get(camera, ((), None))
            if dtype != np.uint8 or len(shape) != 3:
                raise ValueError(
                    f"frame features for {camera!r}: it is not a (H, W, C) uint8 camera of the "
                    f"observation space (keys: {sorted(self.observation_spec)})"
                )

        cap = self.capacity
        self._obs = {
            key: np.zeros((cap, *shape), dtype)
            for key, (shape, dtype) in self.observation_spec.items()
        }
        self._action = np.zeros((cap, self.action_dim), np.float32)
        self._reward = np.zeros(cap, np.float32)
        self._terminated = np.zeros(cap, bool)
        self._truncated = np.zeros(cap, bool)
        self._next_index = np.full(cap, -1, np.int64)
        self._prev_index = np.full(cap, -1, np.int64)
        self._valid = np.zeros(cap, bool)
        self._source = np.zeros(cap, np.uint8)
        self._episode_id = np.zeros(cap, np.int64)
        self._t = np.zeros(cap, np.int32)
        self._policy_version = np.zeros(cap, np.int64)
        self._actor_id = np.zeros(cap, np.int32)
        self._extras = {
            name: np.zeros((cap, *shape), np.float32) for name, shape in self.extras_spec.items()
        }
        self._features = {
            spec.key: np.zeros((cap, spec.dim), np.float16) for spec in self.frame_features.values()
        }
        self._ptr = 0
        """Slot the next allocation takes."""
        self._size = 0
        """Slots ever written, at most `capacity`; valid slots all lie in [0, size)."""
        self._num_valid = 0
        self._pending: dict[tuple[int, int], tuple[int, int]] = {}
        """(actor_id, episode_id) -> (pending slot, expected next t) of each open episode."""
        self._pending_key: dict[int, tuple[int, int]] = {}
        """Pending slot -> its episode key, to drop the entry when the ring reuses the slot."""

    # ----------------------------------------------------------------------------------- sizes
    def __len__(self) -> int:
        """Number of complete (sampleable) transitions."""
        return self._num_valid

    @property
    def num_open_episodes(self) -> int:
        """Episodes with a pending slot, waiting for their next transition."""
        return len(self._pending)

    @property
    def observation_nbytes_per_slot(self) -> int:
        """Bytes of one stored observation (all keys)."""
        return sum(a[0].nbytes for a in self._obs.values())

    @property
    def nbytes(self) -> int:
        """Bytes of all storage arrays."""
        return sum(a.nbytes for a in self._storage().values())

    # ------------------------------------------------------------------------------------- add
    def add(
        self,
        obs: ArrayLike | Mapping[str, ArrayLike],
        action: ArrayLike,
        reward: float,
        next_obs: ArrayLike | Mapping[str, ArrayLike],
        terminated: bool,
        truncated: bool,
        *,
        source: str = "online",
        episode_id: int,
        t: int,
        actor_id: int = 0,
        policy_version: int = 0,
        extras: Mapping[str, ArrayLike] | None = None,
    ) -> None:
        """Add one transition; ValueError naming the bad field leaves the buffer unchanged."""
        chunk = self._validate(
            (), obs, next_obs, action, reward, terminated, truncated, source, episode_id, t,
            actor_id, policy_version, extras,
        )  # fmt: skip
        self._ingest(chunk)

    def add_many(
        self,
        obs: ArrayLike | Mapping[str, ArrayLike],
        action: ArrayLike,
        reward: ArrayLike,
        next_obs: ArrayLike | Mapping[str, ArrayLike],
        terminated: ArrayLike,
        truncated: ArrayLike,
        *,
        source: str | ArrayLike = "online",
        episode_id: ArrayLike,
        t: ArrayLike,
        actor_id: int = 0,
        policy_version: int | ArrayLike = 0,
        extras: Mapping[str, ArrayLike] | None = None,
    ) -> None:
        """Add n consecutive transitions of one actor, every field with leading dim n.

        Stores exactly what n calls of `add` would; the slot bookkeeping loops in Python, the
        observations and fields are written with one vectorised copy per array. `source`,
        `policy_version` and `episode_id` may be given once for the whole chunk.
        """
        shape = np.shape(action)
        if not shape:
            raise ValueError(f"action: got a scalar, expected shape (n, {self.action_dim})")
        n = shape[0]
        chunk = self._validate(
            (n,), obs, next_obs, action, reward, terminated, truncated, source, episode_id, t,
            actor_id, policy_version, extras,
        )  # fmt: skip
        self._ingest(chunk)

    def _validate(
        self,
        lead: tuple[int, ...],
        obs: Any,
        next_obs: Any,
        action: ArrayLike,
        reward: ArrayLike,
        terminated: ArrayLike,
        truncated: ArrayLike,
        source: Any,
        episode_id: ArrayLike,
        t: ArrayLike,
        actor_id: int,
        policy_version: ArrayLike,
        extras: Mapping[str, ArrayLike] | None,
    ) -> _Chunk:
        """Check every field against the spaces; `lead` is () for one transition, (n,) for n."""
        n = lead[0] if lead else 1

        def batched(arr: np.ndarray) -> np.ndarray:
            return arr if lead else arr[None]

        observations = {}
        for name, value in (("obs", obs), ("next_obs", next_obs)):
            observations[name] = {
                key: batched(_array(f"{name}[{key!r}]", v, lead + shape, "biuf", dtype=dtype))
                for key, v, (shape, dtype) in self._obs_items(name, value)
            }
        given_extras = dict(extras or {})
        if given_extras.keys() != self.extras_spec.keys():
            raise ValueError(
                f"extras: got fields {sorted(given_extras)}, expected {sorted(self.extras_spec)} "
                "(declared when the buffer was made)"
            )
        actor = _int_tag(
            "actor_id", actor_id, 1, (), np.iinfo(np.int32).min, np.iinfo(np.int32).max
        )
        return _Chunk(
            obs=observations["obs"],
            next_obs=observations["next_obs"],
            action=batched(_array("action", action, lead + (self.action_dim,), "iuf")).astype(
                np.float32
            ),
            reward=batched(_array("reward", reward, lead, "iuf")).astype(np.float32),
            terminated=batched(_flag("terminated", terminated, lead)),
            truncated=batched(_flag("truncated", truncated, lead)),
            source=_source_codes(source, n, lead),
            episode_id=_int_tag("episode_id", episode_id, n, lead, -(2**63), 2**63 - 1),
            t=_int_tag("t", t, n, lead, 0, _T_MAX - 1),
            policy_version=_int_tag("policy_version", policy_version, n, lead, -(2**63), 2**63 - 1),
            actor_id=int(actor[0]),
            extras={
                name: batched(
                    _array(f"extras[{name!r}]", given_extras[name], lead + shape, "iuf")
                ).astype(np.float32)
                for name, shape in self.extras_spec.items()
            },
        )

    def _obs_items(
        self, name: str, value: Any
    ) -> list[tuple[str, Any, tuple[tuple[int, ...], np.dtype]]]:
        """(key, value, spec) per observation array of `value`, checking the dict keys."""
        if not isinstance(self.observation_space, gym.spaces.Dict):
            if isinstance(value, Mapping):
                raise ValueError(f"{name}: got a dict, expected one array (the space is a Box)")
            return [(_BOX_KEY, value, self.observation_spec[_BOX_KEY])]
        if not isinstance(value, Mapping) or value.keys() != self.observation_spec.keys():
            got = sorted(value) if isinstance(value, Mapping) else type(value).__name__
            raise ValueError(
                f"{name}: got {got}, expected a dict with keys {sorted(self.observation_spec)}"
            )
        return [(key, value[key], spec) for key, spec in self.observation_spec.items()]

    def _ingest(self, c: _Chunk) -> None:
        """Bookkeeping per transition in a Python loop, then one vectorised write per array."""
        # slot -> 2 * row + is_next, last write wins (a chunk longer than the ring wraps):
        frames: dict[int, int] = {}  # which input observation, obs[row] or next_obs[row]
        fields: dict[int, int] = {}  # transition `row`, or the bare tags of its next_obs
        actor = c.actor_id
        episodes = c.episode_id.tolist()
        steps = c.t.tolist()
        ends = (c.terminated | c.truncated).tolist()
        for row, (episode, step, end) in enumerate(zip(episodes, steps, ends, strict=True)):
            key = (actor, episode)
            pending = self._pending.get(key)
            if pending is not None:
                self._drop_pending(pending[0])
                # A gap in t, or the pending slot is the one the next allocation reuses.
                if pending[1] != step or pending[0] == self._ptr:
                    pending = None
            if pending is None:
                slot = self._allocate()
                frames[slot] = 2 * row
            else:
                slot = pending[0]
            nxt = self._allocate()
            frames[nxt] = 2 * row + 1
            fields[slot] = 2 * row
            fields[nxt] = 2 * row + 1
            self._next_index[slot] = nxt
            self._prev_index[nxt] = slot
            self._valid[slot] = True
            self._num_valid += 1
            if not end:
                self._pending[key] = (nxt, step + 1)
                self._pending_key[nxt] = key
        self._write_frames(c, frames)
        self._write_fields(c, fields)

    def _allocate(self) -> int:
        """Take the slot at the write pointer, releasing whatever it held."""
        slot = self._ptr
        self._ptr = (slot + 1) % self.capacity
        if self._size < self.capacity:
            self._size += 1
        else:
            self._release(slot)
        return slot

    def _release(self, slot: int) -> None:
        """Forget slot's transition, the transition leading into it, and its pending entry."""
        if self._valid[slot]:
            self._valid[slot] = False
            self._num_valid -= 1
        nxt = self._next_index[slot]
        if nxt >= 0:
            self._prev_index[nxt] = -1
            self._next_index[slot] = -1
        prev = self._prev_index[slot]
        if prev >= 0:
            if self._valid[prev]:
                self._valid[prev] = False
                self._num_valid -= 1
            self._next_index[prev] = -1
            self._prev_index[slot] = -1
        self._drop_pending(slot)

    def _drop_pending(self, slot: int) -> None:
        key = self._pending_key.pop(slot, None)
        if key is not None:
            del self._pending[key]

    def _write_frames(self, c: _Chunk, frames: dict[int, int]) -> None:
        slots = np.fromiter(frames.keys(), np.int64, len(frames))
        codes = np.fromiter(frames.values(), np.int64, len(frames))
        rows, is_next = codes >> 1, (codes & 1).astype(bool)
        for key, store in self._obs.items():
            _scatter(store, slots[~is_next], c.obs[key], rows[~is_next])
            _scatter(store, slots[is_next], c.next_obs[key], rows[is_next])
        for camera, spec in self.frame_features.items():  # each written frame encoded once
            self._features[spec.key][slots] = spec.encode(self._obs[camera][slots])

    def _write_fields(self, c: _Chunk, fields: dict[int, int]) -> None:
        slots = np.fromiter(fields.keys(), np.int64, len(fields))
        codes = np.fromiter(fields.values(), np.int64, len(fields))
        rows, is_next = codes >> 1, (codes & 1).astype(bool)
        written, bare = slots[~is_next], slots[is_next]
        rows_written = rows[~is_next]
        for store, values in (
            (self._action, c.action),
            (self._reward, c.reward),
            (self._terminated, c.terminated),
            (self._truncated, c.truncated),
            *((self._extras[name], c.extras[name]) for name in self._extras),
        ):
            _scatter(store, written, values, rows_written)
            store[bare] = 0
        self._source[slots] = c.source[rows]
        self._episode_id[slots] = c.episode_id[rows]
        self._t[slots] = c.t[rows] + is_next
        self._policy_version[slots] = c.policy_version[rows]
        self._actor_id[slots] = c.actor_id

    # ---------------------------------------------------------------------------------- sample
    def sample_indices(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """`n` slots drawn uniformly (with replacement) among the valid transitions."""
        if self._num_valid == 0:
            raise EmptyBufferError(
                "the replay buffer holds no complete transition yet; add at least one "
                "(obs, action, next_obs) before sampling"
            )
        indices = rng.integers(0, self._size, size=n)
        for _ in range(_MAX_REDRAWS):
            invalid = ~self._valid[indices]
            if not invalid.any():
                return indices
            indices[invalid] = rng.integers(0, self._size, size=int(invalid.sum()))
        invalid = ~self._valid[indices]
        if invalid.any():
            indices[invalid] = rng.choice(np.flatnonzero(self._valid), size=int(invalid.sum()))
        return indices

    def sample(self, n: int, rng: np.random.Generator) -> Batch:
        """A uniform batch of `n` transitions."""
        return self.gather(self.sample_indices(n, rng))

    def _checked_indices(self, indices: ArrayLike) -> np.ndarray:
        idx = np.asarray(indices)
        if idx.ndim != 1 or (idx.size and idx.dtype.kind not in "iu"):
            raise ValueError(f"indices: got shape {idx.shape} dtype {idx.dtype}, expected 1-d ints")
        idx = idx.astype(np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= self.capacity):
            raise ValueError(
                f"indices: got values in [{idx.min()}, {idx.max()}], capacity {self.capacity}"
            )
        if not self._valid[idx].all():
            bad = idx[~self._valid[idx]][:5].tolist()
            raise ValueError(f"indices {bad} hold no complete transition (overwritten or terminal)")
        return idx

    def _pack(self, slots: np.ndarray) -> Obs:
        """The observations in `slots`; a featured camera's features stand in for its frames."""
        tensors = {
            key: torch.from_numpy(a[slots])
            for key, a in self._obs.items()
            if key not in self.frame_features
        }
        tensors |= {key: torch.from_numpy(a[slots]).float() for key, a in self._features.items()}
        if isinstance(self.observation_space, gym.spaces.Dict):
            return tensors
        return tensors[_BOX_KEY]

    def gather(self, indices: ArrayLike) -> Batch:
        """The transitions at valid slots `indices` as a Batch; next_obs via `next_index`."""
        idx = self._checked_indices(indices)
        return Batch(
            obs=self._pack(idx),
            action=torch.from_numpy(self._action[idx]),
            reward=torch.from_numpy(self._reward[idx]),
            next_obs=self._pack(self._next_index[idx]),
            terminated=torch.from_numpy(self._terminated[idx].astype(np.float32)),
        )

    def valid_indices(self) -> np.ndarray:
        """Slots that hold a transition (what `gather` and `tags` accept)."""
        return np.flatnonzero(self._valid)

    def tags(self, indices: ArrayLike) -> dict[str, np.ndarray]:
        """Tags, truncation flags and extras of the transitions at `indices` (copies)."""
        idx = self._checked_indices(indices)
        tags = {
            "source": self._source[idx],
            "episode_id": self._episode_id[idx],
            "t": self._t[idx],
            "policy_version": self._policy_version[idx],
            "actor_id": self._actor_id[idx],
            "truncated": self._truncated[idx],
        }
        return tags | {name: a[idx] for name, a in self._extras.items()}

    # ------------------------------------------------------------------------------ save, load
    def _storage(self) -> dict[str, np.ndarray]:
        """The storage arrays by their saved names."""
        return {
            **{f"obs/{key}": a for key, a in self._obs.items()},
            "action": self._action,
            "reward": self._reward,
            "terminated": self._terminated,
            "truncated": self._truncated,
            "next_index": self._next_index,
            "prev_index": self._prev_index,
            "valid": self._valid,
            "source": self._source,
            "episode_id": self._episode_id,
            "t": self._t,
            "policy_version": self._policy_version,
            "actor_id": self._actor_id,
            **{f"extras/{name}": a for name, a in self._extras.items()},
            **{f"features/{key}": a for key, a in self._features.items()},
        }

    def _bookkeeping(self) -> dict[str, np.ndarray]:
        """Write pointer, size and the pending-episode table, as arrays."""
        keys = list(self._pending)
        entries = [self._pending[key] for key in keys]
        return {
            "meta/format_version": np.array(FORMAT_VERSION, np.int64),
            "meta/ptr": np.array(self._ptr, np.int64),
            "meta/size": np.array(self._size, np.int64),
            "pending/actor_id": np.array([k[0] for k in keys], np.int32),
            "pending/episode_id": np.array([k[1] for k in keys], np.int64),
            "pending/slot": np.array([e[0] for e in entries], np.int64),
            "pending/next_t": np.array([e[1] for e in entries], np.int64),
        }

    def state_arrays(self) -> dict[str, np.ndarray]:
        """Every array that defines the buffer (what `save` writes), as read-only views."""
        arrays = {**self._storage(), **self._bookkeeping()}
        views = {}
        for name, a in arrays.items():
            view = a.view()
            view.flags.writeable = False
            views[name] = view
        return views

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write an `.npz` atomically: a temp file in the same directory, then `os.replace`.

        A crash mid-write leaves the previous file at `path` untouched.
        """
        path = Path(path)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, **self._storage(), **self._bookkeeping())
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        _fsync_dir(path.parent)
        logger.info(
            "saved replay buffer (%d transitions, %d slots) to %s", len(self), self._size, path
        )

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        observation_space: gym.Space,
        action_dim: int,
        *,
        frame_features: Mapping[str, FrameFeatures] | None = None,
    ) -> ReplayBuffer:
        """Restore a buffer written by `save`; ReplayFileError on a bad or mismatched file.

        Reads with `allow_pickle=False` only, one array at a time into the new buffer. Stored
        frame features load only under the same backbones (`frame_features`' keys).
        """
        try:
            with np.load(path, allow_pickle=False) as npz:
                return cls._from_npz(
                    Path(path), npz, observation_space, action_dim, frame_features or {}
                )
        except ReplayFileError:
            raise
        except FileNotFoundError as err:
            raise ReplayFileError(f"{path}: no such replay buffer file") from err
        except _CORRUPT_FILE_ERRORS as err:
            raise ReplayFileError(
                f"{path}: not a readable replay buffer file ({type(err).__name__}: {err}); it is "
                "truncated or corrupt, load an earlier save"
            ) from err

    @classmethod
    def _from_npz(
        cls,
        path: Path,
        npz: Mapping[str, np.ndarray],
        space: gym.Space,
        action_dim: int,
        frame_features: Mapping[str, FrameFeatures],
    ) -> ReplayBuffer:
        def fail(what: str) -> ReplayFileError:
            return ReplayFileError(f"{path}: {what}")

        names = set(npz.keys())
        if "meta/format_version" not in names or "action" not in names:
            raise fail("no 'meta/format_version' or 'action' array; not a replay buffer file")
        version = npz["meta/format_version"]
        if version.shape != () or int(version) != FORMAT_VERSION:
            raise fail(f"format version {version}, expected {FORMAT_VERSION}")
        action = npz["action"]
        if action.ndim != 2:
            raise fail(f"'action' has shape {action.shape}, expected (capacity, action_dim)")
        extras = {
            name.removeprefix("extras/"): tuple(npz[name].shape[1:])
            for name in names
            if name.startswith("extras/")
        }
        saved_features = sorted(n.removeprefix("features/") for n in names if "@" in n)
        wanted_features = sorted(spec.key for spec in frame_features.values())
        if saved_features != wanted_features:
            raise fail(
                f"it stores frame features {saved_features or 'none'}, this run's encoder makes "
                f"{wanted_features or 'none'} (<camera>@<backbone digest>); features of two "
                "encoders are never mixed: resume with the run's --backbone settings and weights "
                "file, or start a new run"
            )
        try:
            buffer = cls(
                space, action_dim, action.shape[0], extras=extras, frame_features=frame_features
            )
        except (ValueError, TypeError) as err:
            raise fail(str(err)) from err
        want = {**buffer._storage(), **buffer._bookkeeping()}
        if names != want.keys():
            raise fail(
                f"arrays {sorted(names - want.keys())} unexpected and "
                f"{sorted(want.keys() - names)} missing for this observation space"
            )
        num_pending = len(npz["pending/slot"])
        saved = {}
        for name, target in want.items():
            got = action if name == "action" else npz[name]
            shape = (num_pending,) if name.startswith("pending/") else target.shape
            if got.shape != shape or got.dtype != target.dtype:
                raise fail(
                    f"array {name!r} has shape {got.shape} dtype {got.dtype}, expected shape "
                    f"{shape} dtype {target.dtype}; was it saved with another observation space "
                    f"or action_dim (the file's action_dim is {action.shape[1]})?"
                )
            if name in buffer._storage():
                target[...] = got
            else:
                saved[name] = got
        buffer._restore_bookkeeping(saved, fail)
        return buffer

    def _restore_bookkeeping(self, data: dict[str, np.ndarray], fail: Any) -> None:
        """Set pointer, size and pending table from saved arrays, checking the links first."""
        cap = self.capacity
        ptr, size = int(data["meta/ptr"]), int(data["meta/size"])
        if not (0 <= size <= cap and 0 <= ptr < cap and (size == cap or ptr == size)):
            raise fail(f"write pointer {ptr} and size {size} inconsistent with capacity {cap}")
        links = {
            "next_index": self._next_index,
            "prev_index": self._prev_index,
            "pending/slot": data["pending/slot"],
        }
        for name, a in links.items():
            if a.size and (a.min() < -1 or a.max() >= size):
                raise fail(f"array {name!r} points outside the {size} written slots")
        if (self._next_index[self._valid] < 0).any():
            raise fail("a valid transition has no next-observation slot")
        self._ptr, self._size = ptr, size
        self._num_valid = int(self._valid.sum())
        for actor, episode, slot, next_t in zip(
            data["pending/actor_id"].tolist(),
            data["pending/episode_id"].tolist(),
            data["pending/slot"].tolist(),
            data["pending/next_t"].tolist(),
            strict=True,
        ):
            if slot < 0 or slot in self._pending_key or (actor, episode) in self._pending:
                raise fail(f"pending-episode table repeats or misplaces slot {slot}")
            self._pending[(actor, episode)] = (slot, next_t)
            self._pending_key[slot] = (actor, episode)
