"""Actor client: reconnects, incarnations, flushing on close."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import pytest

from serl.transport.client import ActorClient
from serl.transport.server import LearnerServer
from tests.transport.helpers import CONFIG_HASH, STATE_SPEC, pump, state_chunk

pytestmark = pytest.mark.timeout(60)  # every test here may open sockets

MakeClient = Callable[..., ActorClient]


@pytest.mark.timeout(20)
def test_a_silent_learner_makes_the_actor_reconnect_and_nothing_is_lost_or_doubled(
    server: LearnerServer, make_client: MakeClient
) -> None:
    client = make_client(server)
    for seq in range(3):
        client.send_chunk(state_chunk(float(seq)))
    got = pump(server, lambda total: len(total.chunks) == 3)
    time.sleep(2.2)  # the learner stops polling for longer than silence_timeout_s (1.5 s)
    assert client.counters()["reconnects"] >= 1
    for seq in range(3, 8):
        client.send_chunk(state_chunk(float(seq)))
    got = pump(server, lambda total: len(total.chunks) == 8, into=got)
    pump(server, lambda _: client.pending() == 0)
    assert [c.seq for c in got.chunks] == list(range(8))
    assert client.pending() == 0
    assert server.live_actors() == [("a0", 0)]


@pytest.mark.timeout(15)
def test_a_new_incarnation_starts_its_own_seqs(
    server: LearnerServer, make_client: MakeClient
) -> None:
    first = make_client(server, actor_id="robot-0", incarnation=0)
    first.send_chunk(state_chunk(0.0))
    first.send_chunk(state_chunk(1.0))
    got = pump(server, lambda total: len(total.chunks) == 2)
    first.close(timeout_s=0.0)  # the actor process died
    second = make_client(server, actor_id="robot-0", incarnation=1)
    second.send_chunk(state_chunk(10.0))
    got = pump(server, lambda total: len(total.chunks) == 3, into=got)
    assert [(c.incarnation, c.seq) for c in got.chunks] == [(0, 0), (0, 1), (1, 0)]
    assert [(a.actor_id, a.incarnation, a.cursor) for a in got.new_actors] == [
        ("robot-0", 0, -1),
        ("robot-0", 1, -1),
    ]
    assert server.cursors() == {"robot-0": {"0": 1, "1": 0}}


@pytest.mark.timeout(10)
def test_close_reports_whether_everything_was_committed(
    server: LearnerServer, make_client: MakeClient
) -> None:
    client = make_client(server)
    client.send_chunk(state_chunk(0.0))
    assert client.close(timeout_s=0.2) is False  # nobody polled the learner
    with pytest.raises(RuntimeError, match="closed"):
        client.send_chunk(state_chunk(1.0))
    other = make_client(server, actor_id="a1")
    other.send_chunk(state_chunk(0.0))
    pump(server, lambda _: other.pending() == 0)
    assert other.close(timeout_s=1.0) is True


@pytest.mark.timeout(10)
def test_close_calls_chunks_the_learner_holds_normal_and_unacknowledged_ones_lost(
    make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    durable = LearnerServer(STATE_SPEC, CONFIG_HASH, durable=True)  # commits at checkpoints
    try:
        client = make_client(durable)
        client.send_chunk(state_chunk(0.0))
        pump(durable, lambda total: len(total.chunks) == 1)  # received and acked, not committed
        with caplog.at_level(logging.INFO, logger="serl.transport.client"):
            assert client.close(timeout_s=0.2) is False
        [record] = [r for r in caplog.records if "closed" in r.getMessage()]
        assert record.levelno == logging.INFO
        assert "the learner holds the last 1 chunks" in record.getMessage()
    finally:
        durable.close()
    caplog.clear()
    server = LearnerServer(STATE_SPEC, CONFIG_HASH)
    try:
        lost = make_client(server, actor_id="a1")
        lost.send_chunk(state_chunk(0.0))
        lost.close(timeout_s=0.2)  # nobody polled: never acknowledged
    finally:
        server.close()
    [record] = [r for r in caplog.records if "closed" in r.getMessage()]
    assert record.levelno == logging.WARNING
    assert "1 chunks the learner never acknowledged" in record.getMessage()


@pytest.mark.timeout(10)
def test_unknown_chunk_names_are_refused_on_the_actor_side(
    server: LearnerServer, make_client: MakeClient
) -> None:
    client = make_client(server)
    with pytest.raises(ValueError, match="unknown_array"):
        client.send_chunk(state_chunk(0.0) | {"image": state_chunk(0.0)["obs/state"]})


@pytest.mark.timeout(10)
def test_default_incarnation_changes_with_every_actor_start(server: LearnerServer) -> None:
    incarnations = []
    for _ in range(2):
        client = ActorClient(
            server.data_endpoint, server.weights_endpoint, STATE_SPEC, CONFIG_HASH, "robot-0"
        )
        incarnations.append(client.handshake.incarnation)
        client.close(timeout_s=0.0)
        time.sleep(0.002)
    assert incarnations[1] > incarnations[0] > 0
