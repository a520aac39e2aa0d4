"""`RobotClient`: the caller's side of the robot server (the gymnasium env, teleop, scripts).

One DEALER socket; each call sends one request with a fresh request id and waits for the
reply with that id, at most `timeout_s` (resets: `reset_timeout_s`). When the server does
not answer in time the client raises `RobotTimeoutError` naming the endpoint and the call,
and replaces its socket, so a late reply can never be taken for the answer to a later call.
A refused request raises `RobotServerError` with the server's reason and message. Safety
rejections of motion commands are not errors: `move_delta` / `move_to` return a
`MoveResult` saying whether the command was accepted, why not, and which limits clamped it.

Not thread-safe: use one client per thread (an e-stop button gets its own client).
"""

from __future__ import annotations

import itertools
import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import zmq

from robots.protocol import CLIENT_LIMITS
from serl.transport.auth import ClientKeys, configure_client_socket
from serl.transport.codec import Message, WireError, decode, encode
from serl.transport.sockets import recv_bounded

logger = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "tcp://127.0.0.1:5560"


class RobotTimeoutError(TimeoutError):
    """The robot server did not answer a call in time."""


class RobotServerError(RuntimeError):
    """The robot server refused a request; `reason` is its short code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason


@dataclass(frozen=True)
class MoveResult:
    """The server's answer to a motion command, with the state right after it."""

    accepted: bool
    """False when the command was refused (the arm holds); `reason` says why."""
    reason: str
    """'' when accepted, else e.g. 'nonfinite', 'estopped', 'resetting'."""
    clamped: tuple[str, ...]
    """Limits that changed the command: 'workspace', 'step_m', 'speed_mps', 'step_rad', ..."""
    state: dict[str, np.ndarray] = field(repr=False)
    """Same keys as `RobotClient.get_state`."""


class RobotClient:
    """Talks to a `serl robot-server`; see the module docstring.

    Args:
        endpoint: the server's endpoint, e.g. "tcp://robot-pc:5560".
        timeout_s: longest wait for any reply except a reset's.
        reset_timeout_s: longest wait for a reset (real arms move slowly to the pose).
        curve: client keys (`serl.transport.auth.load_client_keys`) when the server uses CURVE.
    """

    def __init__(
        self,
        endpoint: str = DEFAULT_ENDPOINT,
        *,
        timeout_s: float = 2.0,
        reset_timeout_s: float = 30.0,
        curve: ClientKeys | None = None,
    ) -> None:
        if timeout_s <= 0 or reset_timeout_s <= 0:
            raise ValueError(f"timeouts must be > 0, got {timeout_s} and {reset_timeout_s}")
        self.endpoint = endpoint
        self.timeout_s = timeout_s
        self.reset_timeout_s = reset_timeout_s
        self._curve = curve
        self.client_id = secrets.token_hex(16)
        """Names this client to the server whichever socket it uses: an e-stop it sets can be
        released by it (or at the robot PC) and by no other client."""
        self._rids = itertools.count(1)
        self._ctx = zmq.Context()
        self._sock = self._connect()

    def _connect(self) -> zmq.Socket:
        sock = self._ctx.socket(zmq.DEALER)
        sock.linger = 0
        sock.maxmsgsize = CLIENT_LIMITS.frame_cap
        if self._curve is not None:
            configure_client_socket(sock, self._curve)
        sock.connect(self.endpoint)
        return sock

    # ------------------------------------------------------------------ calls
    def get_state(self) -> dict[str, np.ndarray]:
        """The arm's state: ee_pos (3,) m, ee_quat (4,) wxyz, ee_vel (6,), gripper_width (1,) m,
        q, dq (joints), timestamp () s since the epoch (server clock), held (), estopped ()."""
        return _state(self._call("get_state"))

    def move_delta(
        self,
        dpos: np.ndarray,
        drot: np.ndarray | None = None,
        gripper: float | None = None,
    ) -> MoveResult:
        """Move the target by `dpos` (m) and the rotation vector `drot` (rad, world frame) from
        the measured pose; `gripper` in [-1 open, +1 closed]."""
        arrays = {"dpos": np.asarray(dpos, dtype=np.float64)}
        if drot is not None:
            arrays["drot"] = np.asarray(drot, dtype=np.float64)
        return self._move("move_delta", arrays, gripper)

    def move_to(
        self,
        pos: np.ndarray,
        quat: np.ndarray | None = None,
        gripper: float | None = None,
    ) -> MoveResult:
        """Target an absolute TCP pose (m; quaternion wxyz, default: keep the orientation)."""
        arrays = {"pos": np.asarray(pos, dtype=np.float64)}
        if quat is not None:
            arrays["quat"] = np.asarray(quat, dtype=np.float64)
        return self._move("move_to", arrays, gripper)

    def reset(self, pose: str | np.ndarray = "home") -> dict[str, np.ndarray]:
        """Go to a named joint pose of the server's config or to joint angles (rad); returns
        the state once there."""
        if isinstance(pose, str):
            message = self._call("reset", {"name": pose}, timeout_s=self.reset_timeout_s)
        else:
            arrays = {"q": np.asarray(pose, dtype=np.float64)}
            message = self._call("reset", arrays=arrays, timeout_s=self.reset_timeout_s)
        return _state(message)

    def set_compliance(self, profile: str) -> None:
        """Switch to a compliance profile defined in the server's config."""
        self._call("set_compliance", {"profile": profile})

    def estop(self) -> None:
        """Stop the arm now; motion is refused until `release_estop`."""
        self._call("estop", {"client": self.client_id})

    def release_estop(self) -> None:
        """Release an e-stop this client set (a no-op when the arm is not e-stopped).

        Raises RobotServerError 'estop_owner' if another client set it (release it there, or
        at the robot PC: SIGUSR1 to `serl robot-server`), and 'estop_held' if other clients
        pressed it too and have not released it yet.
        """
        self._call("release_estop", {"client": self.client_id})

    def render(self, camera: str) -> np.ndarray:
        """A uint8 (H, W, 3) frame of a server-side camera (the sim backend's MuJoCo cameras)."""
        frame = self._call("render", {"camera": camera}).arrays.get("frame")
        if frame is None or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise RobotServerError("bad_reply", f"render({camera!r}) did not return an RGB frame")
        return np.array(frame)

    def info(self) -> dict[str, Any]:
        """Backend name, cameras, safety limits (read-only), profiles, reset poses, counters."""
        return dict(self._call("info").fields)

    def close(self) -> None:
        self._sock.close(linger=0)
        self._ctx.term()

    def __enter__(self) -> RobotClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ plumbing
    def _move(self, kind: str, arrays: dict[str, np.ndarray], gripper: float | None) -> MoveResult:
        fields = {} if gripper is None else {"gripper": float(gripper)}
        reply = self._call(kind, fields, arrays)
        return MoveResult(
            accepted=bool(reply.fields.get("accepted")),
            reason=str(reply.fields.get("reason", "")),
            clamped=tuple(reply.fields.get("clamped", ())),
            state=_state(reply),
        )

    def _call(
        self,
        kind: str,
        fields: dict[str, Any] | None = None,
        arrays: dict[str, np.ndarray] | None = None,
        timeout_s: float | None = None,
    ) -> Message:
        rid = next(self._rids)
        timeout_s = self.timeout_s if timeout_s is None else timeout_s
        self._sock.send_multipart(encode(kind, {"rid": rid, **(fields or {})}, arrays), copy=False)
        deadline = time.monotonic() + timeout_s
        while True:
            left_ms = int(max(0.0, deadline - time.monotonic()) * 1000)
            if left_ms <= 0 or not self._sock.poll(left_ms, zmq.POLLIN):
                self._sock.close(linger=0)  # a late reply must not answer the next call
                self._sock = self._connect()
                raise RobotTimeoutError(
                    f"robot server at {self.endpoint} did not answer {kind!r} within "
                    f"{timeout_s:g} s; is `serl robot-server` running there and reachable "
                    "(endpoint, firewall, CURVE keys)?"
                )
            frames, reason = recv_bounded(self._sock, CLIENT_LIMITS)
            if frames is None:
                if reason is not None:
                    logger.warning("dropped a reply from %s: %s", self.endpoint, reason)
                continue
            try:
                reply = decode(frames, CLIENT_LIMITS)
            except WireError as exc:
                logger.warning("dropped a reply from %s: %s", self.endpoint, exc)
                continue
            if reply.fields.get("rid") != rid:
                continue  # the answer to an earlier call that timed out
            if reply.kind == "error":
                raise RobotServerError(
                    str(reply.fields.get("reason", "error")), str(reply.fields.get("message", ""))
                )
            return reply


STATE_KEYS = ("ee_pos", "ee_quat", "ee_vel", "gripper_width", "q", "dq", "timestamp")
FLAG_KEYS = ("held", "estopped")


def _state(message: Message) -> dict[str, np.ndarray]:
    missing = [k for k in (*STATE_KEYS, *FLAG_KEYS) if k not in message.arrays]
    if missing:
        raise RobotServerError("bad_reply", f"{message.kind!r} reply lacks state arrays {missing}")
    state = {k: np.array(message.arrays[k]) for k in (*STATE_KEYS, *FLAG_KEYS)}
    for key in ("timestamp", *FLAG_KEYS):  # scalars travel as (1,) arrays
        state[key] = state[key].reshape(())
    return state
