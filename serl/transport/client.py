"""The actor's side of the transport: a bounded outbox drained by one background I/O thread.

The actor's control thread only calls `send_chunk`, `send_episode_stats` and
`latest_weights`; it never touches a socket, so a slow network or a restarting learner never
stretches a control step. The I/O thread owns a DEALER (handshake, chunks, heartbeats) and a
SUB (weights) socket.

Delivery: every chunk gets the next seq and stays in the outbox until the learner commits it
(see `serl.transport.protocol`). Chunks are sent in seq order with at most `window` unacked
on the wire; after a reconnect (learner restarted, or silent for `silence_timeout_s`) the
learner's `welcome` says which seq it holds and everything after it is resent, in order.
When more than `outbox_limit` chunks are held in memory, `send_chunk` blocks (simulators:
the env simply waits) or, with `spill_dir` (real robots, whose control loop must not wait),
the oldest chunk in memory is written to an .npz file and sent from there later, up to
`spill_limit_bytes` on disk (then `send_chunk` blocks too: a bounded disk, and the robot
server holds the arm while the control loop waits). Nothing spilled is dropped: a killed
actor's spill files stay, and the next process of the same actor_id with the same spill_dir
sends them, each predecessor incarnation by a helper client speaking as that incarnation
with the original seqs (so the learner's cursor drops what it already holds), and deletes
them once committed. Chunks a killed actor held only in memory are lost: its newest, at most
`outbox_limit` (the files are always the oldest, a contiguous run after the last commit).

A dead link (a cable pulled, a switch rebooting) is noticed by the silence timeout on the
DEALER (the learner answers the client's PINGs), and then both sockets are made anew: the SUB
receives nothing when no weights are published, so on its own a connection to a learner that
died during the outage would look alive forever. No ZMTP heartbeats (see `_socket`); a connect
attempt on a link that drops SYNs gives up after `CONNECT_TIMEOUT_MS` and is retried, rather
than waiting minutes for the kernel. While the learner is unreachable the client logs, every
`OUTAGE_LOG_S`, how long and how much it holds and has spilled.

Weights: only the newest version is kept. CONFLATE cannot be used (it breaks multipart
messages), so the I/O thread drains the SUB socket and keeps the last message; weights with
NaN/Inf are refused and the previous policy stays.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import random
import re
import socket
import threading
import time
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zmq

from serl.transport.auth import ClientKeys, configure_client_socket
from serl.transport.codec import Limits, Message, WireError, decode, encode
from serl.transport.protocol import (
    MAX_EPISODE_STATS,
    Handshake,
    HandshakeRefused,
    Kind,
    TransitionSpec,
    get_int,
)
from serl.transport.sockets import recv_bounded

logger = logging.getLogger(__name__)

CLIENT_LIMITS = Limits(
    max_message_bytes=2**30,
    max_header_bytes=4 * 2**20,
    max_arrays=4096,
    max_container_len=8192,
)
"""Inbound caps on the actor side; weights of an image policy can have many large tensors."""

_DISCONNECTED, _HELLO_SENT, _READY = "disconnected", "hello_sent", "ready"

CONNECT_TIMEOUT_MS = 1000
"""A TCP connect on a link that drops SYNs is abandoned after this and retried by ZeroMQ
(reconnect_ivl); the kernel's own SYN retries would take minutes to give up."""
OUTAGE_LOG_S = 5.0
"""While the learner is unreachable, a warning this often: for how long, and what is held."""


@dataclass(frozen=True)
class Weights:
    """One policy version: numpy arrays by parameter name, plus when it was published/received.

    `published_ns` and `received_ns` are `time.time_ns()` on the learner and the actor.
    `learner` is the incarnation of the learner process that published it: versions are
    ordered within one learner incarnation only, and weights from another incarnation (a
    learner restarted from an older checkpoint, whose versions may be lower) replace them.
    """

    version: int
    tensors: dict[str, np.ndarray]
    published_ns: int
    received_ns: int
    learner: int = 0


@dataclass
class _Record:
    seq: int
    arrays: dict[str, np.ndarray] | None
    """None when the chunk lives in `path` (spilled)."""
    path: Path | None
    nbytes: int
    sends: int = 0
    disk_bytes: int = 0
    """Size of the spill file (0 in memory)."""


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)


class ActorClient:
    """Streams chunks to a `LearnerServer` and receives its weights; see the module docstring.

    Args:
        data_endpoint / weights_endpoint: the learner's bound endpoints.
        spec, config_hash: must match the learner's, or every call raises HandshakeRefused.
        actor_id: stable name of this actor (e.g. "robot-0"); incarnation: must change on
            each restart of the actor process (its seqs start again from 0; reusing one
            would make the learner drop the new chunks as duplicates). Default: the start
            time in milliseconds since the epoch, which does that by itself.
        curve: client keys (`load_client_keys`) when the learner uses CURVE.
        outbox_limit: chunks held in memory (queued, in flight, or awaiting commit).
        spill_dir: spill to .npz files here instead of blocking when the outbox is full;
            a predecessor's spill files of this actor_id found here are sent too.
        spill_limit_bytes: this incarnation's spill files take at most this much disk; beyond
            it `send_chunk` blocks as without `spill_dir`.
        spilled: {seq: file} of chunks of this incarnation already on disk, to send and
            then stop (how a predecessor's spill files are sent); None for a live actor.
        window: chunks sent but not yet acked, at most.
        heartbeat_s: ping period; silence_timeout_s: reconnect when nothing was heard this
            long; backoff_initial_s / backoff_max_s: exponential reconnect delays.
        weights_stale_s: ask for weights when the learner has reported newer ones this long.
        seed: seeds the reconnect jitter.
    """

    def __init__(
        self,
        data_endpoint: str,
        weights_endpoint: str,
        spec: TransitionSpec,
        config_hash: str,
        actor_id: str,
        incarnation: int | None = None,
        *,
        curve: ClientKeys | None = None,
        outbox_limit: int = 64,
        spill_dir: Path | str | None = None,
        spill_limit_bytes: int = 2 * 2**30,
        window: int = 32,
        limits: Limits = CLIENT_LIMITS,
        heartbeat_s: float = 1.0,
        silence_timeout_s: float = 10.0,
        backoff_initial_s: float = 0.1,
        backoff_max_s: float = 5.0,
        weights_stale_s: float = 2.0,
        seed: int | None = None,
        spilled: Mapping[int, Path] | None = None,
    ) -> None:
        if outbox_limit < 1 or window < 1:
            raise ValueError("outbox_limit and window must be >= 1")
        self.data_endpoint = data_endpoint
        self.weights_endpoint = weights_endpoint
        self.spec = spec
        if incarnation is None:
            incarnation = time.time_ns() // 1_000_000
        self.handshake = Handshake(
            config_hash=config_hash, spec=spec, actor_id=actor_id, incarnation=incarnation
        )
        self.outbox_limit = outbox_limit
        self.spill_dir = Path(spill_dir) if spill_dir is not None else None
        self.spill_limit_bytes = spill_limit_bytes
        predecessors: dict[int, dict[int, Path]] = {}
        if self.spill_dir is not None:
            self.spill_dir.mkdir(parents=True, exist_ok=True)
            self._remove_stale_spills(actor_id)
            predecessors = self._predecessor_spills(actor_id, incarnation)
        self.window = window
        self.limits = limits
        self.heartbeat_s = heartbeat_s
        self.silence_timeout_s = silence_timeout_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.weights_stale_s = weights_stale_s
        self._curve = curve
        self._rng = random.Random(seed)

        # Shared between the caller and the I/O thread, guarded by _cond.
        self._cond = threading.Condition()
        self._send_lock = threading.Lock()
        self._records: dict[int, _Record] = {}
        self._next_seq = 0
        self._forgotten = -1
        """Highest seq committed and dropped here: the learner can never get it again."""
        self._in_memory = 0
        self._memory_seqs: deque[int] = deque()
        """With spill_dir: seqs of the chunks held in memory, oldest first (as many as them)."""
        self._spilled_bytes = 0
        """Size of this incarnation's spill files not yet committed (deleted)."""
        self._weights: Weights | None = None
        self._error: BaseException | None = None
        self._connected = False
        self._ever_connected = False
        self._closing = False
        self._stop = False
        self._counters: Counter[str] = Counter()
        self._episodes: deque[dict[str, Any]] = deque()
        self._finish_when_sent = spilled is not None
        """A helper for a predecessor's spill files: stops once all of them are committed."""
        if spilled:
            for seq in sorted(spilled):
                path = spilled[seq]
                self._records[seq] = _Record(seq, None, path, path.stat().st_size)
            self._next_seq = max(spilled) + 1
            self._forgotten = min(spilled) - 1

        # Owned by the I/O thread.
        self._ctx = zmq.Context()
        self._dealer: zmq.Socket | None = None
        self._sub: zmq.Socket | None = None
        self._poller = zmq.Poller()
        self._state = _DISCONNECTED
        self._conn = 0
        self._next_send = 0
        self._acked = -1
        self._max_acked = -1
        self._server_max_bytes = limits.max_message_bytes
        self._last_heard = 0.0
        self._last_ping = 0.0
        self._hello_at = 0.0
        self._reconnect_at = 0.0
        self._attempt = 0
        self._unreachable_since: float | None = time.monotonic()
        """Since when no handshake has been accepted on the current link (None: connected)."""
        self._outage_logged = time.monotonic()
        self._stale_since: float | None = None
        self._reported_version = -1

        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._thread = threading.Thread(
            target=self._run, name=f"serl-transport-{actor_id}", daemon=True
        )
        self._thread.start()
        self._heirs = [
            ActorClient(
                data_endpoint,
                weights_endpoint,
                spec,
                config_hash,
                actor_id,
                old_incarnation,
                curve=curve,
                window=window,
                limits=limits,
                heartbeat_s=heartbeat_s,
                silence_timeout_s=silence_timeout_s,
                backoff_initial_s=backoff_initial_s,
                backoff_max_s=backoff_max_s,
                weights_stale_s=weights_stale_s,
                seed=seed,
                spilled=files,
            )
            for old_incarnation, files in sorted(predecessors.items())
        ]
        """Clients sending the spill files of earlier incarnations of this actor."""
        if predecessors:
            logger.info(
                "sending %d chunk(s) spilled by %d earlier incarnation(s) of actor %s",
                sum(map(len, predecessors.values())),
                len(predecessors),
                actor_id,
            )

    # ---- caller side -------------------------------------------------------------------

    def send_chunk(
        self, arrays: Mapping[str, Any], *, copy: bool = True, timeout_s: float | None = None
    ) -> int:
        """Queue one chunk (wire names, see `chunk_arrays`); return its seq.

        Validated against the spec first (ChunkRejected names the problem). Copies the
        arrays unless `copy=False` (then do not modify them afterwards). Blocks while the
        outbox is full unless `spill_dir` is set; TimeoutError after `timeout_s`.
        """
        self._raise_if_failed()
        chunk = {
            name: np.array(value, copy=True, order="C") if copy else np.ascontiguousarray(value)
            for name, value in arrays.items()
        }
        self.spec.validate_chunk(chunk)
        nbytes = sum(arr.nbytes for arr in chunk.values())
        with self._send_lock:
            with self._cond:
                ok = self._cond.wait_for(
                    lambda: (
                        self._in_memory < self.outbox_limit
                        or (self.spill_dir is not None and self._spill_has_room(nbytes))
                        or self._error is not None
                        or self._closing
                    ),
                    timeout_s,
                )
                if not ok:
                    held = f"outbox full ({self.outbox_limit} chunks)"
                    if self.spill_dir is not None:
                        held += f" and spill full ({self._spilled_bytes / 2**20:.1f} MB)"
                    raise TimeoutError(
                        f"{held} for {timeout_s} s; is the learner running and reachable?"
                    )
                self._raise_if_failed()
                seq = self._next_seq
                self._next_seq += 1
                self._records[seq] = _Record(seq, chunk, None, nbytes)
                self._in_memory += 1
                oldest = None
                if self.spill_dir is not None:
                    self._memory_seqs.append(seq)
                    if self._in_memory > self.outbox_limit:
                        oldest = self._oldest_in_memory()
            if oldest is not None:
                self._move_to_disk(oldest)
        self._wake()
        return seq

    def _oldest_in_memory(self) -> _Record | None:
        """The in-memory record with the lowest seq (call with `_cond` held)."""
        while self._memory_seqs:
            record = self._records.get(self._memory_seqs.popleft())
            if record is not None and record.arrays is not None:
                return record
        return None

    def _move_to_disk(self, record: _Record) -> None:
        """Spill `record` (the oldest chunk in memory) to a file and drop its arrays.

        Spilling the oldest rather than the newest keeps the files a contiguous run of seqs
        after the last commit: if this process is killed, the chunks it loses are its newest
        (at most `outbox_limit`), and a successor sends the files from the first seq the
        learner lacks, which the learner must see contiguous (see LearnerServer's hello).
        """
        assert record.arrays is not None
        path = self._spill(record.seq, record.arrays)
        size = path.stat().st_size
        with self._cond:
            if self._records.get(record.seq) is not record:  # committed while being written
                path.unlink(missing_ok=True)
                return
            record.path, record.disk_bytes = path, size
            record.arrays = None  # after `path`: the I/O thread reads arrays, then path
            self._in_memory -= 1
            self._spilled_bytes += size
            self._counters["spilled"] += 1
            self._counters["spilled_bytes"] += size

    def _spill_has_room(self, nbytes: int) -> bool:
        """Whether a chunk of `nbytes` (its .npz is about that size) fits the spill limit."""
        return self._spilled_bytes + nbytes <= self.spill_limit_bytes

    def send_episode_stats(self, stats: Mapping[str, bool | int | float | str]) -> None:
        """Queue scalar statistics of a finished episode (best effort, at most 256 waiting)."""
        if len(stats) > MAX_EPISODE_STATS:
            raise ValueError(f"{len(stats)} episode stats, at most {MAX_EPISODE_STATS}")
        clean: dict[str, Any] = {}
        for key, value in stats.items():
            if isinstance(value, np.generic):
                value = value.item()
            if not isinstance(value, bool | int | float | str):
                raise ValueError(f"episode stat {key!r}={value!r} is not a scalar")
            clean[str(key)] = value
        with self._cond:
            if len(self._episodes) >= 256:
                self._episodes.popleft()
                self._counters["episodes_dropped"] += 1
            self._episodes.append(clean)
        self._wake()

    def latest_weights(self, newer_than: int = -1) -> Weights | None:
        """The newest weights received, or None if none is newer than `newer_than`.

        `newer_than` compares versions only; after a learner restart the new learner's
        weights may carry a lower version. An actor loop that must see those too calls
        `latest_weights()` and compares the returned object with the one it holds.
        """
        self._raise_if_failed()
        with self._cond:
            weights = self._weights
        if weights is None or weights.version <= newer_than:
            return None
        return weights

    def wait_for_weights(self, timeout_s: float, newer_than: int = -1) -> Weights:
        """Block until weights newer than `newer_than` arrive; TimeoutError otherwise."""
        with self._cond:
            self._cond.wait_for(
                lambda: (
                    self._error is not None
                    or (self._weights is not None and self._weights.version > newer_than)
                ),
                timeout_s,
            )
        weights = self.latest_weights(newer_than)
        if weights is None:
            raise TimeoutError(
                f"no weights newer than version {newer_than} within {timeout_s} s from "
                f"{self.weights_endpoint}"
            )
        return weights

    def wait_connected(self, timeout_s: float) -> None:
        """Block until the learner accepted the handshake; HandshakeRefused or TimeoutError."""
        with self._cond:
            self._cond.wait_for(lambda: self._connected or self._error is not None, timeout_s)
            connected = self._connected
        self._raise_if_failed()
        if not connected:
            raise TimeoutError(
                f"no answer from the learner at {self.data_endpoint} within {timeout_s} s "
                "(is it running? with CURVE, are the keys right?)"
            )

    def unreachable_for(self) -> float | None:
        """Seconds since the learner was last reachable (no accepted handshake since), or None
        while connected."""
        since = self._unreachable_since  # one read: the I/O thread may clear it meanwhile
        return None if since is None else time.monotonic() - since

    @property
    def connected(self) -> bool:
        """True while the current connection's handshake is accepted."""
        with self._cond:
            return self._connected

    def pending(self) -> int:
        """Chunks not yet committed by the learner (in memory or spilled, a predecessor's
        spill files included)."""
        with self._cond:
            own = len(self._records)
        return own + sum(heir.pending() for heir in self._heirs)

    def counters(self) -> dict[str, int]:
        """sent, resent, acked, committed, rejected, spilled, reconnects, weights_received..."""
        with self._cond:
            return dict(self._counters)

    def close(self, timeout_s: float = 10.0) -> bool:
        """Wait up to `timeout_s` for every chunk to be committed, then stop the I/O thread.

        Returns True when everything was committed (a predecessor's spill files included).
        Uncommitted chunks are lost with this process (spilled files stay in `spill_dir`).
        """
        deadline = time.monotonic() + timeout_s
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            flushed = self._cond.wait_for(
                lambda: not self._records or self._error is not None, timeout_s
            )
            left = len(self._records)
            unacked = sum(seq > self._acked for seq in self._records)
            spilled = sum(r.path is not None for r in self._records.values())
            self._stop = True
        self._wake()
        self._thread.join(timeout=max(timeout_s, 5.0))
        self._wake_r.close()
        self._wake_w.close()
        if unacked:
            logger.warning(
                "closed with %d chunks the learner never acknowledged (%d of them kept in %s, "
                "the rest lost with this process)", unacked, spilled, self.spill_dir
            )  # fmt: skip
        elif left:  # the usual end of a run: the learner's final checkpoint commits them
            logger.info(
                "closed; the learner holds the last %d chunks and commits them with its next "
                "checkpoint", left
            )  # fmt: skip
        heirs_flushed = [heir.close(max(0.0, deadline - time.monotonic())) for heir in self._heirs]
        return flushed and left == 0 and all(heirs_flushed)

    def __enter__(self) -> ActorClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _raise_if_failed(self) -> None:
        with self._cond:
            error = self._error
            if error is None and self._stop:
                error = RuntimeError("the actor client is closed")
        if error is not None:
            raise error

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            self._wake_w.send(b"\0")

    def _remove_stale_spills(self, actor_id: str) -> None:
        """Delete the half-written spill files (`*.tmp.npz`) an earlier process of this actor
        left when it was killed; other actors' files in a shared spill_dir are theirs."""
        assert self.spill_dir is not None
        stale = list(self.spill_dir.glob(f"{glob.escape(_safe_name(actor_id))}-*.tmp.npz"))
        for path in stale:
            path.unlink(missing_ok=True)
        if stale:
            logger.info("removed %d half-written spill file(s) from %s", len(stale), self.spill_dir)

    def _predecessor_spills(self, actor_id: str, incarnation: int) -> dict[int, dict[int, Path]]:
        """{incarnation: {seq: file}} of the spill files earlier processes of this actor left
        (killed, or closed before the learner committed them)."""
        assert self.spill_dir is not None
        pattern = re.compile(rf"{re.escape(_safe_name(actor_id))}-(-?\d+)-(\d+)\.npz")
        found: dict[int, dict[int, Path]] = {}
        for path in self.spill_dir.iterdir():
            match = pattern.fullmatch(path.name)
            if match is not None and int(match[1]) != incarnation:
                found.setdefault(int(match[1]), {})[int(match[2])] = path
        return found

    def _spill(self, seq: int, chunk: dict[str, np.ndarray]) -> Path:
        assert self.spill_dir is not None
        name = f"{_safe_name(self.handshake.actor_id)}-{self.handshake.incarnation}-{seq:012d}"
        path = self.spill_dir / f"{name}.npz"
        tmp = self.spill_dir / f"{name}.tmp.npz"
        np.savez(tmp, **chunk)
        os.replace(tmp, path)
        return path

    # ---- I/O thread ----------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._connect_sub()
            self._poller.register(self._wake_r, zmq.POLLIN)
            self._connect()
            while True:
                with self._cond:
                    if self._stop or (self._finish_when_sent and not self._records):
                        break
                ready = dict(self._poller.poll(self._poll_timeout_ms()))
                if self._wake_r.fileno() in ready:
                    with contextlib.suppress(BlockingIOError):
                        while self._wake_r.recv(4096):
                            pass
                if self._dealer is not None and self._dealer in ready:
                    self._drain_dealer()
                if self._sub in ready:
                    self._drain_sub()
                self._timers()
                if self._state == _READY:
                    self._pump()
            self._say_bye()
        except Exception as exc:
            logger.exception("actor transport I/O thread failed")
            self._fail(RuntimeError(f"actor transport I/O thread failed: {exc!r}"))
        finally:
            for sock in (self._dealer, self._sub):
                if sock is not None:
                    sock.close(linger=0)
            self._ctx.term()

    def _socket(self, kind: int) -> zmq.Socket:
        sock = self._ctx.socket(kind)
        sock.linger = 0
        sock.maxmsgsize = self.limits.frame_cap
        sock.reconnect_ivl = 100
        sock.reconnect_ivl_max = int(self.backoff_max_s * 1000)
        sock.connect_timeout = CONNECT_TIMEOUT_MS
        # No ZMTP heartbeats (ZMQ_HEARTBEAT_IVL): libzmq 4.3.5 aborts the *learner* with
        # "Assertion failed: !_io_error (stream_engine_base.cpp:310)" when a PING it had
        # already read is processed after the connection broke while its RCVHWM was full (a
        # busy learner, an actor reconnecting on silence; reproduced, libzmq issues 3937 and
        # 4364). Liveness is the application's PING/PONG on the DEALER instead.
        if self._curve is not None:
            configure_client_socket(sock, self._curve)
        return sock

    def _fail(self, error: BaseException) -> None:
        with self._cond:
            if self._error is None:
                self._error = error
            self._stop = True
            self._cond.notify_all()

    def _poll_timeout_ms(self) -> int:
        if self._state == _DISCONNECTED:
            wait = self._reconnect_at - time.monotonic()
        else:
            wait = min(self.heartbeat_s, self.silence_timeout_s) / 4
        return max(1, min(100, int(wait * 1000)))

    def _connect(self) -> None:
        dealer = self._socket(zmq.DEALER)
        dealer.sndhwm = 1000
        dealer.connect(self.data_endpoint)
        self._dealer = dealer
        self._poller.register(dealer, zmq.POLLIN)
        self._say_hello()

    def _say_hello(self) -> None:
        self._conn += 1
        with self._cond:
            self._connected = False
            have = self._weights.version if self._weights is not None else -1
            have_learner = self._weights.learner if self._weights is not None else None
            first_seq = self._forgotten + 1
        fields = self.handshake.to_fields() | {
            "conn": self._conn,
            "weights_version": have,
            "first_seq": first_seq,
        }
        if have_learner is not None:
            fields["weights_learner"] = have_learner
        self._send(Kind.HELLO, fields)
        self._state = _HELLO_SENT
        self._hello_at = self._last_heard = time.monotonic()

    def _connect_sub(self) -> None:
        sub = self._socket(zmq.SUB)
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        sub.connect(self.weights_endpoint)
        self._sub = sub
        self._poller.register(sub, zmq.POLLIN)

    def _reconnect(self, why: str) -> None:
        if self._dealer is not None:
            self._poller.unregister(self._dealer)
            self._dealer.close(linger=0)
            self._dealer = None
        if self._sub is not None:  # a learner silent on the DEALER is suspect on the SUB too
            self._poller.unregister(self._sub)
            self._sub.close(linger=0)
            self._connect_sub()
        delay = min(self.backoff_max_s, self.backoff_initial_s * 2**self._attempt)
        delay *= 0.5 + 0.5 * self._rng.random()
        self._attempt += 1
        self._state = _DISCONNECTED
        self._reconnect_at = time.monotonic() + delay
        if self._unreachable_since is None:
            self._unreachable_since = self._outage_logged = time.monotonic()
        with self._cond:
            self._connected = False
            self._counters["reconnects"] += 1
        logger.warning("%s; reconnecting to %s in %.2f s", why, self.data_endpoint, delay)

    def _send(self, kind: str, fields: dict[str, Any], arrays: Any = None) -> bool:
        assert self._dealer is not None
        try:
            self._dealer.send_multipart(encode(kind, fields, arrays), zmq.NOBLOCK, copy=False)
        except zmq.Again:
            return False
        return True

    def _timers(self) -> None:
        now = time.monotonic()
        self._log_outage(now)
        if self._state == _DISCONNECTED:
            if now >= self._reconnect_at:
                self._connect()
            return
        if now - self._last_heard > self.silence_timeout_s:
            what = "no welcome" if self._state == _HELLO_SENT else "learner silent"
            self._reconnect(f"{what} for {self.silence_timeout_s:.1f} s")
            return
        if self._state == _READY and now - self._last_ping >= self.heartbeat_s:
            self._last_ping = now
            self._send(Kind.PING, {"conn": self._conn})

    def _log_outage(self, now: float) -> None:
        """While no handshake is accepted: every OUTAGE_LOG_S, for how long and what is held."""
        if self._unreachable_since is None or now - self._outage_logged < OUTAGE_LOG_S:
            return
        self._outage_logged = now
        with self._cond:
            held = len(self._records)
            spilled = sum(r.path is not None for r in self._records.values())
            spilled_mb = self._spilled_bytes / 2**20
        where = f" ({spilled_mb:.1f} MB in {self.spill_dir})" if self.spill_dir else ""
        logger.warning(
            "learner at %s unreachable for %.0f s; holding %d chunk(s), %d of them spilled%s",
            self.data_endpoint, now - self._unreachable_since, held, spilled, where,
        )  # fmt: skip

    def _pump(self) -> None:
        """Send chunks in seq order while the window allows, then queued episode stats."""
        while self._next_send - 1 - self._acked < self.window:
            with self._cond:
                if self._records:
                    self._next_send = max(self._next_send, next(iter(self._records)))
                record = self._records.get(self._next_send)
            if record is None:
                break
            if record.nbytes + 4096 > self._server_max_bytes:
                self._fail(
                    ValueError(
                        f"chunk {record.seq} is {record.nbytes} bytes, over the learner's "
                        f"max_message_bytes {self._server_max_bytes}; send smaller chunks"
                    )
                )
                return
            arrays = record.arrays  # read once: the caller may spill the record meanwhile
            if arrays is None:
                arrays = self._load(record.path)
            if not self._send(Kind.CHUNK, {"seq": record.seq, "conn": self._conn}, arrays):
                break
            record.sends += 1
            self._next_send += 1
            with self._cond:
                self._counters["sent"] += 1
                if record.sends > 1:
                    self._counters["resent"] += 1
        while True:
            with self._cond:
                if not self._episodes:
                    return
                stats = self._episodes[0]
            if not self._send(Kind.EPISODE, {"stats": stats}):
                return
            with self._cond:
                self._episodes.popleft()
                self._counters["episodes_sent"] += 1

    @staticmethod
    def _load(path: Path | None) -> dict[str, np.ndarray]:
        assert path is not None
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}

    def _drain_dealer(self) -> None:
        assert self._dealer is not None
        for _ in range(10_000):
            if self._dealer is None:
                return
            frames, reason = recv_bounded(self._dealer, self.limits)
            if reason is not None:
                with self._cond:
                    self._counters["dropped_inbound"] += 1
                continue
            if frames is None:
                return
            try:
                message = decode(frames, self.limits)
                self._last_heard = time.monotonic()
                self._on_message(message)
            except WireError as exc:
                with self._cond:
                    self._counters["dropped_inbound"] += 1
                logger.warning("dropped a message from the learner: %s", exc)

    def _on_message(self, message: Message) -> None:
        fields = message.fields
        kind = message.kind
        if kind == Kind.WELCOME:
            self._on_welcome(fields)
        elif kind == Kind.REFUSED:
            reason = fields.get("reason")
            logger.error("learner refused the handshake: %s", reason)
            self._fail(HandshakeRefused(str(reason)))
        elif kind == Kind.ACK:
            self._on_ack(fields)
        elif kind == Kind.COMMIT:
            self._apply_committed(get_int(fields, "committed"))
        elif kind == Kind.PONG:  # also repairs a lost ack or commit within a heartbeat
            self._acked = max(self._acked, get_int(fields, "cursor", -1))
            self._apply_committed(get_int(fields, "committed"))
            self._check_stale_weights(get_int(fields, "weights_version"), fields.get("learner"))
        elif kind == Kind.NEED_HELLO:
            if self._state == _READY and fields.get("conn") == self._conn:
                logger.info("learner does not know this actor (restarted?); handshaking again")
                self._say_hello()
        elif kind == Kind.WEIGHTS:
            self._on_weights(message)

    def _on_welcome(self, fields: dict[str, Any]) -> None:
        if self._state != _HELLO_SENT or fields.get("conn") != self._conn:
            return
        cursor = get_int(fields, "cursor", -1)
        committed = get_int(fields, "committed", -1, cursor)
        self._server_max_bytes = get_int(fields, "max_message_bytes", 1)
        self._state = _READY
        self._attempt = 0
        self._acked = cursor  # authoritative for this connection, even if lower than before
        self._next_send = cursor + 1
        self._last_ping = time.monotonic()
        self._apply_committed(committed)
        with self._cond:
            self._connected = True
            if self._ever_connected:
                self._counters["rehandshakes"] += 1
            self._ever_connected = True
            self._cond.notify_all()
        self._check_stale_weights(get_int(fields, "weights_version"), fields.get("learner"))
        outage = time.monotonic() - (self._unreachable_since or time.monotonic())
        self._unreachable_since = None
        logger.info(
            "connected to the learner at %s after %.1f s (its cursor %d; %d chunk(s) to send)",
            self.data_endpoint, outage, cursor, self._next_seq - 1 - cursor,
        )  # fmt: skip

    def _on_ack(self, fields: dict[str, Any]) -> None:
        cursor = get_int(fields, "cursor", -1)
        self._acked = max(self._acked, cursor)
        with self._cond:
            if cursor > self._max_acked:
                self._counters["acked"] += cursor - self._max_acked
                self._max_acked = cursor
            if "rejected" in fields:
                self._counters["rejected"] += 1
        if "rejected" in fields:
            logger.warning(
                "learner rejected chunk %s: %s", fields.get("seq"), fields.get("rejected")
            )
        self._apply_committed(get_int(fields, "committed"))

    def _apply_committed(self, committed: int) -> None:
        """Forget every chunk up to `committed`: a learner checkpoint holds it."""
        with self._cond:
            while self._records:
                seq = next(iter(self._records))
                if seq > committed:
                    break
                record = self._records.pop(seq)
                self._forgotten = seq
                while self._memory_seqs and self._memory_seqs[0] <= seq:
                    self._memory_seqs.popleft()
                if record.arrays is not None:
                    self._in_memory -= 1
                if record.path is not None:
                    record.path.unlink(missing_ok=True)
                    self._spilled_bytes -= record.disk_bytes
                self._counters["committed"] += 1
            self._cond.notify_all()

    def _check_stale_weights(self, reported: int, learner: Any = None) -> None:
        """Ask for weights when the learner has had newer ones for `weights_stale_s`.

        Weights from another learner incarnation (`learner`, when the learner reports it)
        count as stale whatever their version: that learner was restarted.
        """
        with self._cond:
            have = self._weights.version if self._weights is not None else -1
            have_learner = self._weights.learner if self._weights is not None else None
        other_learner = (
            type(learner) is int
            and have_learner is not None
            and learner != have_learner
            and reported >= 0
        )
        if reported <= have and not other_learner:
            self._stale_since = None
            return
        now = time.monotonic()
        if self._stale_since is None:
            self._stale_since = now
        elif now - self._stale_since >= self.weights_stale_s:
            self._stale_since = now
            request = {"have": have, "conn": self._conn}
            if have_learner is not None:
                request["have_learner"] = have_learner
            self._send(Kind.WEIGHTS_REQUEST, request)

    def _drain_sub(self) -> None:
        assert self._sub is not None
        newest = None
        for _ in range(10_000):
            frames, reason = recv_bounded(self._sub, self.limits)
            if reason is not None:
                with self._cond:
                    self._counters["dropped_inbound"] += 1
                continue
            if frames is None:
                break
            newest = frames  # PUB delivers in version order: only the last one matters
        if newest is None:
            return
        try:
            self._on_weights(decode(newest, self.limits))
        except WireError as exc:
            with self._cond:
                self._counters["dropped_inbound"] += 1
            logger.warning("dropped weights from the learner: %s", exc)

    def _on_weights(self, message: Message) -> None:
        if message.kind != Kind.WEIGHTS:
            raise WireError("unknown_kind", f"{message.kind!r} on the weights socket")
        version = get_int(message.fields, "version", 0)
        published_ns = get_int(message.fields, "published_ns", 0)
        learner = get_int(message.fields, "learner") if "learner" in message.fields else 0
        with self._cond:
            current = self._weights
            if current is not None and learner == current.learner and version <= current.version:
                return
        for name, arr in message.arrays.items():
            if arr.dtype.kind == "f" and not np.isfinite(arr).all():
                with self._cond:
                    self._counters["weights_rejected"] += 1
                logger.error(
                    "weights version %d: %r holds NaN/Inf; kept the old policy", version, name
                )
                return
        weights = Weights(version, dict(message.arrays), published_ns, time.time_ns(), learner)
        with self._cond:
            self._weights = weights
            self._counters["weights_received"] += 1
            self._cond.notify_all()
        self._stale_since = None

    def _say_bye(self) -> None:
        if self._dealer is not None and self._state == _READY:
            self._send(Kind.BYE, {"conn": self._conn})
            self._dealer.close(linger=200)
            self._dealer = None
