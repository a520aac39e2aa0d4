"""Small ZeroMQ helpers shared by the learner server and the actor client.

Bounded receive (a message with too many or too large frames is drained and discarded, not
held), bind-address policy (loopback unless CURVE or --insecure), and the connection events
the learner counts.
"""

from __future__ import annotations

import ipaddress
import logging

import zmq

from serl.transport.codec import Limits
from serl.transport.guard import InboundGuard

logger = logging.getLogger(__name__)

MONITORED_EVENTS = (
    zmq.EVENT_ACCEPTED
    | zmq.EVENT_DISCONNECTED
    | zmq.EVENT_HANDSHAKE_SUCCEEDED
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
)
"""Connection events the learner counts (`zmq:<event>` in its stats)."""


class InsecureBindError(ValueError):
    """Refused to bind a non-loopback address without CURVE keys or an explicit insecure flag."""


def is_loopback_host(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and 'localhost'; False for '*', 0.0.0.0, names, interfaces."""
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


LOCAL_SCHEMES = ("ipc", "inproc")
"""Transports only this machine can reach (ipc: a socket file, guarded by its permissions)."""


def bind_endpoint(endpoint: str, *, secure: bool, insecure: bool) -> str:
    """Check the bind policy and turn port 0 into ZeroMQ's ephemeral-port wildcard.

    ipc:// and inproc:// are local; tcp:// must be loopback, and any other transport (tipc://,
    vmci://, ws://, ... which other machines can reach) is refused, unless `secure` (CURVE) or
    `insecure` (the user accepted an unauthenticated socket on a trusted network).
    """
    scheme, sep, address = endpoint.partition("://")
    if sep and scheme in LOCAL_SCHEMES:
        return endpoint
    if scheme != "tcp":
        _check_reachable(endpoint, f"{scheme}:// reaches beyond this machine", secure, insecure)
        return endpoint
    host, sep, port = address.rpartition(":")
    if not sep or not host:
        raise ValueError(f"endpoint {endpoint!r} is not tcp://HOST:PORT")
    if not is_loopback_host(host):
        _check_reachable(endpoint, "anyone who can reach it", secure, insecure)
    return f"tcp://{host}:{'*' if port == '0' else port}"


def _check_reachable(endpoint: str, who: str, secure: bool, insecure: bool) -> None:
    """Refuse an endpoint other machines can reach, unless CURVE or `insecure`."""
    if not secure and not insecure:
        raise InsecureBindError(
            f"refusing to bind {endpoint} without CURVE keys: {who} could inject "
            "transitions or commands. Generate keys with `serl keys generate DIR` and pass them "
            "(curve=load_server_keys(DIR)), or pass insecure=True (--insecure) on a trusted "
            "network."
        )
    if insecure and not secure:
        logger.warning("binding %s without encryption or authentication (insecure)", endpoint)


def recv_bounded(
    sock: zmq.Socket,
    limits: Limits,
    extra_frames: int = 0,
    guard: InboundGuard | None = None,
) -> tuple[list[zmq.Frame] | None, str | None]:
    """Receive one multipart message without waiting, holding at most the allowed frames.

    Returns (frames, None), (None, None) when nothing is waiting, or (None, reason) when the
    message had too many frames or bytes; its remaining frames are drained and released one by
    one. libzmq hands over a message only once all its frames have arrived, so the memory a
    message takes before this point is bounded by `guard` (and ZMQ_MAXMSGSIZE per frame), not
    here. `extra_frames` are routing frames a ROUTER adds; `guard` counts every other frame.
    """
    try:
        frame = sock.recv(zmq.NOBLOCK, copy=False)
    except zmq.Again:
        return None, None
    max_frames = limits.max_arrays + 1 + extra_frames
    frames = [frame]
    total = len(frame)
    index = 0
    reason = None
    while True:
        if guard is not None and index >= extra_frames:
            guard.count(frame)
        if not frame.more:
            break
        frame = sock.recv(copy=False)  # the rest of a multipart message is already here
        index += 1
        total += len(frame)
        if reason is None and index >= max_frames:
            reason = "too_many_frames"
        elif reason is None and total > limits.max_message_bytes + extra_frames * 256:
            reason = "oversized"
        if reason is None:
            frames.append(frame)
    if reason is not None:
        return None, reason
    return frames, None
