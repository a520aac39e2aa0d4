"""The learner's side of the transport: one ROUTER for data and control, one PUB for weights.

Driven from the learner loop, with no thread of its own::

    server = LearnerServer(spec, config_hash, durable=True)
    server.load_cursors(checkpoint["cursors"])          # on --resume
    while training:
        got = server.poll(timeout_ms=0)                 # chunks, episode stats, new actors
        for chunk in got.chunks: buffer.insert(chunk)
        ... updates ...
        if publish_due: server.publish_weights(version, agent_policy_numpy)
        if checkpoint_due:
            cursors = server.cursors(); save(agent, buffer, cursors); server.commit(cursors)

`poll` receives a bounded number of messages, validates each, and acks accepted chunks.
Every bad message is counted in `stats` by reason and dropped; `poll` never raises because
of what a peer sent, and never unpickles anything. Peers that connect and never speak cost
a ROUTER pipe and nothing else. ZAP (CURVE) requests are answered inside `poll` as well.

Exactly-once across learner crashes (`durable=True`): an ack tells the actor "received, stop
resending on this connection"; a commit tells it "a checkpoint holds it, forget it". After a
crash the learner restores the cursors saved with its buffer, the actors reconnect, learn
the restored cursor from `welcome` and resend everything after it. With `durable=False`
(runs without resume) a chunk counts as committed as soon as it is received.

Late joiners: a new actor's hello states the weights version it has; if the learner has newer
weights they follow the welcome directly on the ROUTER (no PUB/SUB slow-joiner gap), and an
actor that falls behind (pong says newer) asks with `weights_request`.

Peers that never read cannot grow the learner: the ROUTER queues at most 64 replies per peer
(SNDHWM; beyond it replies are dropped and counted as send_failed), a weights message is built
once per version and shared by every send, each peer gets a new one only after the network
took its previous one (`weights_deferred:unread` otherwise), at most `max_weights_in_flight`
are waiting over all peers (`weights_deferred:busy`), and a peer that leaves one unread for
`weights_unread_timeout_s` is disconnected (`dropped:unread_weights`). The learner thus holds
at most `max_weights_in_flight` + 1 policy versions for the data socket, however many peers.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import zmq

from serl.transport.auth import ServerKeys, ZapHandler, configure_server_socket, peer_user_id
from serl.transport.codec import DEFAULT_LIMITS, Limits, Message, WireError, decode, encode
from serl.transport.guard import HANDSHAKE_SLACK_BYTES, InboundGuard, peer_budget
from serl.transport.protocol import (
    Chunk,
    ChunkRejected,
    Handshake,
    HandshakeRefused,
    Kind,
    TransitionSpec,
    check_handshake,
    get_int,
    scalar_stats,
)
from serl.transport.sockets import MONITORED_EVENTS, bind_endpoint, recv_bounded

logger = logging.getLogger(__name__)

ActorKey = tuple[str, int]
"""(actor_id, incarnation)."""


@dataclass(frozen=True)
class ActorInfo:
    """An actor that completed a handshake; `cursor` is the last seq the learner holds."""

    actor_id: str
    incarnation: int
    cursor: int


@dataclass(frozen=True)
class EpisodeStats:
    """Scalar statistics of one finished episode, as the actor reported them."""

    actor_id: str
    incarnation: int
    stats: dict[str, Any]


@dataclass
class PollResult:
    """What one `poll` call received."""

    chunks: list[Chunk] = field(default_factory=list)
    episode_stats: list[EpisodeStats] = field(default_factory=list)
    new_actors: list[ActorInfo] = field(default_factory=list)

    @property
    def transitions(self) -> int:
        return sum(len(chunk) for chunk in self.chunks)


SUBSCRIPTION_BYTES = 256
"""ZMQ_MAXMSGSIZE of the weights PUB socket, whose only input is subscriptions (actors send
one, empty)."""
MAX_SKIPPED_CHUNKS = 1_000_000
"""Most chunks an actor's first hello may declare lost (first_seq past the cursor): what a
checkpoint interval of a fast actor can hold; a forged 1e15 or 2**63 - 1 is refused."""


def _source_fd(frame: zmq.Frame) -> int:
    """The descriptor of the connection a frame came from (ZMQ_SRCFD), or -1 (ZMTP/1.0)."""
    try:
        return frame.get(zmq.SRCFD)
    except zmq.ZMQError:
        return -1


@dataclass
class _Session:
    routing_id: bytes
    key: ActorKey
    conn: int
    last_seen: float
    fd: int = -1
    """The connection's file descriptor (ZMQ_SRCFD of its last message), to disconnect it."""
    silent: bool = False
    """Logged as not live (silent for `live_after_s`); cleared by its next message."""


@dataclass(frozen=True)
class _Published:
    """One weights message, built once per version and shared by every send.

    libzmq reference-counts the content of a sent `zmq.Frame`, so the same version queued for
    many peers costs one copy of the policy plus a small message struct per frame and peer.
    """

    version: int
    frames: list[zmq.Frame]

    def tracked(self) -> tuple[list[zmq.Frame], zmq.MessageTracker]:
        """The frames for one send, the last one wrapped anew with a tracker that completes
        once libzmq has handed the whole message to the network (or dropped it)."""
        tail = zmq.Frame(self.frames[-1].buffer, copy=False, track=True)
        assert tail.tracker is not None
        return [*self.frames[:-1], tail], tail.tracker


@dataclass
class _InFlight:
    """A weights message sent to one peer on the data socket."""

    tracker: zmq.MessageTracker
    """Done once libzmq has handed it to the network or dropped it."""
    sent_at: float
    version: int
    disconnected: bool = False
    """Left unread too long; its peer was told to go (the slot stays until libzmq frees it)."""


class LearnerServer:
    """Binds the data ROUTER and the weights PUB; see the module docstring for the loop.

    Args:
        spec: the transition spec actors must match (validated on every chunk).
        config_hash: hash of the resolved learner config; actors must send the same.
        data_endpoint / weights_endpoint: where to bind; port 0 picks a free port (read the
            result from `.data_endpoint` / `.weights_endpoint`). Loopback unless `curve` or
            `insecure` is given.
        curve: CURVE keys (`load_server_keys`); peers without an authorized key never reach
            `poll`'s results.
        insecure: allow binding a non-loopback address without CURVE (trusted networks only).
        limits: caps on every inbound message (default: `spec.limits` of the codec's
            default message cap); `frame_cap` is ZMQ_MAXMSGSIZE.
        durable: actors keep chunks until `commit()` (call it after each checkpoint).
        max_messages_per_poll: bound on the work one `poll` does.
        rcvhwm: complete messages queued per peer before ZeroMQ stops reading that peer's
            socket; with `limits` it sets what libzmq may hold for one peer
            (`guard.peer_budget`), which the inbound guard enforces.
        max_inbound_bytes: what libzmq may hold for all peers together before the guard drops
            the connection that holds most (wire bytes).
        max_weights_in_flight: weights messages sent on the data socket and not yet taken by
            the network, over all peers (each peer has at most one): a peer that never reads
            pins at most one policy version, and all of them together this many.
        weights_unread_timeout_s: a peer that leaves a weights message unread this long is
            disconnected and its session forgotten, which frees what its queue pinned.
        live_after_s: a session silent this long (its actor pings every second) is not live
            any more: `live_actors` leaves it out and the learner logs it once, e.g. while
            a robot PC's link is down; it is live again at its next message.
        session_timeout_s: a session silent this long is forgotten (its cursor is kept).
        max_sessions: live sessions at most; the longest-silent one is dropped beyond it.
        clock: monotonic seconds, for session timeouts (injectable in tests).
        incarnation: this learner's id, sent with every weights message; actors replace
            weights of another learner incarnation whatever their version, so it must change
            on each restart (default: the start time in ms, which does that by itself).
    """

    def __init__(
        self,
        spec: TransitionSpec,
        config_hash: str,
        data_endpoint: str = "tcp://127.0.0.1:0",
        weights_endpoint: str = "tcp://127.0.0.1:0",
        *,
        curve: ServerKeys | None = None,
        insecure: bool = False,
        limits: Limits | None = None,
        durable: bool = False,
        max_messages_per_poll: int = 256,
        rcvhwm: int = 4,
        max_inbound_bytes: int = 2**30,
        max_weights_in_flight: int = 16,
        weights_unread_timeout_s: float = 30.0,
        live_after_s: float = 3.0,
        session_timeout_s: float = 60.0,
        max_sessions: int = 1024,
        clock: Callable[[], float] = time.monotonic,
        incarnation: int | None = None,
    ) -> None:
        self.spec = spec
        self.incarnation = time.time_ns() // 1_000_000 if incarnation is None else incarnation
        """This learner process's id, sent with weights (see `incarnation` above)."""
        self.config_hash = config_hash
        self.limits = spec.limits(DEFAULT_LIMITS.max_message_bytes) if limits is None else limits
        self.durable = durable
        self.max_weights_in_flight = max_weights_in_flight
        self.weights_unread_timeout_s = weights_unread_timeout_s
        self.max_messages_per_poll = max_messages_per_poll
        self.live_after_s = live_after_s
        self.session_timeout_s = session_timeout_s
        self.max_sessions = max_sessions
        self.stats: Counter[str] = Counter()
        """Counts by reason: chunks, transitions, duplicates, dropped:<why>, rejected:<why>..."""
        self._clock = clock
        self._handshake = Handshake(config_hash=config_hash, spec=spec, actor_id="learner")
        self._sessions: dict[bytes, _Session] = {}
        self._by_key: dict[ActorKey, bytes] = {}
        self._cursors: dict[ActorKey, int] = {}
        self._committed: dict[ActorKey, int] = {}
        self._greeted: set[ActorKey] = set()
        """Actors that said hello to this server: their cursors never jump on their word."""
        self._owners: dict[str, str] = {}
        """actor_id -> the CURVE public key that first used it (with CURVE)."""
        self._peer_key = ""
        """The CURVE public key of the message being handled ("" without CURVE)."""
        self._peer_fd = -1
        """The connection (file descriptor) of the message being handled."""
        self._weights_version = -1
        self._next_expiry_check = 0.0
        self._weights: _Published | None = None
        self._weights_in_flight: dict[bytes, _InFlight] = {}
        """Per peer, the weights message sent on the data socket that the network has not
        taken yet."""
        data_bind = bind_endpoint(data_endpoint, secure=curve is not None, insecure=insecure)
        weights_bind = bind_endpoint(weights_endpoint, secure=curve is not None, insecure=insecure)

        self._ctx = zmq.Context()
        self._zap: ZapHandler | None = None
        self._guards: list[InboundGuard] = []
        try:
            if curve is not None:
                # The ZAP handler must exist before any CURVE socket binds.
                self._zap = ZapHandler(self._ctx, curve.authorized_dir)
            self._router = self._make_socket(zmq.ROUTER, curve)
            self._router.setsockopt(zmq.ROUTER_MANDATORY, 1)
            self._router.rcvhwm = rcvhwm
            # Acks, pongs and commits of a window of chunks; beyond it a peer that does not
            # read loses replies (ROUTER drops them), it does not grow the learner.
            self._router.sndhwm = 64
            self._pub = self._make_socket(zmq.PUB, curve)
            self._pub.sndhwm = 4
            # Actors send the PUB one empty subscription; nothing more may come in.
            self._pub.maxmsgsize = SUBSCRIPTION_BYTES
            budget = peer_budget(rcvhwm, self.limits.max_message_bytes, self.limits.max_arrays + 1)
            self._guards = [
                InboundGuard(
                    self._router,
                    per_peer_bytes=budget,
                    total_bytes=max_inbound_bytes,
                    curve=curve is not None,
                    events=MONITORED_EVENTS,
                ),
                InboundGuard(
                    self._pub,
                    per_peer_bytes=HANDSHAKE_SLACK_BYTES,
                    total_bytes=max_inbound_bytes,
                    curve=curve is not None,
                    events=MONITORED_EVENTS,
                ),
            ]
            self._router.bind(data_bind)
            self._pub.bind(weights_bind)
        except Exception:
            self.close()
            raise
        self.data_endpoint: str = self._router.last_endpoint.decode()
        """The bound data endpoint (the real port when 0 was asked)."""
        self.weights_endpoint: str = self._pub.last_endpoint.decode()
        self._poller = zmq.Poller()
        for sock in (self._router, *([self._zap.socket] if self._zap else [])):
            self._poller.register(sock, zmq.POLLIN)
        logger.info(
            "learner transport on %s (data) and %s (weights), %s",
            self.data_endpoint,
            self.weights_endpoint,
            "CURVE" if curve else "no encryption",
        )

    def _make_socket(self, kind: int, curve: ServerKeys | None) -> zmq.Socket:
        sock = self._ctx.socket(kind)
        sock.linger = 0
        sock.maxmsgsize = self.limits.frame_cap
        if curve is not None:
            configure_server_socket(sock, curve)
        return sock

    # ---- the loop's entry points -------------------------------------------------------

    def poll(self, timeout_ms: int = 0) -> PollResult:
        """Wait up to `timeout_ms` for input, then handle at most `max_messages_per_poll`.

        Returns early as soon as something was handled. Never raises because of a peer.
        """
        result = PollResult()
        ready = dict(self._poller.poll(timeout_ms))
        if self._zap is not None and self._zap.socket in ready:
            self._zap.handle_pending()
        for guard in self._guards:
            self.stats.update(guard.take_counts())
        for _ in range(self.max_messages_per_poll):
            frames, reason = recv_bounded(
                self._router, self.limits, extra_frames=1, guard=self._guards[0]
            )
            if reason is not None:
                self.stats[f"dropped:{reason}"] += 1
                continue
            if frames is None:
                break
            self._handle(frames, result)
        self._expire_sessions()
        self._drop_unread_weights()
        return result

    def publish_weights(self, version: int, tensors: Mapping[str, Any]) -> None:
        """Publish policy weights under a strictly increasing `version`.

        The tensors (numpy arrays, or anything `np.asarray` takes, e.g. CPU tensors that do
        not require grad) are copied once, so the caller may keep training on them.
        """
        if version <= self._weights_version:
            raise ValueError(
                f"weights version {version} is not newer than the published "
                f"{self._weights_version}; versions must increase"
            )
        arrays = {name: np.array(value, copy=True, order="C") for name, value in tensors.items()}
        fields = {"version": version, "published_ns": time.time_ns(), "learner": self.incarnation}
        frames = encode(Kind.WEIGHTS, fields, arrays)
        self._weights = _Published(version, [zmq.Frame(frame, copy=False) for frame in frames])
        self._weights_version = version
        try:
            self._pub.send_multipart(self._weights.frames, zmq.NOBLOCK, copy=False)
        except zmq.Again:  # PUB does not block; kept for completeness
            self.stats["send_failed"] += 1

    @property
    def weights_version(self) -> int:
        """The last published version, -1 before any."""
        return self._weights_version

    def cursors(self) -> dict[str, dict[str, int]]:
        """Per actor the last accepted seq: {actor_id: {str(incarnation): seq}} (JSON-able).

        Save it in the same checkpoint as the buffer that holds those chunks.
        """
        out: dict[str, dict[str, int]] = {}
        for (actor_id, incarnation), seq in sorted(self._cursors.items()):
            out.setdefault(actor_id, {})[str(incarnation)] = seq
        return out

    def load_cursors(self, cursors: Mapping[str, Mapping[str, int]]) -> None:
        """Restore cursors saved by `cursors()` (on resume, before the first `poll`).

        Restored cursors also count as committed: the checkpoint holds those chunks.
        """
        parsed: dict[ActorKey, int] = {}
        for actor_id, per_incarnation in cursors.items():
            for incarnation, seq in per_incarnation.items():
                if not isinstance(seq, int) or seq < -1:
                    raise ValueError(f"cursor of {actor_id}/{incarnation} is {seq!r}, not >= -1")
                parsed[(str(actor_id), int(incarnation))] = seq
        self._cursors = dict(parsed)
        self._committed = dict(parsed)

    def owners(self) -> dict[str, str]:
        """{actor_id: CURVE public key (Z85) that owns it}; save it with the cursors."""
        return dict(sorted(self._owners.items()))

    def load_owners(self, owners: Mapping[str, str]) -> None:
        """Restore `owners()` on resume: an actor_id stays tied to its key across restarts."""
        for actor_id, key in owners.items():
            if not isinstance(actor_id, str) or not isinstance(key, str) or len(key) != 40:
                raise ValueError(f"owner of {actor_id!r} is {key!r}, not a Z85 CURVE public key")
        self._owners = dict(owners)

    def commit(self, cursors: Mapping[str, Mapping[str, int]] | None = None) -> None:
        """Tell actors their chunks up to `cursors` (default: all accepted) are checkpointed.

        Pass the dict saved in the checkpoint, so a chunk accepted after the snapshot is
        not committed by mistake. A no-op with `durable=False`.
        """
        if not self.durable:
            return
        snapshot = (
            self._cursors
            if cursors is None
            else {(str(a), int(i)): seq for a, per in cursors.items() for i, seq in per.items()}
        )
        for key, seq in snapshot.items():
            accepted = self._cursors.get(key, -1)
            self._committed[key] = max(self._committed.get(key, -1), min(seq, accepted))
        for session in self._sessions.values():
            fields = {"committed": self._committed_of(session.key)}
            self._send(session.routing_id, Kind.COMMIT, fields)

    def close(self) -> None:
        """Close the sockets now (pending outbound messages are dropped)."""
        for guard in self._guards:
            guard.close()
        for name in ("_router", "_pub"):
            sock = getattr(self, name, None)
            if sock is not None:
                sock.close(linger=0)
        if self._zap is not None:
            self._zap.close()
        self._ctx.term()

    def __enter__(self) -> LearnerServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def live_actors(self) -> list[ActorKey]:
        """(actor_id, incarnation) of every session heard from within `live_after_s`."""
        deadline = self._clock() - self.live_after_s
        return [s.key for s in self._sessions.values() if s.last_seen >= deadline]

    # ---- message handling --------------------------------------------------------------

    def _handle(self, frames: list[zmq.Frame], result: PollResult) -> None:
        routing_id = frames[0].bytes
        self._peer_key = peer_user_id(frames[-1]) if self._zap is not None else ""
        self._peer_fd = _source_fd(frames[-1])
        try:
            message = decode(frames[1:], self.limits)
            handler = self._handlers.get(message.kind)
            if handler is None:
                self.stats["dropped:unknown_kind"] += 1
                return
            handler(self, routing_id, message, result)
        except WireError as exc:
            self.stats[f"dropped:{exc.reason}"] += 1
            logger.debug("dropped a message: %s", exc)
        except Exception:  # a bug here must not take the learner down; count and log it
            self.stats["dropped:internal_error"] += 1
            logger.exception("error while handling a message; dropped")

    def _send(self, routing_id: bytes, kind: str, fields: dict[str, Any]) -> None:
        self._send_frames(routing_id, encode(kind, fields))

    def _send_frames(self, routing_id: bytes, frames: list[Any]) -> bool:
        try:
            self._router.send_multipart([routing_id, *frames], zmq.NOBLOCK, copy=False)
        except zmq.ZMQError:  # peer gone (ROUTER_MANDATORY) or its queue full: never block
            self.stats["send_failed"] += 1
            return False
        return True

    def _send_weights(self, session: _Session) -> bool:
        """Send the current weights to one peer on the data socket; True if sent.

        At most one such message per peer, and `max_weights_in_flight` over all peers, may be
        waiting for the network: a peer that never reads pins one policy version, not one per
        request, and however many peers do so, the learner holds at most that many versions.
        """
        if self._weights is None:
            return False
        self._weights_in_flight = {
            rid: sent for rid, sent in self._weights_in_flight.items() if not sent.tracker.done
        }
        if session.routing_id in self._weights_in_flight:
            self.stats["weights_deferred:unread"] += 1
            return False
        if len(self._weights_in_flight) >= self.max_weights_in_flight:
            self.stats["weights_deferred:busy"] += 1
            return False
        frames, tracker = self._weights.tracked()
        if not self._send_frames(session.routing_id, frames):
            return False
        self._weights_in_flight[session.routing_id] = _InFlight(
            tracker, self._clock(), self._weights.version
        )
        return True

    def _drop_unread_weights(self) -> None:
        """Disconnect peers that left weights unread for `weights_unread_timeout_s`: only
        dropping the connection frees what libzmq queued for it."""
        deadline = self._clock() - self.weights_unread_timeout_s
        for routing_id, sent in self._weights_in_flight.items():
            if sent.disconnected or sent.tracker.done or sent.sent_at > deadline:
                continue
            sent.disconnected = True
            self.stats["dropped:unread_weights"] += 1
            session = self._sessions.get(routing_id)
            logger.warning(
                "a peer (%s) left weights version %d unread for %.0f s; disconnected",
                f"actor {session.key[0]}/{session.key[1]}" if session else "no session",
                sent.version,
                self.weights_unread_timeout_s,
            )
            if session is not None:
                self._forget(session)
                self._guards[0].disconnect(session.fd, "it left weights unread")

    def _committed_of(self, key: ActorKey) -> int:
        if not self.durable:
            return self._cursors.get(key, -1)
        return self._committed.get(key, -1)

    def _session(self, routing_id: bytes, message: Message) -> _Session | None:
        """The sender's session, or None after telling it to say hello first."""
        session = self._sessions.get(routing_id)
        if session is None:
            self.stats["no_session"] += 1
            conn = message.fields.get("conn")
            self._send(routing_id, Kind.NEED_HELLO, {"conn": conn if type(conn) is int else -1})
            return None
        session.last_seen = self._clock()
        if session.silent:
            session.silent = False
            logger.info("actor %s incarnation %d is live again", *session.key)
        return session

    def _on_hello(self, routing_id: bytes, message: Message, result: PollResult) -> None:
        theirs = Handshake.from_fields(message.fields)
        conn = get_int(message.fields, "conn")
        have = get_int(message.fields, "weights_version")
        have_learner = self._learner_of(message.fields, "weights_learner")
        first_seq = get_int(message.fields, "first_seq", 0)
        try:
            check_handshake(self._handshake, theirs)
        except HandshakeRefused as exc:
            self.stats["handshake_refused"] += 1
            logger.warning("%s", exc)
            self._send(routing_id, Kind.REFUSED, {"reason": exc.for_peer, "conn": conn})
            return
        key = (theirs.actor_id, theirs.incarnation)
        if (problem := self._implausible_hello(key, first_seq)) is not None:
            self.stats["handshake_refused"] += 1
            logger.warning("refused a hello from actor %s/%d: %s", *key, problem)
            self._send(routing_id, Kind.REFUSED, {"reason": problem, "conn": conn})
            return
        existing = self._sessions.get(routing_id)
        if existing is not None and existing.key != key:
            self._forget(existing)  # one socket, one actor: a new identity ends the old one
        previous = self._by_key.get(key)
        if previous is not None and previous != routing_id:
            self._sessions.pop(previous, None)  # the actor reconnected on a new socket
        if routing_id not in self._sessions and len(self._sessions) >= self.max_sessions:
            oldest = min(self._sessions.values(), key=lambda s: s.last_seen)
            self._forget(oldest)
        self._skip_lost(key, first_seq)
        if previous is None:
            result.new_actors.append(ActorInfo(key[0], key[1], self._cursors.get(key, -1)))
            logger.info("actor %s incarnation %d connected", *key)
        self._sessions[routing_id] = _Session(routing_id, key, conn, self._clock(), self._peer_fd)
        self._by_key[key] = routing_id
        self.stats["handshakes"] += 1
        self._send(routing_id, Kind.WELCOME, self._status(key) | {"conn": conn})
        if self._outdated(have, have_learner):
            self._send_weights(self._sessions[routing_id])

    def _learner_of(self, fields: Mapping[str, Any], name: str) -> int:
        """The learner incarnation a peer's weights came from; ours when it does not say."""
        return get_int(fields, name) if name in fields else self.incarnation

    def _outdated(self, have: int, have_learner: int) -> bool:
        """Whether a peer holding version `have` of learner `have_learner` needs ours."""
        return have_learner != self.incarnation or have < self._weights_version

    def _implausible_hello(self, key: ActorKey, first_seq: int) -> str | None:
        """Why a hello cannot be believed, or None.

        * With CURVE, an actor_id belongs to the key that first used it: another key (another
          robot PC, or a stolen identity) cannot speak for it.
        * The cursor may move forward on an actor's word (`_skip_lost`) only on its first
          hello to this server — after a resume from an older checkpoint than the commit the
          actor saw — and by at most MAX_SKIPPED_CHUNKS: an honest actor that has talked to
          this server never holds less than its cursor, so a forged hello cannot stop its data.
        """
        if self._peer_key:
            owner = self._owners.setdefault(key[0], self._peer_key)
            if owner != self._peer_key:
                return f"actor_id {key[0]!r} belongs to another CURVE key"
        skip = first_seq - 1 - self._cursors.get(key, -1)
        if skip > 0 and key in self._greeted:
            return (
                f"first_seq {first_seq} is past this learner's cursor {self._cursors.get(key)}; "
                "an actor that has talked to this learner holds every chunk after it"
            )
        if skip > MAX_SKIPPED_CHUNKS or first_seq < 0:
            return f"first_seq {first_seq} is implausible (at most {MAX_SKIPPED_CHUNKS} skipped)"
        self._greeted.add(key)
        return None

    def _skip_lost(self, key: ActorKey, first_seq: int) -> None:
        """Move the cursor past chunks the actor no longer holds, so its stream goes on.

        Happens only when the learner resumed from an older checkpoint than the one whose
        commit let the actor forget those chunks; they are lost, and counted as such.
        """
        cursor = self._cursors.get(key, -1)
        if first_seq - 1 > cursor:
            lost = first_seq - 1 - cursor
            self.stats["lost_chunks"] += lost
            logger.error(
                "actor %s/%d no longer holds chunks %d..%d (committed before this learner's "
                "checkpoint was taken?): %d chunks lost",
                key[0],
                key[1],
                cursor + 1,
                first_seq - 1,
                lost,
            )
            self._cursors[key] = first_seq - 1

    def _status(self, key: ActorKey) -> dict[str, Any]:
        return {
            "cursor": self._cursors.get(key, -1),
            "committed": self._committed_of(key),
            "weights_version": self._weights_version,
            "learner": self.incarnation,
            "max_message_bytes": self.limits.max_message_bytes,
        }

    def _on_chunk(self, routing_id: bytes, message: Message, result: PollResult) -> None:
        session = self._session(routing_id, message)
        if session is None:
            return
        seq = get_int(message.fields, "seq", 0)
        key = session.key
        cursor = self._cursors.get(key, -1)
        if seq <= cursor:
            self.stats["duplicates"] += 1
            self._ack(session, seq)
            return
        if seq > cursor + 1:
            # Something between was lost (never seen on a healthy connection): resync.
            self.stats["gaps"] += 1
            self._send(routing_id, Kind.NEED_HELLO, {"conn": session.conn})
            return
        self._cursors[key] = seq
        try:
            self.spec.validate_chunk(message.arrays)
        except ChunkRejected as exc:
            # Consumed but not kept: resending the same bad data would not help.
            self.stats[f"rejected:{exc.reason}"] += 1
            logger.warning("rejected chunk %d of actor %s/%d: %s", seq, *key, exc)
            self._ack(session, seq, rejected=exc.reason)
            return
        chunk = Chunk(actor_id=key[0], incarnation=key[1], seq=seq, arrays=message.arrays)
        result.chunks.append(chunk)
        self.stats["chunks"] += 1
        self.stats["transitions"] += len(chunk)
        self._ack(session, seq)

    def _ack(self, session: _Session, seq: int, rejected: str | None = None) -> None:
        fields: dict[str, Any] = {
            "seq": seq,
            "cursor": self._cursors.get(session.key, -1),
            "committed": self._committed_of(session.key),
        }
        if rejected is not None:
            fields["rejected"] = rejected
        self._send(session.routing_id, Kind.ACK, fields)

    def _on_ping(self, routing_id: bytes, message: Message, result: PollResult) -> None:
        session = self._session(routing_id, message)
        if session is not None:
            self._send(routing_id, Kind.PONG, self._status(session.key) | {"conn": session.conn})

    def _on_weights_request(self, routing_id: bytes, message: Message, result: PollResult) -> None:
        session = self._session(routing_id, message)
        have = get_int(message.fields, "have")
        have_learner = self._learner_of(message.fields, "have_learner")
        if session is not None and self._outdated(have, have_learner):
            if self._send_weights(session):
                self.stats["weights_sent_on_request"] += 1

    def _on_episode(self, routing_id: bytes, message: Message, result: PollResult) -> None:
        session = self._sessions.get(routing_id)
        if session is None:
            self.stats["no_session"] += 1
            return
        stats = scalar_stats(message.fields.get("stats"))
        result.episode_stats.append(EpisodeStats(session.key[0], session.key[1], stats))
        self.stats["episodes"] += 1

    def _on_bye(self, routing_id: bytes, message: Message, result: PollResult) -> None:
        session = self._sessions.get(routing_id)
        if session is not None:
            logger.info("actor %s incarnation %d said bye", *session.key)
            self._forget(session)

    _handlers: dict[str, Callable[[LearnerServer, bytes, Message, PollResult], None]] = {
        Kind.HELLO: _on_hello,
        Kind.CHUNK: _on_chunk,
        Kind.PING: _on_ping,
        Kind.WEIGHTS_REQUEST: _on_weights_request,
        Kind.EPISODE: _on_episode,
        Kind.BYE: _on_bye,
    }

    def _forget(self, session: _Session) -> None:
        self._sessions.pop(session.routing_id, None)
        if self._by_key.get(session.key) == session.routing_id:
            del self._by_key[session.key]

    def _expire_sessions(self) -> None:
        now = self._clock()
        if now < self._next_expiry_check:
            return
        self._next_expiry_check = now + 1.0
        deadline = now - self.session_timeout_s
        for session in [s for s in self._sessions.values() if s.last_seen < deadline]:
            logger.info("actor %s incarnation %d timed out", *session.key)
            self._forget(session)
        for session in self._sessions.values():
            if not session.silent and session.last_seen < now - self.live_after_s:
                session.silent = True
                self.stats["actor_went_silent"] += 1
                logger.warning(
                    "actor %s incarnation %d silent for %.0f s: not live (link down?)",
                    *session.key, now - session.last_seen,
                )  # fmt: skip
