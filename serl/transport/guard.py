"""Bounds what libzmq holds for a ROUTER's TCP peers before the application reads it.

Why this exists: libzmq assembles a whole multipart message before the application can read
its first frame, and counts its high-water marks in whole messages; ZMQ_MAXMSGSIZE caps one
frame only. So a peer that sends one message of many frames, each under the cap, makes libzmq
hold all of them, whatever the application does once it reads them (issue 18: 24 frames of
100 MiB took the learner to 2.7 GiB, 1,500 frames of 1 MiB the robot server to 1.8 GiB).
Nothing in libzmq 4.3 bounds that, so this module does, from outside libzmq.

How: for every accepted TCP connection, the bytes the kernel has handed to libzmq (TCP_INFO's
`tcpi_bytes_received` minus what is still unread in the socket, FIONREAD) minus the wire size
of every frame the application has received from that connection (each received frame names
its connection's file descriptor, ZMQ_SRCFD; ZMTP framing and CURVE's box add a fixed number
of bytes per frame, `frame_wire_bytes`) is exactly what libzmq holds for that peer: the
handshake, the complete messages queued for the application, and the message being assembled.
A connection that holds more than `per_peer_bytes`, and while the sum over connections exceeds
`total_bytes` the one that holds most, is shut down (shutdown(2) on its socket): libzmq then
ends the connection and frees the frames of its unfinished message. A thread checks every
`period_s` (less often when so many connections are open that checking would take more than
`MAX_CPU_SHARE` of a core), so the bound holds while the application is busy (a learner
inside an update).

What the bound is: at most `per_peer_bytes` per connection and `total_bytes` over all, in
wire bytes, plus what a peer can send between two checks. libzmq keeps a frame of up to 33
bytes inside a 64-byte message struct, so a peer that sends empty frames (2 wire bytes each)
makes libzmq use up to 32 times its wire bytes in memory; frames of a few hundred bytes or
more cost about their size. Only TCP is accounted: ipc:// peers (local, behind file
permissions) are not, and neither is a platform without Linux's TCP_INFO (a warning says so).
A peer speaking ZMTP/1.0 (not ZeroMQ >= 3) gets no descriptor on its frames, so all it sends
counts as held and it is dropped once it has sent `per_peer_bytes`.
"""

from __future__ import annotations

import array
import contextlib
import fcntl
import logging
import socket
import struct
import sys
import termios
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import zmq
from zmq.utils.monitor import recv_monitor_message

logger = logging.getLogger(__name__)

HANDSHAKE_SLACK_BYTES = 64 * 1024
"""Wire bytes of a connection's ZMTP greeting and handshake commands, with room for peer
metadata (measured: 107 bytes with NULL, 567 with CURVE)."""
CURVE_FRAME_OVERHEAD = 33
"""CURVE sends each frame as a MESSAGE command: name (8 bytes), nonce (8), MAC (16), flags (1)."""
MAX_CPU_SHARE = 0.05
"""The guard checks less often than `period_s` when a check over many connections takes
longer than this share of the time between checks (about 30 us per connection)."""
_TCPI_BYTES_RECEIVED = 128
"""Offset of `tcpi_bytes_received` (u64) in Linux's struct tcp_info (Linux >= 4.1)."""
_TCP_INFO_LEN = 256
_SUPPORTED = sys.platform.startswith("linux") and hasattr(socket, "TCP_INFO")


def frame_wire_bytes(size: int, curve: bool) -> int:
    """Bytes one ZMTP 3 frame of `size` payload bytes takes on the wire (exact)."""
    if curve:
        size += CURVE_FRAME_OVERHEAD
    return size + (2 if size <= 255 else 9)


def peer_budget(rcvhwm: int, max_message_bytes: int, max_frames: int) -> int:
    """Wire bytes libzmq may hold for an honest peer: `rcvhwm` complete messages queued for the
    application, one being assembled, the handshake."""
    message = max_message_bytes + max_frames * (CURVE_FRAME_OVERHEAD + 9)
    return (rcvhwm + 1) * message + HANDSHAKE_SLACK_BYTES


@dataclass
class _Connection:
    delivered: int = 0
    """Wire bytes of the frames the application has received from this connection."""
    family: int | None = None
    """Address family, known once its EVENT_ACCEPTED was seen (None: not accounted)."""
    peer: Any = None
    """getpeername() at accept: a reused descriptor shows another peer."""


@contextlib.contextmanager
def _borrowed(fd: int, family: int = -1) -> Iterator[socket.socket]:
    """A Python socket object on libzmq's descriptor that never closes it."""
    kind = socket.SOCK_STREAM if family != -1 else -1
    sock = socket.socket(family, kind, -1 if family == -1 else 0, fileno=fd)
    try:
        yield sock
    finally:
        sock.detach()


class InboundGuard:
    """Watches one bound socket's TCP peers from a thread; see the module docstring.

    On a ROUTER every receive must go through `count` (what `recv_bounded` does with it). On a
    PUB, whose only input (subscriptions) libzmq consumes itself, nothing is counted, so all
    that a peer sends beyond its handshake counts as held. The guard owns the socket's monitor:
    it counts the `events` it sees as `zmq:<event>` in `take_counts()`, beside
    `guard:dropped_peer` (a connection over `per_peer_bytes`), `guard:dropped_peer_total` (the
    largest one while the total was over `total_bytes`) and `guard:disconnected` (`disconnect`).
    """

    def __init__(
        self,
        sock: zmq.Socket,
        *,
        per_peer_bytes: int,
        total_bytes: int,
        curve: bool,
        events: int = 0,
        period_s: float = 0.005,
    ) -> None:
        self.per_peer_bytes = min(per_peer_bytes, total_bytes)
        self.total_bytes = total_bytes
        self.curve = curve
        self.period_s = period_s
        self._events = events
        self._lock = threading.Lock()
        self._connections: dict[int, _Connection] = {}
        self._counts: Counter[str] = Counter()
        self._stop = threading.Event()
        self._monitor = sock.get_monitor_socket(
            events | zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED
        )
        if not _SUPPORTED:
            logger.warning(
                "no TCP_INFO on %s: what libzmq holds for a peer is bounded per frame only "
                "(ZMQ_MAXMSGSIZE), not per message",
                sys.platform,
            )
        self._thread = threading.Thread(target=self._run, name="serl-inbound-guard", daemon=True)
        self._thread.start()

    def count(self, frame: zmq.Frame) -> None:
        """Account one received frame that crossed the wire (not the routing id a ROUTER adds).

        Every frame counts, the frames of a message the application drops unread included.
        """
        size = frame_wire_bytes(len(frame), self.curve)
        try:
            fd = frame.get(zmq.SRCFD)
        except zmq.ZMQError:
            return  # a ZMTP/1.0 peer's frames carry no descriptor: all it sends counts as held
        with self._lock:
            self._connections.setdefault(fd, _Connection()).delivered += size

    def take_counts(self) -> Counter[str]:
        """Counts since the last call (monitor events and dropped peers)."""
        with self._lock:
            counts, self._counts = self._counts, Counter()
        return counts

    def held(self) -> dict[int, int]:
        """Wire bytes libzmq holds per accounted connection (file descriptor), right now."""
        with self._lock:
            connections = [
                (fd, c.family, c.peer, c.delivered)
                for fd, c in self._connections.items()
                if c.family is not None
            ]
        held = {}
        for fd, family, peer, delivered in connections:
            consumed = _consumed(fd, family, peer)
            if consumed is not None:
                held[fd] = consumed - delivered
        return held

    def close(self) -> None:
        """Stop the thread and close the monitor (before the socket's context terminates)."""
        self._stop.set()
        self._thread.join()

    # ---- the thread ----------------------------------------------------------------------

    def _run(self) -> None:
        poller = zmq.Poller()
        poller.register(self._monitor, zmq.POLLIN)
        timeout_ms = max(1, min(50, int(self.period_s * 1000)))  # `close` waits at most this
        next_check = 0.0
        try:
            while not self._stop.is_set():
                if poller.poll(timeout_ms):
                    self._drain_events()
                now = time.monotonic()
                if _SUPPORTED and now >= next_check:
                    self._enforce()
                    spent = time.monotonic() - now
                    next_check = now + max(self.period_s, spent / MAX_CPU_SHARE)
        except Exception:  # the guard must never take its process down
            logger.exception("inbound guard stopped; per-message bounds no longer enforced")
        finally:
            self._monitor.close(linger=0)

    def _drain_events(self) -> None:
        while True:
            try:
                event = recv_monitor_message(self._monitor, zmq.NOBLOCK)
            except zmq.Again:
                return
            assert isinstance(event, dict)
            kind, fd = int(event["event"]), int(event["value"])
            if kind & self._events:
                with self._lock:
                    self._counts[f"zmq:{zmq.Event(kind).name.lower()}"] += 1
            if kind == zmq.EVENT_ACCEPTED:
                self._accepted(fd)
            elif kind == zmq.EVENT_DISCONNECTED:
                with self._lock:
                    self._connections.pop(fd, None)

    def _accepted(self, fd: int) -> None:
        try:
            with _borrowed(fd) as sock:
                family, peer = sock.family, sock.getpeername()
        except OSError:  # already gone
            return
        if family not in (socket.AF_INET, socket.AF_INET6):
            return  # ipc: not accounted
        with self._lock:
            connection = self._connections.setdefault(fd, _Connection())
            connection.family, connection.peer = family, peer

    def disconnect(self, fd: int, why: str) -> None:
        """Shut down the connection on descriptor `fd` (the ZMQ_SRCFD of a message from it),
        if it is still the peer the guard knows there."""
        self._drop(fd, "guard:disconnected", why)

    def _enforce(self) -> None:
        held = self.held()
        for fd, size in held.items():
            if size > self.per_peer_bytes:
                why = f"libzmq held {size} bytes for it, over the budget {self.per_peer_bytes}"
                self._drop(fd, "guard:dropped_peer", why)
        remaining = {fd: size for fd, size in held.items() if size <= self.per_peer_bytes}
        while remaining and sum(remaining.values()) > self.total_bytes:
            total = sum(remaining.values())
            fd = max(remaining, key=remaining.__getitem__)
            why = (
                f"libzmq held {remaining.pop(fd)} bytes for it, the most while all peers held "
                f"{total}, over the budget {self.total_bytes}"
            )
            self._drop(fd, "guard:dropped_peer_total", why)

    def _drop(self, fd: int, counter: str, why: str) -> None:
        with self._lock:
            connection = self._connections.pop(fd, None)
        if connection is None or connection.family is None:
            return
        try:
            with _borrowed(fd, connection.family) as sock:
                if sock.getpeername() != connection.peer:
                    return  # the descriptor is another connection's now
                sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            return
        with self._lock:
            self._counts[counter] += 1
        logger.warning("dropped the connection of %s: %s", connection.peer, why)


def _consumed(fd: int, family: int, peer: Any) -> int | None:
    """Bytes libzmq has read from a TCP connection, or None if `fd` is no longer that peer's."""
    try:
        with _borrowed(fd, family) as sock:
            if sock.getpeername() != peer:
                return None  # the descriptor was reused; its events are on their way
            info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_LEN)
            unread = array.array("i", [0])
            fcntl.ioctl(fd, termios.FIONREAD, unread)
    except OSError:
        return None
    if len(info) < _TCPI_BYTES_RECEIVED + 8:
        return None
    return struct.unpack_from("Q", info, _TCPI_BYTES_RECEIVED)[0] - unread[0]
