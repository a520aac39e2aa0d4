"""The robot server's requests and replies, on the wire codec of `serl.transport.codec`.

Every request is one codec message from a DEALER to the server's ROUTER; its `fields`
carry ``rid`` (an int the reply repeats, so a client can drop a late reply to an earlier
call) and the request's own fields; arrays carry vectors (float32 or float64). A request
with an unknown kind, a missing or unexpected field or array, or a wrong shape is refused
with an ``error`` reply: nothing in a request can change the server's safety limits.

=================  =========================================  ==============================
kind               fields / arrays                            reply (``ok`` unless refused)
=================  =========================================  ==============================
get_state          -                                          state arrays + flags
move_delta         [gripper] / dpos (3,), drot (3,)            accepted, reason, clamped + state
move_to            [gripper] / pos (3,), quat (4,) wxyz        accepted, reason, clamped + state
reset              name | / q (n,)                            state (after the motion)
set_compliance     profile                                    profile
estop              [client]                                   estopped
release_estop      [client]                                   estopped (only its setters)
render             camera                                     frame (H, W, 3) uint8
info               -                                          backend, limits, counters, ...
=================  =========================================  ==============================

``move_delta`` is in physical units: metres and a rotation vector in radians (world frame),
added to the *measured* pose (SERL's convention: a blocked arm never winds up a force).
``error`` replies carry ``reason`` (a short code) and ``message`` (what to do).

``client`` names the calling client (`RobotClient` sends a random token, the same for its
life, whichever socket it uses); without it a request is its connection's. An e-stop belongs
to every client that pressed it: ``release_estop`` from any other client is refused
(``estop_owner``), and the arm moves again only once each of them has released it, or the
robot PC released it (`RobotServer.release_estop_locally`, SIGUSR1 to `serl robot-server`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from robots.backends.base import RobotState
from serl.transport.codec import Limits, Message, WireError

PROTOCOL_VERSION = 1

SERVER_LIMITS = Limits(
    max_message_bytes=64 << 10,
    max_frame_bytes=16 << 10,
    max_header_bytes=8 * 1024,
    max_arrays=4,
    max_ndim=2,
    max_str_len=256,
    max_container_len=32,
)
"""Inbound caps on the server: requests are a header and a few small vectors (a joint vector
of 2,048 float64 fits a frame), so libzmq refuses any larger frame before it is stored. Camera
frames only go out, in replies."""

CLIENT_LIMITS = Limits(
    max_message_bytes=64 << 20,
    max_header_bytes=256 * 1024,
    max_arrays=16,
    max_ndim=3,
    max_str_len=4096,
    max_container_len=256,
)
"""Inbound caps on the client: replies may carry a camera frame (up to 64 MiB)."""

FLOAT_DTYPES = ("float32", "float64")


@dataclass(frozen=True)
class RequestSpec:
    """What one request kind may carry: required/optional fields and arrays of fixed sizes."""

    fields: tuple[str, ...] = ()
    optional_fields: tuple[str, ...] = ()
    arrays: Mapping[str, int | None] = None  # type: ignore[assignment]
    optional_arrays: Mapping[str, int | None] = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        object.__setattr__(self, "arrays", dict(self.arrays or {}))
        object.__setattr__(self, "optional_arrays", dict(self.optional_arrays or {}))


REQUESTS: dict[str, RequestSpec] = {
    "get_state": RequestSpec(),
    "move_delta": RequestSpec(
        optional_fields=("gripper",), arrays={"dpos": 3}, optional_arrays={"drot": 3}
    ),
    "move_to": RequestSpec(
        optional_fields=("gripper",), arrays={"pos": 3}, optional_arrays={"quat": 4}
    ),
    "reset": RequestSpec(optional_fields=("name",), optional_arrays={"q": None}),
    "set_compliance": RequestSpec(fields=("profile",)),
    "estop": RequestSpec(optional_fields=("client",)),
    "release_estop": RequestSpec(optional_fields=("client",)),
    "render": RequestSpec(fields=("camera",)),
    "info": RequestSpec(),
}
FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "gripper": (int, float),
    "name": (str,),
    "profile": (str,),
    "camera": (str,),
    "client": (str,),
}


class RequestError(ValueError):
    """A well-formed message that is not a valid request; `reason` is a counter code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def request_id(message: Message) -> int:
    rid = message.fields.get("rid")
    if type(rid) is not int:
        raise WireError("bad_rid", f"{message.kind!r} request: rid {rid!r} is not an int")
    return rid


def validate_request(message: Message) -> dict[str, Any]:
    """The request's fields and float64 arrays by name, or RequestError saying what is wrong."""
    spec = REQUESTS.get(message.kind)
    if spec is None:
        raise RequestError(
            "unknown_kind",
            f"unknown request {message.kind!r}; the server answers {', '.join(REQUESTS)} "
            "(safety limits are set only in the server's config file)",
        )
    fields = {k: v for k, v in message.fields.items() if k != "rid"}
    allowed = set(spec.fields) | set(spec.optional_fields)
    unexpected = sorted(set(fields) - allowed)
    missing = sorted(set(spec.fields) - set(fields))
    if unexpected or missing:
        raise RequestError(
            "bad_fields",
            f"{message.kind!r} request: unexpected fields {unexpected}, missing {missing}; "
            f"it takes {sorted(allowed)}",
        )
    out: dict[str, Any] = {}
    for name, value in fields.items():
        if type(value) not in FIELD_TYPES[name] or isinstance(value, bool):
            raise RequestError(
                "bad_fields", f"{message.kind!r}: field {name}={value!r} has a bad type"
            )
        out[name] = value
    sizes = spec.arrays | spec.optional_arrays
    unexpected = sorted(set(message.arrays) - set(sizes))
    missing = sorted(set(spec.arrays) - set(message.arrays))
    if unexpected or missing:
        raise RequestError(
            "bad_arrays",
            f"{message.kind!r} request: unexpected arrays {unexpected}, missing {missing}",
        )
    for name, arr in message.arrays.items():
        size = sizes[name]
        if arr.dtype.name not in FLOAT_DTYPES or arr.ndim != 1 or size not in (None, arr.size):
            want = f"({size},)" if size is not None else "(n,)"
            raise RequestError(
                "bad_arrays",
                f"{message.kind!r}: array {name!r} is {arr.dtype.name}{list(arr.shape)}, "
                f"expected float32/float64 {want}",
            )
        out[name] = arr.astype(np.float64)
    return out


def state_arrays(state: RobotState, timestamp_s: float, held: bool, estopped: bool) -> dict:
    """The arrays of a state reply (what `RobotClient.get_state` returns)."""
    return {
        "ee_pos": np.asarray(state.ee_pos, dtype=np.float64),
        "ee_quat": np.asarray(state.ee_quat, dtype=np.float64),
        "ee_vel": np.asarray(state.ee_vel, dtype=np.float64),
        "gripper_width": np.array([state.gripper_width], dtype=np.float64),
        "q": np.asarray(state.q, dtype=np.float64),
        "dq": np.asarray(state.dq, dtype=np.float64),
        "timestamp": np.array(timestamp_s, dtype=np.float64),
        "held": np.array(held),
        "estopped": np.array(estopped),
    }
