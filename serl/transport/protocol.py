"""Message kinds, the transition spec, the handshake and chunk validation (DESIGN §4).

Conversation on the data socket (actor DEALER -> learner ROUTER)::

    actor                                   learner
    hello {handshake, conn, weights_version[, weights_learner]} ->
                                          <- welcome {conn, cursor, committed, weights_version,
                                                      learner}
                                             (+ weights, if the actor's are older)
                                          <- refused {reason}            (spec mismatch)
    chunk {seq, conn} + arrays           ->
                                          <- ack {seq, cursor, committed[, rejected]}
                                          <- commit {committed}          (after a checkpoint)
    ping {conn}                          -> <- pong {cursor, committed, weights_version, learner}
    weights_request {have[, have_learner]} -> <- weights {version, published_ns, learner} + tensors
    episode {stats}                      ->
    bye                                  ->
    (anything from a peer without a session) <- need_hello {conn}

Weights also go out on the learner's PUB socket as `weights` messages. `learner` is the
learner's incarnation (start time in ms): versions are ordered within one incarnation, and an
actor replaces weights of another incarnation whatever their version, so a learner resumed
from a checkpoint older than the weights an actor holds still takes over the actor's policy.

Chunks are numbered per (actor_id, incarnation) from seq 0 with no gaps. The learner keeps a
cursor per pair (highest contiguous seq accepted, -1 before any) and accepts only
`cursor + 1`; lower seqs are duplicates (re-acked, dropped), higher ones are gaps (dropped,
resent later). `committed` <= `cursor` is the highest seq a checkpoint holds: actors keep
every chunk until it is committed, so a learner killed between checkpoints and resumed from
the last one gets everything after it resent, and nothing twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from serl.transport.codec import ALLOWED_DTYPES, Limits, WireError

PROTOCOL_VERSION = 1
"""Bumped on any change of message kinds or fields; a mismatch refuses the handshake."""


class Kind:
    """Message kinds (the header's `kind` string)."""

    HELLO = "hello"
    WELCOME = "welcome"
    REFUSED = "refused"
    CHUNK = "chunk"
    ACK = "ack"
    COMMIT = "commit"
    PING = "ping"
    PONG = "pong"
    NEED_HELLO = "need_hello"
    WEIGHTS = "weights"
    WEIGHTS_REQUEST = "weights_request"
    EPISODE = "episode"
    BYE = "bye"


SOURCES = ("demo", "offline", "online", "intervention", "sim", "real")
"""Transition sources (DESIGN §3); the `source` extra carries the index into this tuple."""

MAX_CHUNK_TRANSITIONS = 4096
"""Leading length cap of one chunk; a chunk is meant to be a few hundred transitions (actors
send 64 by default). With the spec it sets the largest message and frame a learner accepts
(`TransitionSpec.limits`)."""
MAX_KEY_LEN = 64
MAX_EPISODE_STATS = 64
"""Scalar entries in one episode-stats message."""

ArraySpec = tuple[str, tuple[int, ...]]
"""(dtype name, per-transition shape)."""

RESERVED_NAMES = ("action", "reward", "terminated", "truncated")
DEFAULT_EXTRAS: dict[str, ArraySpec] = {
    "source": ("uint8", ()),
    "episode_id": ("int64", ()),
    "t": ("int64", ()),
    "policy_version": ("int64", ()),
}
"""Per-transition tags (DESIGN §3); each is optional in a chunk but must match when present."""


class HandshakeRefused(RuntimeError):
    """The learner and an actor disagree on protocol, config or spaces; the message says how.

    `for_peer` is what the refused side is told: the same without the refuser's config hash,
    which the peer (unauthenticated without CURVE) has no business learning.
    """

    def __init__(self, message: str, for_peer: str | None = None) -> None:
        super().__init__(message)
        self.for_peer = message if for_peer is None else for_peer


class ChunkRejected(ValueError):
    """A well-formed chunk whose content does not fit the spec (shape, dtype, NaN/Inf)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason


def _check_key(key: Any, what: str) -> str:
    if not isinstance(key, str) or not 0 < len(key) <= MAX_KEY_LEN or "/" in key:
        raise WireError("bad_spec", f"{what} name {key!r} is not a str of 1..64 chars without '/'")
    return key


def _array_spec(value: Any, what: str) -> ArraySpec:
    """Parse [dtype, shape] from the wire (or a Python tuple), checking dtype and dims."""
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise WireError("bad_spec", f"{what}: {value!r} is not [dtype, shape]")
    dtype, shape = value
    if dtype not in ALLOWED_DTYPES:
        raise WireError("bad_spec", f"{what}: dtype {dtype!r} not allowed")
    if not isinstance(shape, list | tuple) or len(shape) > 6:
        raise WireError("bad_spec", f"{what}: shape {shape!r} is not a list of <= 6 dims")
    if not all(type(d) is int and 0 < d <= 2**20 for d in shape):
        raise WireError("bad_spec", f"{what}: shape {shape!r} has a dim outside [1, 2**20]")
    return (dtype, tuple(shape))


@dataclass(frozen=True)
class TransitionSpec:
    """What one transition holds: observation arrays, the action, and optional tag arrays.

    A chunk of n transitions carries `obs/<key>` (n, *shape) for every observation key,
    optionally `next_obs/<key>` for all keys (omit it when the learner rebuilds next_obs from
    the following obs, as image buffers do), `action` (n, *shape), `reward` float32 (n,),
    `terminated` and `truncated` bool (n,), and any subset of `extras` (n, *shape).
    A plain Box observation is one key (by convention "state").
    """

    obs: Mapping[str, ArraySpec]
    action: ArraySpec
    extras: Mapping[str, ArraySpec] = field(default_factory=lambda: dict(DEFAULT_EXTRAS))

    def __post_init__(self) -> None:
        object.__setattr__(
            self,
            "obs",
            {_check_key(k, "observation"): _array_spec(v, k) for k, v in self.obs.items()},
        )
        object.__setattr__(self, "action", _array_spec(self.action, "action"))
        extras = {_check_key(k, "extra"): _array_spec(v, k) for k, v in self.extras.items()}
        clash = set(extras) & set(RESERVED_NAMES)
        if clash:
            raise WireError("bad_spec", f"extras {sorted(clash)} clash with reserved names")
        object.__setattr__(self, "extras", extras)
        if not self.obs:
            raise WireError("bad_spec", "spec has no observation key")

    def to_wire(self) -> dict[str, Any]:
        """Plain msgpack/JSON-able form: {obs: {key: [dtype, shape]}, action, extras}."""

        def enc(spec: ArraySpec) -> list[Any]:
            return [spec[0], list(spec[1])]

        return {
            "obs": {k: enc(v) for k, v in self.obs.items()},
            "action": enc(self.action),
            "extras": {k: enc(v) for k, v in self.extras.items()},
        }

    @classmethod
    def from_wire(cls, value: Any) -> TransitionSpec:
        """Parse `to_wire` output from an untrusted peer; raises WireError('bad_spec')."""
        if not isinstance(value, dict) or set(value) != {"obs", "action", "extras"}:
            raise WireError("bad_spec", "spec is not a map {obs, action, extras}")
        if not isinstance(value["obs"], dict) or not isinstance(value["extras"], dict):
            raise WireError("bad_spec", "spec obs/extras are not maps")
        return cls(obs=value["obs"], action=value["action"], extras=value["extras"])

    @classmethod
    def from_spaces(
        cls,
        observation_space: Any,
        action_space: Any,
        extras: Mapping[str, ArraySpec] | None = None,
    ) -> TransitionSpec:
        """Build from gymnasium spaces: a Box is key 'state', a Dict of Boxes keeps its keys."""
        import gymnasium.spaces as spaces

        if isinstance(observation_space, spaces.Dict):
            boxes = dict(observation_space.spaces)
        else:
            boxes = {"state": observation_space}
        obs = {k: (np.dtype(b.dtype).name, tuple(b.shape)) for k, b in boxes.items()}
        action = (np.dtype(action_space.dtype).name, tuple(action_space.shape))
        return cls(
            obs=obs, action=action, extras=dict(DEFAULT_EXTRAS if extras is None else extras)
        )

    def item_bytes(self) -> dict[str, int]:
        """Bytes per transition of every array a chunk may carry, by wire name."""
        items: dict[str, ArraySpec] = {f"obs/{k}": v for k, v in self.obs.items()}
        items |= {f"next_obs/{k}": v for k, v in self.obs.items()}
        items |= {
            "action": self.action,
            "reward": ("float32", ()),
            "terminated": ("bool", ()),
            "truncated": ("bool", ()),
        }
        items |= dict(self.extras)
        return {
            name: ALLOWED_DTYPES[dtype].itemsize * int(np.prod(shape, dtype=np.int64))
            for name, (dtype, shape) in items.items()
        }

    def limits(self, max_message_bytes: int, base: Limits | None = None) -> Limits:
        """Inbound caps of a learner for chunks of this spec, at most `max_message_bytes`.

        The largest legitimate chunk has MAX_CHUNK_TRANSITIONS transitions, or as many as fit
        in `max_message_bytes`; its size caps a message, its largest array caps a frame
        (ZMQ_MAXMSGSIZE). A state-only spec thus gets caps of a few hundred KiB, however
        large `max_message_bytes` is, and libzmq refuses a bigger frame before it is stored.
        """
        base = base or Limits()
        items = self.item_bytes()
        per_transition = sum(items.values())
        room = max(0, max_message_bytes - base.max_header_bytes)
        n = max(1, min(MAX_CHUNK_TRANSITIONS, room // per_transition))
        message = min(max_message_bytes, base.max_header_bytes + n * per_transition)
        frame = min(message, max(base.max_header_bytes, n * max(items.values())))
        return replace(base, max_message_bytes=message, max_frame_bytes=frame)

    def validate_chunk(self, arrays: Mapping[str, np.ndarray]) -> int:
        """Check a chunk's arrays against this spec; return its length n.

        Raises ChunkRejected with a reason code: 'missing_array', 'unknown_array', 'bad_dtype',
        'bad_shape', 'bad_length' or 'non_finite' (NaN/Inf in any float array).
        """
        expected: dict[str, ArraySpec] = {f"obs/{k}": v for k, v in self.obs.items()}
        expected |= {
            "action": self.action,
            "reward": ("float32", ()),
            "terminated": ("bool", ()),
            "truncated": ("bool", ()),
        }
        optional: dict[str, ArraySpec] = {f"next_obs/{k}": v for k, v in self.obs.items()}
        optional |= dict(self.extras)
        missing = [name for name in expected if name not in arrays]
        if missing:
            raise ChunkRejected("missing_array", f"chunk lacks {missing}")
        unknown = [name for name in arrays if name not in expected and name not in optional]
        if unknown:
            raise ChunkRejected("unknown_array", f"chunk has arrays {unknown} not in the spec")
        next_keys = [name for name in arrays if name.startswith("next_obs/")]
        if next_keys and len(next_keys) != len(self.obs):
            raise ChunkRejected("missing_array", f"chunk has only {next_keys} of next_obs")
        n = int(np.shape(arrays["reward"])[0]) if np.ndim(arrays["reward"]) else -1
        if not 0 < n <= MAX_CHUNK_TRANSITIONS:
            raise ChunkRejected(
                "bad_length", f"chunk length {n} not in [1, {MAX_CHUNK_TRANSITIONS}]"
            )
        for name, arr in arrays.items():
            dtype, shape = expected.get(name) or optional[name]
            if arr.dtype.name != dtype:
                raise ChunkRejected("bad_dtype", f"{name!r} is {arr.dtype.name}, spec says {dtype}")
            if arr.shape != (n, *shape):
                raise ChunkRejected(
                    "bad_shape", f"{name!r} has shape {arr.shape}, spec says {(n, *shape)}"
                )
            if arr.dtype.kind == "f" and not np.isfinite(arr).all():
                raise ChunkRejected("non_finite", f"{name!r} holds NaN or Inf")
        return n


def chunk_arrays(
    obs: Mapping[str, np.ndarray],
    action: np.ndarray,
    reward: np.ndarray,
    terminated: np.ndarray,
    truncated: np.ndarray,
    next_obs: Mapping[str, np.ndarray] | None = None,
    **extras: np.ndarray,
) -> dict[str, np.ndarray]:
    """Flatten stacked transitions into the wire names a chunk uses ('obs/<key>', ...)."""
    arrays = {f"obs/{k}": v for k, v in obs.items()}
    if next_obs is not None:
        arrays |= {f"next_obs/{k}": v for k, v in next_obs.items()}
    arrays |= {
        "action": action,
        "reward": np.asarray(reward, np.float32),
        "terminated": np.asarray(terminated, bool),
        "truncated": np.asarray(truncated, bool),
    }
    return arrays | dict(extras)


@dataclass
class Chunk:
    """Transitions accepted by the learner: numbered, validated, views of the received frames."""

    actor_id: str
    incarnation: int
    seq: int
    arrays: dict[str, np.ndarray]

    def __len__(self) -> int:
        return int(self.arrays["reward"].shape[0])

    def _prefixed(self, prefix: str) -> dict[str, np.ndarray]:
        return {k[len(prefix) :]: v for k, v in self.arrays.items() if k.startswith(prefix)}

    @property
    def obs(self) -> dict[str, np.ndarray]:
        return self._prefixed("obs/")

    @property
    def next_obs(self) -> dict[str, np.ndarray] | None:
        """None when the actor left next_obs for the learner to rebuild."""
        return self._prefixed("next_obs/") or None

    @property
    def action(self) -> np.ndarray:
        return self.arrays["action"]

    @property
    def reward(self) -> np.ndarray:
        return self.arrays["reward"]

    @property
    def terminated(self) -> np.ndarray:
        return self.arrays["terminated"]

    @property
    def truncated(self) -> np.ndarray:
        return self.arrays["truncated"]

    @property
    def extras(self) -> dict[str, np.ndarray]:
        return {k: v for k, v in self.arrays.items() if "/" not in k and k not in RESERVED_NAMES}


@dataclass(frozen=True)
class Handshake:
    """What an actor and the learner must agree on before any transition is accepted."""

    config_hash: str
    spec: TransitionSpec
    actor_id: str = ""
    incarnation: int = 0
    protocol_version: int = PROTOCOL_VERSION

    def to_fields(self) -> dict[str, Any]:
        return {
            "protocol": self.protocol_version,
            "config_hash": self.config_hash,
            "spec": self.spec.to_wire(),
            "actor_id": self.actor_id,
            "incarnation": self.incarnation,
        }

    @classmethod
    def from_fields(cls, fields: Mapping[str, Any]) -> Handshake:
        """Parse a hello's fields from an untrusted peer; raises WireError."""
        return cls(
            protocol_version=get_int(fields, "protocol"),
            config_hash=get_str(fields, "config_hash"),
            spec=TransitionSpec.from_wire(fields.get("spec")),
            actor_id=_check_key(get_str(fields, "actor_id"), "actor_id"),
            incarnation=get_int(fields, "incarnation", 0),
        )


def _short(value: str) -> str:
    return value if len(value) <= 12 else value[:12] + ".."


def _spec_differences(ours: TransitionSpec, theirs: TransitionSpec, a: str, b: str) -> list[str]:
    diffs = []

    def compare(label: str, mine: ArraySpec, other: ArraySpec) -> None:
        if mine[0] != other[0]:
            diffs.append(f"{label} dtype {mine[0]} vs {other[0]}")
        if mine[1] != other[1]:
            diffs.append(f"{label} shape {mine[1]} vs {other[1]}")

    for group, mine, other in (
        ("observation", ours.obs, theirs.obs),
        ("extra", ours.extras, theirs.extras),
    ):
        for key in mine:
            if key not in other:
                diffs.append(f"{group} {key!r} missing on the {b}")
            else:
                compare(f"{group} {key!r}", mine[key], other[key])
        diffs += [f"{group} {key!r} missing on the {a}" for key in other if key not in mine]
    compare("action", ours.action, theirs.action)
    return diffs


def check_handshake(
    ours: Handshake, theirs: Handshake, *, ours_role: str = "learner", theirs_role: str = "actor"
) -> None:
    """Raise HandshakeRefused listing every difference (values shown as ours vs theirs); its
    `for_peer` text leaves our config hash out."""
    a, b = ours_role, theirs_role
    diffs, for_peer = [], []
    if ours.protocol_version != theirs.protocol_version:
        diffs.append(
            f"protocol version differs: {a} {ours.protocol_version} {b} {theirs.protocol_version}"
        )
    if ours.config_hash != theirs.config_hash:
        theirs_hash = _short(theirs.config_hash)
        diffs.append(f"config hash differs: {a} {_short(ours.config_hash)} {b} {theirs_hash}")
        for_peer.append(
            f"config hash differs: {b} {theirs_hash} (the {a} logs its own when it starts)"
        )
    diffs += _spec_differences(ours.spec, theirs.spec, a, b)
    if diffs:
        who = f"{b} {theirs.actor_id!r} (incarnation {theirs.incarnation}) refused by the {a}: "
        for_peer += [d for d in diffs if not d.startswith("config hash")]
        raise HandshakeRefused(who + "; ".join(diffs), who + "; ".join(for_peer))


def get_int(fields: Mapping[str, Any], name: str, lo: int = -(2**63), hi: int = 2**63 - 1) -> int:
    """An int field of an untrusted message, within [lo, hi]; raises WireError('bad_field')."""
    value = fields.get(name)
    if type(value) is not int or not lo <= value <= hi:
        raise WireError("bad_field", f"field {name!r}={value!r} is not an int in [{lo}, {hi}]")
    return value


def get_str(fields: Mapping[str, Any], name: str) -> str:
    """A str field of an untrusted message; raises WireError('bad_field')."""
    value = fields.get(name)
    if not isinstance(value, str):
        raise WireError("bad_field", f"field {name!r}={value!r} is not a str")
    return value


def scalar_stats(value: Any) -> dict[str, bool | int | float | str]:
    """Episode statistics from an untrusted peer: a small map of str -> scalar."""
    if not isinstance(value, dict) or len(value) > MAX_EPISODE_STATS:
        raise WireError("bad_field", f"episode stats are not a map of <= {MAX_EPISODE_STATS}")
    for key, item in value.items():
        if not isinstance(item, bool | int | float | str):
            raise WireError("bad_field", f"episode stat {key!r}={item!r} is not a scalar")
    return value
