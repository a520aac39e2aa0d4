"""Weights path: versions, newest-only on the actor, late joiners, refusal of NaN weights."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np
import pytest

from serl.transport.client import ActorClient
from serl.transport.server import LearnerServer
from tests.transport.helpers import (
    CONFIG_HASH,
    STATE_SPEC,
    RawPeer,
    Serving,
    free_port,
    pump,
    pump_for,
)

pytestmark = pytest.mark.timeout(60)  # every test here may open sockets

MakeClient = Callable[..., ActorClient]


def _policy(version: int) -> dict[str, np.ndarray]:
    """About 300 KB of float32, every value equal to the version."""
    return {
        "trunk.0.weight": np.full((256, 256), version, np.float32),
        "trunk.0.bias": np.full(256, version, np.float32),
        "head.weight": np.full((12, 256), version, np.float32),
    }


@pytest.mark.timeout(15)
def test_actor_keeps_only_the_newest_version(
    server: LearnerServer, make_client: MakeClient
) -> None:
    client = make_client(server)
    pump(server, lambda _: client.connected)
    seen: list[int] = []
    done = threading.Event()

    def watch() -> None:  # an actor loop swapping weights in between control steps
        version = -1
        while not done.is_set():
            weights = client.latest_weights(newer_than=version)
            if weights is not None:
                version = weights.version
                seen.append(version)
                assert float(weights.tensors["trunk.0.bias"][0]) == version
            time.sleep(0.001)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        for version in range(1, 21):
            server.publish_weights(version, _policy(version))
            server.poll(2)
        pump(server, lambda _: bool(seen) and seen[-1] == 20, 5.0)
    finally:
        done.set()
        watcher.join()
    assert seen[-1] == 20
    assert seen == sorted(set(seen))  # never an older version after a newer one
    assert client.latest_weights(newer_than=20) is None


@pytest.mark.timeout(10)
def test_late_joiner_receives_the_current_weights_promptly(
    server: LearnerServer, make_client: MakeClient
) -> None:
    for version in (1, 2, 3):
        server.publish_weights(version, _policy(version))
    with Serving(server):
        client = make_client(server, actor_id="late")
        started = time.monotonic()
        weights = client.wait_for_weights(timeout_s=3.0)
        elapsed = time.monotonic() - started
    assert weights.version == 3
    np.testing.assert_array_equal(weights.tensors["head.weight"], _policy(3)["head.weight"])
    assert elapsed < 1.0


@pytest.mark.timeout(10)
def test_an_actor_that_missed_a_publish_catches_up(
    server: LearnerServer, make_client: MakeClient
) -> None:
    # The SUB points where nobody publishes, so every PUB message is missed; the pongs
    # report the newer version and the actor asks for it on the data socket.
    client = make_client(server, weights_endpoint=f"tcp://127.0.0.1:{free_port()}")
    pump(server, lambda _: client.connected)
    server.publish_weights(1, _policy(1))
    pump(server, lambda _: client.latest_weights() is not None, 5.0)
    assert client.latest_weights().version == 1
    assert server.stats["weights_sent_on_request"] == 1


@pytest.mark.timeout(10)
def test_weights_with_nan_are_refused_and_the_old_policy_stays(
    server: LearnerServer, make_client: MakeClient
) -> None:
    client = make_client(server)
    server.publish_weights(1, _policy(1))
    pump(server, lambda _: client.latest_weights() is not None)
    poisoned = _policy(2)
    poisoned["head.weight"][3, 3] = np.nan
    server.publish_weights(2, poisoned)
    pump(server, lambda _: client.counters().get("weights_rejected", 0) > 0, 3.0)
    assert client.counters()["weights_rejected"] >= 1
    assert client.latest_weights().version == 1


@pytest.mark.timeout(5)
def test_weight_versions_must_increase(server: LearnerServer) -> None:
    server.publish_weights(5, _policy(5))
    with pytest.raises(ValueError, match="version 5 is not newer than the published 5"):
        server.publish_weights(5, _policy(5))


@pytest.mark.timeout(10)
def test_publish_copies_the_tensors_so_training_can_go_on(
    server: LearnerServer, make_client: MakeClient
) -> None:
    client = make_client(server)
    pump(server, lambda _: client.connected)
    params = _policy(1)
    server.publish_weights(1, params)
    params["trunk.0.bias"][:] = -1.0  # the optimizer steps right after publishing
    pump(server, lambda _: client.latest_weights() is not None, 5.0)
    assert float(client.latest_weights().tensors["trunk.0.bias"][0]) == 1.0


@pytest.mark.timeout(10)
def test_weights_request_is_answered_on_the_data_socket(server: LearnerServer) -> None:
    server.publish_weights(7, _policy(7))
    peer = RawPeer(server.data_endpoint)
    try:
        peer.hello(weights_version=7)  # already current: no weights after the welcome
        welcome = peer.recv(server)
        assert welcome.kind == "welcome" and welcome.fields["weights_version"] == 7
        peer.send_message("weights_request", {"have": 3, "conn": 1})
        reply = peer.recv(server)
        assert reply.kind == "weights" and reply.fields["version"] == 7
        assert reply.arrays["trunk.0.weight"].shape == (256, 256)
    finally:
        peer.close()


@pytest.mark.timeout(20)
def test_a_peer_that_never_reads_gets_one_weights_message_then_is_disconnected() -> None:
    now = [0.0]
    server = LearnerServer(
        STATE_SPEC, CONFIG_HASH, weights_unread_timeout_s=30.0, clock=lambda: now[0]
    )
    peer = RawPeer(server.data_endpoint, rcvhwm=1, rcvbuf=4096)
    big = {"w": np.ones(4 << 20, np.float32)}  # 16 MiB: more than the sockets' buffers
    try:
        server.publish_weights(1, big)
        peer.hello(weights_version=-1)  # the welcome brings version 1, which it never reads
        pump_for(server, 0.5)
        for version in range(2, 6):
            server.publish_weights(version, big)
            peer.send_message("weights_request", {"have": -1, "conn": 1})
            pump_for(server, 0.2)
        assert server.stats["weights_sent_on_request"] == 0  # one unread message, no more
        assert server.stats["weights_deferred:unread"] == 4
        now[0] = 31.0
        pump(server, lambda _: server.stats["zmq:disconnected"] >= 1, 5.0)
        assert server.stats["dropped:unread_weights"] == 1
        assert server.stats["guard:disconnected"] == 1 and server.stats["zmq:disconnected"] >= 1
        assert server.live_actors() == []
    finally:
        peer.close()
        server.close()
