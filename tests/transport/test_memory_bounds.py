"""What a peer can make the learner or the robot server hold, measured on real processes.

Issue 18 items 2 and 3, scaled down to run in seconds: each attack would grow the target by
250 MiB or more without the bounds (measured on the code before them: 45 -> 296 MiB for the
learner's many-frames message, 284 -> 584 MiB for the robot server's, 45 -> 458 MiB for
never-reading peers); with them, the target's peak RSS (VmHWM) stays within a few MiB.
`scripts/memory_attacks.py` runs the issue's full sizes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
import zmq

from serl.transport.codec import Limits
from serl.transport.guard import HANDSHAKE_SLACK_BYTES, InboundGuard
from serl.transport.server import LearnerServer
from serl.transport.sockets import recv_bounded
from tests.transport.attacks import (
    learner_target,
    memory_mib,
    multipart,
    never_read,
    robot_target,
    settle,
    unfinished_message,
)
from tests.transport.helpers import CONFIG_HASH, STATE_SPEC, pump

pytestmark = pytest.mark.timeout(60)

GROWTH_MIB = 32
"""Peak RSS growth allowed under an attack: the bounds' few MiB plus allocator noise."""


def _peak_growth(pid: int, attack: AbstractContextManager[None]) -> float:
    """How far the process's peak RSS rose while `attack` ran and its bytes landed."""
    before = settle(pid, quiet_s=0.5)
    with attack:
        after = settle(pid)
    return after["peak"] - before["peak"]


def test_a_message_of_frames_over_the_cap_never_grows_the_learner(tmp_path: Path) -> None:
    with learner_target(tmp_path) as (pid, endpoint):
        growth = _peak_growth(pid, multipart(endpoint, 64 << 20, frames=4))  # 256 MiB
    assert growth < GROWTH_MIB, f"the learner's peak grew {growth:.0f} MiB"


def test_a_message_of_many_frames_under_the_cap_is_cut_off_by_the_learner(
    tmp_path: Path,
) -> None:
    with learner_target(tmp_path) as (pid, endpoint):
        growth = _peak_growth(pid, multipart(endpoint, 256 << 10, frames=1000))  # 250 MiB
    assert growth < GROWTH_MIB, f"the learner's peak grew {growth:.0f} MiB"


def test_a_message_of_frames_over_the_cap_never_grows_the_robot_server(tmp_path: Path) -> None:
    with robot_target(tmp_path) as (pid, endpoint):
        growth = _peak_growth(pid, multipart(endpoint, 1 << 20, frames=300))  # 300 MiB
    assert growth < GROWTH_MIB, f"the robot server's peak grew {growth:.0f} MiB"


def test_a_message_of_many_small_frames_is_cut_off_by_the_robot_server(tmp_path: Path) -> None:
    with robot_target(tmp_path) as (pid, endpoint):
        growth = _peak_growth(pid, multipart(endpoint, 16 << 10, frames=16000))  # 250 MiB
    assert growth < GROWTH_MIB, f"the robot server's peak grew {growth:.0f} MiB"


def test_peers_that_spam_weights_requests_and_never_read_do_not_grow_the_learner(
    tmp_path: Path,
) -> None:
    with learner_target(tmp_path, weights_mib=1.0) as (pid, endpoint):
        before = settle(pid, quiet_s=0.5)
        never_read(endpoint, peers=20, seconds=5.0)
        after = memory_mib(pid)
    growth = after["peak"] - before["peak"]
    assert growth < GROWTH_MIB, f"the learner's peak grew {growth:.0f} MiB"


def test_a_message_that_never_ends_is_cut_off_at_the_peer_budget() -> None:
    server = LearnerServer(STATE_SPEC, CONFIG_HASH)
    try:
        # 50 MiB in frames under the 272 KiB frame cap; the budget for this spec is 4.3 MB.
        sock = unfinished_message(server.data_endpoint, 256 << 10, frames=200)
        sock.settimeout(5.0)
        closed = False
        try:
            while not closed:  # the learner's READY command, then the end of the connection
                closed = sock.recv(4096) == b""
        except ConnectionResetError:
            closed = True
        sock.close()
        pump(server, lambda _: server.stats["guard:dropped_peer"] >= 1, 5.0)
        assert closed and server.stats["guard:dropped_peer"] == 1
    finally:
        server.close()


def _router_with_guard(per_peer: int, total: int) -> tuple[zmq.Context, zmq.Socket, InboundGuard]:
    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    router.linger = 0
    router.rcvhwm = 10_000  # the guard, not the HWM, must stop these peers
    guard = InboundGuard(router, per_peer_bytes=per_peer, total_bytes=total, curve=False)
    router.bind("tcp://127.0.0.1:0")
    return ctx, router, guard


def _wait(condition: Callable[[], bool], timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


@pytest.mark.parametrize("curve", [False, True])
def test_the_guard_accounts_exactly_what_libzmq_holds(curve: bool) -> None:
    ctx = zmq.Context()
    router, dealer = ctx.socket(zmq.ROUTER), ctx.socket(zmq.DEALER)
    if curve:
        server_public, server_secret = zmq.curve_keypair()
        router.curve_server, router.curve_secretkey = True, server_secret
        dealer.curve_serverkey = server_public
        dealer.curve_publickey, dealer.curve_secretkey = zmq.curve_keypair()
    guard = InboundGuard(router, per_peer_bytes=1 << 30, total_bytes=1 << 30, curve=curve)
    try:
        router.bind("tcp://127.0.0.1:0")
        dealer.connect(router.last_endpoint.decode())
        assert _wait(lambda: sum(guard.held().values()) > 0)
        handshake = sum(guard.held().values())  # greeting and handshake commands only
        sizes = [0, 1, 200, 222, 223, 255, 256, 5000, 70_000, 1 << 20]  # both ZMTP size forms
        for _ in range(20):
            dealer.send_multipart([b"x" * size for size in sizes])
        assert _wait(lambda: sum(guard.held().values()) > 20 * sum(sizes))  # queued: held
        for _ in range(20):
            assert router.poll(2000)
            frames, _ = recv_bounded(router, Limits(), extra_frames=1, guard=guard)
            assert frames is not None and len(frames) == 1 + len(sizes)
        assert sum(guard.held().values()) == handshake  # delivered: accounted to the byte
        assert handshake < HANDSHAKE_SLACK_BYTES
    finally:
        guard.close()
        ctx.destroy(linger=0)


def test_the_guard_drops_the_peer_that_holds_most_when_all_together_exceed_the_total() -> None:
    ctx, router, guard = _router_with_guard(per_peer=8 << 20, total=5 << 20)
    endpoint = router.last_endpoint.decode()
    small, large = ctx.socket(zmq.DEALER), ctx.socket(zmq.DEALER)
    try:
        for sock, messages in ((small, 2), (large, 4)):  # 2 MiB and 4 MiB, both under 8 MiB
            sock.connect(endpoint)
            for _ in range(messages):
                sock.send(b"x" * (1 << 20))
        assert _wait(lambda: guard.take_counts()["guard:dropped_peer_total"] == 1)
        assert _wait(lambda: 0 < sum(guard.held().values()) < 3 << 20)  # the small one stays
    finally:
        guard.close()
        ctx.destroy(linger=0)
