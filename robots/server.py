"""The robot server: owns one arm through a backend and serves it over ZeroMQ, safely.

One ROUTER socket, bound on loopback unless CURVE keys or `insecure` say otherwise
(`serl.transport.sockets.bind_endpoint`), every inbound message capped (ZMQ_MAXMSGSIZE per
frame, `robots.protocol.SERVER_LIMITS` per message, and what ZeroMQ may hold per client and
for all of them, `serl.transport.guard.InboundGuard`) and decoded by the codec, which never
runs code (no pickle).
A message that fails decoding is counted under ``dropped:<reason>`` and dropped without a
reply; a decodable but invalid request gets an ``error`` reply and is counted under
``refused:<reason>``. The server never raises because of what a peer sent.

Safety is enforced here, whoever the client is (DESIGN §5):

* every motion target goes through `robots.safety.SafetyFilter`: NaN/Inf commands, and
  rotations or quaternions whose norm overflows to Inf, are rejected and the arm holds
  (``rejected:nonfinite``); the workspace box, the per-step and the speed limits clamp the
  target (``clamped:<limit>``); a motion command that fails inside the server for any other
  reason (``refused:internal_error``) also leaves the arm holding;
* a watchdog holds the arm when no motion command arrived for `watchdog_timeout_s`
  (``watchdog:hold``) and stops the motion after `watchdog_stop_s` (``watchdog:stop``); the
  next motion command resumes;
* ``estop`` always works: it needs no session or state, is handled in the same loop as
  everything else, and ROUTER fair-queues between peers, so a client flooding commands
  cannot starve another client's e-stop. While e-stopped every motion and reset is refused
  (``rejected:estopped``) until ``release_estop`` from every client that pressed it (another
  client's release is refused, ``refused:estop_owner``), or a release at the robot PC
  (`RobotServer.release_estop_locally`, SIGUSR1 to `serl robot-server`); each release is
  logged;
* resets run on a worker thread, so the loop (and the e-stop) keeps serving during a long
  joint motion on a real arm; motion commands during a reset are refused
  (``rejected:resetting``);
* a reset goes to a named pose of the config, or to a client's joint vector only if it is
  inside the joint limits and its TCP (forward kinematics, `RobotBackend.tcp_position`) inside
  the workspace box; a backend without a kinematic model (UR today) takes named poses only
  (``rejected:reset_pose``);
* the limits come from `RobotServerConfig` only; no request can change them.

Every rejection and clamp is counted in `stats` and logged (at most once a second per
reason, with the number of repeats, so a flood cannot flood the log).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, replace
from typing import Any

import numpy as np
import zmq

from robots.backends.base import BackendError, RobotBackend, make_backend
from robots.config import RobotServerConfig
from robots.protocol import (
    PROTOCOL_VERSION,
    SERVER_LIMITS,
    RequestError,
    request_id,
    state_arrays,
    validate_request,
)
from robots.safety import Decision, SafetyFilter, quat_from_rotvec, quat_mul, quat_normalize
from serl.transport.auth import (
    ZapHandler,
    configure_server_socket,
    load_server_keys,
    peer_user_id,
)
from serl.transport.codec import WireError, decode, encode
from serl.transport.guard import InboundGuard, peer_budget
from serl.transport.sockets import bind_endpoint, recv_bounded

logger = logging.getLogger(__name__)

POLL_PERIOD_MS = 5
"""The loop wakes at least this often to run the watchdog."""
MAX_MESSAGES_PER_POLL = 64
"""Bound on the work of one `poll` before the watchdog runs again."""
MAX_CLIENT_LEN = 64
"""Longest client token a request may name (`RobotClient` sends 32 hex digits)."""
MOTION_KINDS = ("move_delta", "move_to")
"""Requests that command the arm: one that fails for any reason leaves the arm holding."""
RCVHWM = 8
"""Requests queued per client before ZeroMQ stops reading it; a client waits for each reply."""
MAX_INBOUND_BYTES = 16 << 20
"""What ZeroMQ may hold for all clients' unread requests together (`InboundGuard`)."""
LOG_EVERY_S = 1.0
"""At most one log line per rejection reason per second (repeats are counted in it)."""

Reply = tuple[dict[str, Any], dict[str, np.ndarray]] | None
"""A handler's reply fields and arrays; None when the reply is sent later (resets)."""


class RobotServer:
    """Serves one backend; see the module docstring.

    Args:
        cfg: the server config (endpoint, keys, safety limits, profiles, backend settings).
        backend: an already built backend (tests); default: `make_backend(cfg)`.
        clock: monotonic seconds for the watchdog (injectable in tests).
    """

    def __init__(
        self,
        cfg: RobotServerConfig,
        backend: RobotBackend | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cfg = cfg
        self.limits = replace(
            SERVER_LIMITS,
            max_message_bytes=cfg.max_message_bytes,
            max_frame_bytes=min(cfg.max_message_bytes, SERVER_LIMITS.frame_cap),
        )
        self.stats: Counter[str] = Counter()
        """Counts: requests, dropped:<why>, refused:<why>, rejected:<why>, clamped:<limit>,
        watchdog:hold, watchdog:stop, estops, guard:<why> (connections the inbound guard ended)."""
        self._clock = clock
        keys = load_server_keys(cfg.keys_dir) if cfg.keys_dir is not None else None
        bind = bind_endpoint(cfg.endpoint, secure=keys is not None, insecure=cfg.insecure)
        self.backend = backend if backend is not None else make_backend(cfg)
        self.safety = SafetyFilter(cfg.safety, self.backend.control_period_s)
        self.held = False
        self.stopped = False
        self.estopped = False
        self.profile = cfg.initial_profile
        self._armed = False
        self._last_move = 0.0
        self._reset_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="robot-reset")
        self._reset: tuple[bytes, int, Future[None]] | None = None
        self._estop_owners: set[str] = set()
        """The clients (`_requester`) whose e-stop holds the arm; each must release it."""
        self._local_release = threading.Event()
        """Set by `release_estop_locally` (any thread, a signal handler); the loop acts on it."""
        self._peer_key = ""
        """The CURVE public key of the request being handled ("" without CURVE)."""
        self._log_times: dict[str, float] = {}
        self._log_repeats: Counter[str] = Counter()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._ctx = zmq.Context()
        self._zap: ZapHandler | None = None
        self._guard: InboundGuard | None = None
        try:
            self.backend.set_compliance(cfg.profiles[self.profile])
            if keys is not None:
                self._zap = ZapHandler(self._ctx, keys.authorized_dir)
            self._sock = self._ctx.socket(zmq.ROUTER)
            self._sock.linger = 0
            self._sock.maxmsgsize = self.limits.frame_cap
            self._sock.rcvhwm = RCVHWM
            self._sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
            if keys is not None:
                configure_server_socket(self._sock, keys)
            budget = peer_budget(RCVHWM, self.limits.max_message_bytes, self.limits.max_arrays + 1)
            self._guard = InboundGuard(
                self._sock,
                per_peer_bytes=budget,
                total_bytes=MAX_INBOUND_BYTES,
                curve=keys is not None,
            )
            self._sock.bind(bind)
        except Exception:
            self.close()
            raise
        self.endpoint: str = self._sock.last_endpoint.decode()
        """The bound endpoint (the real port when port 0 was asked)."""
        self._poller = zmq.Poller()
        self._poller.register(self._sock, zmq.POLLIN)
        if self._zap is not None:
            self._poller.register(self._zap.socket, zmq.POLLIN)
        logger.info(
            "robot server (%s backend) on %s, %s",
            self.backend.name,
            self.endpoint,
            "CURVE" if keys else "no encryption",
        )

    # ------------------------------------------------------------------ the loop
    def poll(self, timeout_ms: int = POLL_PERIOD_MS) -> int:
        """Handle waiting requests (at most `MAX_MESSAGES_PER_POLL`), then run the watchdog
        and finish a completed reset. Returns the number of messages handled."""
        ready = dict(self._poller.poll(timeout_ms))
        if self._zap is not None and self._zap.socket in ready:
            self._zap.handle_pending()
        assert self._guard is not None
        self.stats.update(self._guard.take_counts())
        handled = 0
        for _ in range(MAX_MESSAGES_PER_POLL):
            frames, reason = recv_bounded(
                self._sock, self.limits, extra_frames=1, guard=self._guard
            )
            if reason is not None:
                self._count(f"dropped:{reason}", "message over the caps")
                continue
            if frames is None:
                break
            handled += 1
            self._handle(frames)
        if self._local_release.is_set():
            self._local_release.clear()
            self._release_estop("on the robot PC")
        self._finish_reset()
        self._watchdog()
        return handled

    def release_estop_locally(self) -> None:
        """Release the e-stop whoever set it, from the robot PC (what SIGUSR1 does to `serl
        robot-server`): the deliberate act of someone who can see the arm. Thread-safe; the
        serving loop releases within one poll and logs it."""
        self._local_release.set()

    def serve(self, should_stop: Callable[[], bool] = lambda: False) -> None:
        """Run the loop until `should_stop()` or `close()`, then hold the arm."""
        while not self._stop.is_set() and not should_stop():
            self.poll()

    def start(self) -> RobotServer:
        """Serve on a background thread (tests, in-process use); `close` ends it."""
        self._thread = threading.Thread(target=self.serve, name="robot-server", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving, stop the arm's motion and release the backend and the sockets."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5.0)
        self._reset_pool.shutdown(wait=True, cancel_futures=True)
        backend = getattr(self, "backend", None)
        if backend is not None:
            try:
                backend.close()
            except Exception:
                logger.exception("closing the %s backend failed", backend.name)
        if self._guard is not None:
            self._guard.close()
        sock = getattr(self, "_sock", None)
        if sock is not None:
            sock.close(linger=0)
        if self._zap is not None:
            self._zap.close()
        self._ctx.term()

    def __enter__(self) -> RobotServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ bookkeeping
    def _count(self, key: str, detail: str) -> None:
        """Count a rejection, clamp or drop and log it (throttled per key)."""
        self.stats[key] += 1
        now = time.monotonic()
        if now - self._log_times.get(key, -LOG_EVERY_S) >= LOG_EVERY_S:
            repeats = self._log_repeats.pop(key, 0)
            more = f" (and {repeats} more since the last report)" if repeats else ""
            logger.warning("%s: %s%s", key, detail, more)
            self._log_times[key] = now
        else:
            self._log_repeats[key] += 1

    def _watchdog(self) -> None:
        if not self._armed or self.estopped or self._reset is not None:
            return
        idle = self._clock() - self._last_move
        limits = self.cfg.safety
        if not self.held and idle >= limits.watchdog_timeout_s:
            self.held = True
            self.safety.forget_timing()
            self._count("watchdog:hold", f"no motion command for {idle:.3f} s; holding the pose")
            self._backend_call(self.backend.hold)
        if not self.stopped and idle >= limits.watchdog_stop_s:
            self.stopped = True
            self._count("watchdog:stop", f"no motion command for {idle:.3f} s; motion stopped")
            self._backend_call(self.backend.stop)

    def _hold(self) -> None:
        """Hold the arm where it is (a refused or failed motion command); the next accepted
        motion command resumes."""
        if not self.held:
            self.held = True
            self.safety.forget_timing()
            self._backend_call(self.backend.hold)

    def _backend_call(self, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception:
            self.stats["backend_errors"] += 1
            logger.exception("backend call %s failed", getattr(fn, "__name__", fn))

    # ------------------------------------------------------------------ messages
    def _handle(self, frames: list[zmq.Frame]) -> None:
        routing_id = frames[0].bytes
        self._peer_key = peer_user_id(frames[-1]) if self._zap is not None else ""
        try:
            message = decode(frames[1:], self.limits)
            rid = request_id(message)
        except WireError as exc:
            self._count(f"dropped:{exc.reason}", str(exc))
            return
        self.stats["requests"] += 1
        try:
            request = validate_request(message)
            handler = getattr(self, f"_on_{message.kind}")
            reply = handler(request, routing_id, rid)
        except RequestError as exc:
            self._count(f"refused:{exc.reason}", str(exc))
            self._error(routing_id, rid, exc.reason, str(exc))
            return
        except BackendError as exc:
            self._count("refused:backend", str(exc))
            self._error(routing_id, rid, "backend", str(exc))
            return
        except Exception as exc:  # a bug or a driver error must not take the server down
            self.stats["refused:internal_error"] += 1
            logger.exception("error while handling a %r request", message.kind)
            if message.kind in MOTION_KINDS:  # whatever failed, the arm must not go on moving
                self._hold()
            self._error(routing_id, rid, "internal_error", f"{type(exc).__name__}: {exc}")
            return
        if reply is not None:
            fields, arrays = reply
            self._send(routing_id, "ok", {"rid": rid, **fields}, arrays)

    def _send(
        self, routing_id: bytes, kind: str, fields: dict[str, Any], arrays: dict | None = None
    ) -> None:
        try:
            frames = encode(kind, fields, arrays)
            self._sock.send_multipart([routing_id, *frames], zmq.NOBLOCK, copy=False)
        except zmq.ZMQError:  # the peer is gone or not reading: never block the loop
            self.stats["send_failed"] += 1

    def _error(self, routing_id: bytes, rid: int, reason: str, message: str) -> None:
        self._send(routing_id, "error", {"rid": rid, "reason": reason, "message": message})

    def _state(self) -> dict[str, np.ndarray]:
        state = self.backend.read_state()
        return state_arrays(state, time.time(), self.held, self.estopped)

    # ------------------------------------------------------------------ handlers
    def _on_get_state(self, request: dict, routing_id: bytes, rid: int) -> Reply:
        return {}, self._state()

    def _on_info(self, request: dict, routing_id: bytes, rid: int) -> Reply:
        fields = {
            "protocol": PROTOCOL_VERSION,
            "backend": self.backend.name,
            "cameras": list(self.backend.camera_names()),
            "control_period_s": self.backend.control_period_s,
            "safety": {k: _plain(v) for k, v in asdict(self.cfg.safety).items()},
            "profiles": sorted(self.cfg.profiles),
            "profile": self.profile,
            "reset_poses": sorted({"home", *self.cfg.reset_poses_rad}),
            "stats": dict(self.stats),
        }
        return fields, {}

    def _on_move_delta(self, request: dict, routing_id: bytes, rid: int) -> Reply:
        state = self.backend.read_state()
        dpos, drot = request["dpos"], request.get("drot")
        target_quat = state.ee_quat
        if drot is not None:
            # A rotation vector whose angle overflows (finite entries, Inf norm) is as
            # meaningless as a NaN one: both reach the safety filter as a NaN target.
            target_quat = (
                quat_mul(quat_from_rotvec(drot), state.ee_quat)
                if np.isfinite(np.linalg.norm(drot))
                else np.full(4, np.nan)
            )
        return self._move(state.ee_pos, state.ee_quat, state.ee_pos + dpos, target_quat, request)

    def _on_move_to(self, request: dict, routing_id: bytes, rid: int) -> Reply:
        state = self.backend.read_state()
        quat = request.get("quat", state.ee_quat)
        return self._move(state.ee_pos, state.ee_quat, request["pos"], quat, request)

    def _move(
        self,
        pos: np.ndarray,
        quat: np.ndarray,
        target_pos: np.ndarray,
        target_quat: np.ndarray,
        request: dict,
    ) -> Reply:
        gripper = request.get("gripper")
        if self.estopped:
            decision = Decision(rejected="estopped")
        elif self._reset is not None:
            decision = Decision(rejected="resetting")
        else:
            decision = self.safety.check(
                pos, quat, target_pos, target_quat, gripper, self.backend.clock()
            )
        if decision.rejected is not None:
            self._count(
                f"rejected:{decision.rejected}",
                f"motion command to {np.asarray(target_pos).tolist()} refused; the arm holds",
            )
            if decision.rejected == "nonfinite":
                self._hold()
        else:
            for limit in decision.clamped:
                self._count(f"clamped:{limit}", f"target {np.asarray(target_pos).tolist()} limited")
            assert decision.pos is not None and decision.quat is not None
            self.backend.command_pose(decision.pos, quat_normalize(decision.quat))
            if decision.gripper is not None:
                self.backend.command_gripper(decision.gripper)
            self._armed, self.held, self.stopped = True, False, False
            self._last_move = self._clock()
        fields = {
            "accepted": decision.accepted,
            "reason": decision.rejected or "",
            "clamped": decision.clamped,
        }
        return fields, self._state()

    def _on_reset(self, request: dict, routing_id: bytes, rid: int) -> Reply:
        if self.estopped:
            self._count("rejected:estopped", "reset refused while e-stopped")
            raise RequestError("estopped", "the arm is e-stopped; call release_estop first")
        if self._reset is not None:
            raise RequestError("busy", "a reset is already running; wait for its reply")
        if "q" in request and "name" in request:
            raise RequestError(
                "bad_fields", "reset takes a pose name or a joint vector q, not both"
            )
        if "q" in request:
            q = request["q"]
        else:
            name = request.get("name", "home")
            poses = self.cfg.reset_poses_rad
            if name in poses:
                q = np.asarray(poses[name], dtype=float)
            elif name == "home":
                q = self.backend.home_q_rad
            else:
                known = sorted({"home", *poses})
                raise RequestError(
                    "unknown_pose",
                    f"no reset pose {name!r}; known: {known} (add poses under reset_poses_rad "
                    "in the server config)",
                )
        problem = self.safety.check_joints(
            q, self.backend.joint_lower_rad, self.backend.joint_upper_rad
        )
        if problem is None and "q" in request:
            problem = self._reset_outside_workspace(np.asarray(q, dtype=float))
        if problem is not None:
            self._count("rejected:reset_pose", problem)
            raise RequestError("bad_pose", problem)
        self._armed, self.held, self.stopped = False, False, False
        self.safety.forget_timing()
        future = self._reset_pool.submit(self.backend.reset_joints, np.asarray(q, dtype=float))
        self._reset = (routing_id, rid, future)
        return None  # the reply goes out when the motion is done (`_finish_reset`)

    def _reset_outside_workspace(self, q: np.ndarray) -> str | None:
        """Why a client's joint vector is refused as a reset target: its TCP (forward
        kinematics) is outside the workspace box, or the backend cannot say where it is.
        Named poses come from the server's own config and are not second-guessed."""
        tcp = self.backend.tcp_position(q)
        if tcp is None:
            return (
                f"the {self.backend.name!r} backend cannot check a joint vector against the "
                "workspace; reset to a named pose (reset_poses_rad in the server config)"
            )
        low, high = self.safety.low, self.safety.high
        if np.all(tcp >= low) and np.all(tcp <= high):
            return None
        return (
            f"reset pose puts the TCP at {np.round(tcp, 3).tolist()} m, outside the workspace "
            f"box {low.tolist()}..{high.tolist()} m"
        )

    def _finish_reset(self) -> None:
        if self._reset is None or not self._reset[2].done():
            return
        routing_id, rid, future = self._reset
        self._reset = None
        exc = future.exception()
        if exc is not None:
            self._count("refused:backend", f"reset failed: {exc}")
            self._error(routing_id, rid, "backend", f"reset failed: {exc}")
            return
        self._send(routing_id, "ok", {"rid": rid}, self._state())

    def _on_set_compliance(self, request: dict, routing_id: bytes, rid: int) -> Reply:
        name = request["profile"]
        if name not in self.cfg.profiles:
            raise RequestError(
                "unknown_profile",
                f"no compliance profile {name!r}; known: {sorted(self.cfg.profiles)} (profiles "
                "are defined in the server config)",
            )
        self.backend.set_compliance(self.cfg.profiles[name])
        self.profile = name
        return {"profile": name}, {}

    def _requester(self, request: dict, routing_id: bytes) -> str:
        """Who sent a request: its CURVE key (with CURVE) and the client token it names, or
        its connection when it names none."""
        client = request.get("client")
        if client is not None and not 0 < len(client) <= MAX_CLIENT_LEN:
            raise RequestError("bad_fields", f"client {client!r} is not 1..{MAX_CLIENT_LEN} chars")
        return f"{self._peer_key}/{client if client is not None else routing_id.hex()}"

    def _on_estop(self, request: dict, routing_id: bytes, rid: int) -> Reply:
        self._estop_owners.add(self._requester(request, routing_id))
        self.estopped = True
        self._armed = False
        self.stats["estops"] += 1
        logger.warning(
            "E-STOP requested by client %s; motion refused until every client that pressed it "
            "releases it, or it is released on the robot PC (kill -USR1 the server)",
            self._requester(request, routing_id),
        )
        self._backend_call(self.backend.estop)
        return {"estopped": True}, {}

    def _on_release_estop(self, request: dict, routing_id: bytes, rid: int) -> Reply:
        if not self.estopped:
            return {"estopped": False}, {}
        requester = self._requester(request, routing_id)
        if requester not in self._estop_owners:
            raise RequestError(
                "estop_owner",
                f"the e-stop was set by {len(self._estop_owners)} other client(s); only a "
                "client that pressed it can release it, or someone at the robot PC (kill -USR1 "
                "the robot server's process)",
            )
        self._estop_owners.discard(requester)
        if self._estop_owners:
            logger.warning("client %s released its e-stop; others still hold it", requester)
            raise RequestError(
                "estop_held",
                f"released your e-stop, but {len(self._estop_owners)} other client(s) pressed it "
                "too and must release it as well (or release it at the robot PC)",
            )
        self._release_estop(f"by client {requester}, which set it")
        return {"estopped": False}, {}

    def _release_estop(self, how: str) -> None:
        """Let the arm move again (it holds its pose until the next motion command)."""
        if not self.estopped:
            return
        self.backend.release_estop()
        self.safety.forget_timing()
        self._estop_owners.clear()
        self.estopped = False
        self.held = True
        self.stats["estop_releases"] += 1
        logger.warning("e-stop released %s", how)

    def _on_render(self, request: dict, routing_id: bytes, rid: int) -> Reply:
        return {}, {"frame": self.backend.render(request["camera"])}


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value
