"""Learner server on loopback: handshake, ordering, duplicates, bad input, cursors, stats."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from pathlib import Path

import msgpack
import numpy as np
import pytest

from serl.transport.client import ActorClient
from serl.transport.codec import Limits, encode
from serl.transport.protocol import ChunkRejected, Handshake, HandshakeRefused, TransitionSpec
from serl.transport.server import LearnerServer
from serl.transport.sockets import InsecureBindError, bind_endpoint
from tests.transport.helpers import (
    CONFIG_HASH,
    IMAGE_SPEC,
    STATE_SPEC,
    RawPeer,
    Serving,
    file_creating_pickle,
    image_chunk,
    pump,
    pump_for,
    state_chunk,
)

pytestmark = pytest.mark.timeout(60)  # every test here may open sockets

MakeClient = Callable[..., ActorClient]


@pytest.mark.parametrize("host", ["0.0.0.0", "*", "192.168.1.10", "eth0", "[::]"])
def test_binding_a_non_loopback_address_without_keys_raises(host: str) -> None:
    with pytest.raises(InsecureBindError, match="CURVE keys.*insecure=True"):
        LearnerServer(STATE_SPEC, CONFIG_HASH, f"tcp://{host}:0")


@pytest.mark.timeout(10)
def test_binding_all_interfaces_is_allowed_with_the_insecure_flag() -> None:
    server = LearnerServer(
        STATE_SPEC, CONFIG_HASH, "tcp://0.0.0.0:0", "tcp://0.0.0.0:0", insecure=True
    )
    try:
        assert server.data_endpoint.startswith("tcp://0.0.0.0:")
        assert not server.data_endpoint.endswith(":0")
    finally:
        server.close()


@pytest.mark.timeout(10)
def test_port_zero_binds_a_free_port_on_loopback(server: LearnerServer) -> None:
    for endpoint in (server.data_endpoint, server.weights_endpoint):
        host, port = endpoint.removeprefix("tcp://").rsplit(":", 1)
        assert host == "127.0.0.1" and int(port) > 0


@pytest.mark.timeout(15)
def test_handshake_mismatch_is_refused_with_a_message_naming_the_difference(
    make_client: MakeClient,
) -> None:
    server = LearnerServer(IMAGE_SPEC, CONFIG_HASH)
    actor_spec = TransitionSpec(
        obs=dict(IMAGE_SPEC.obs) | {"wrist": ("uint8", (64, 64, 3))}, action=IMAGE_SPEC.action
    )
    try:
        client = make_client(server, spec=actor_spec, config_hash="91bc0000aaaa")
        with Serving(server) as serving, pytest.raises(HandshakeRefused) as info:
            client.wait_connected(5.0)
        text = str(info.value)
        assert "config hash differs: actor 91bc0000aaaa (the learner logs its own" in text
        assert "observation 'wrist' shape (128, 128, 3) vs (64, 64, 3)" in text
        assert serving.total.new_actors == []
        assert server.stats["handshake_refused"] == 1
        with pytest.raises(HandshakeRefused):
            client.send_chunk(image_chunk(n=2))
    finally:
        server.close()


@pytest.mark.timeout(15)
def test_chunks_arrive_once_in_order_and_are_acked(
    server: LearnerServer, make_client: MakeClient
) -> None:
    client = make_client(server)
    for seq in range(30):
        assert client.send_chunk(state_chunk(float(seq))) == seq
    got = pump(server, lambda total: len(total.chunks) == 30)
    assert [c.seq for c in got.chunks] == list(range(30))
    assert [float(c.obs["state"][0, 0]) for c in got.chunks] == [float(s) for s in range(30)]
    pump(server, lambda _: client.pending() == 0)
    counters = client.counters()
    assert counters["sent"] == counters["acked"] == counters["committed"] == 30
    assert server.stats["duplicates"] == 0
    assert server.cursors() == {"a0": {"0": 29}}


@pytest.mark.timeout(15)
def test_image_chunks_arrive_intact(make_client: MakeClient) -> None:
    server = LearnerServer(IMAGE_SPEC, CONFIG_HASH)
    try:
        client = make_client(server, spec=IMAGE_SPEC)
        sent = [image_chunk(n=4, seed=s) for s in range(3)]
        for chunk in sent:
            client.send_chunk(chunk)
        got = pump(server, lambda total: len(total.chunks) == 3)
        for chunk, arrays in zip(got.chunks, sent, strict=True):
            np.testing.assert_array_equal(chunk.obs["wrist"], arrays["obs/wrist"])
            assert chunk.next_obs is None
    finally:
        server.close()


@pytest.mark.timeout(10)
def test_chunk_from_an_actor_without_handshake_is_refused(server: LearnerServer) -> None:
    peer = RawPeer(server.data_endpoint)
    try:
        peer.send_message("chunk", {"seq": 0, "conn": 4}, state_chunk(0.0))
        reply = peer.recv(server)
        assert reply is not None and reply.kind == "need_hello" and reply.fields["conn"] == 4
        assert server.stats["no_session"] == 1 and server.stats["chunks"] == 0
    finally:
        peer.close()


@pytest.mark.timeout(10)
def test_duplicate_chunk_is_dropped_and_acked_again(server: LearnerServer) -> None:
    peer = RawPeer(server.data_endpoint)
    try:
        peer.hello()
        assert peer.recv(server).kind == "welcome"
        chunks = []
        for _ in range(2):
            peer.send_message("chunk", {"seq": 0, "conn": 1}, state_chunk(0.0))
            ack = peer.recv(server)
            assert ack.kind == "ack" and ack.fields["seq"] == 0 and ack.fields["cursor"] == 0
        chunks = pump_for(server, 0.1).chunks
        assert chunks == []  # the first copy was returned by the polls inside recv()
        assert server.stats["chunks"] == 1 and server.stats["duplicates"] == 1
    finally:
        peer.close()


@pytest.mark.timeout(10)
def test_a_gap_in_seqs_is_not_accepted_and_asks_for_a_resync(server: LearnerServer) -> None:
    peer = RawPeer(server.data_endpoint)
    try:
        peer.hello()
        assert peer.recv(server).kind == "welcome"
        peer.send_message("chunk", {"seq": 2, "conn": 1}, state_chunk(2.0))
        assert peer.recv(server).kind == "need_hello"
        assert server.stats["gaps"] == 1 and server.stats["chunks"] == 0
    finally:
        peer.close()


@pytest.mark.timeout(10)
def test_chunk_with_nan_is_rejected_at_ingestion_and_the_stream_goes_on(
    server: LearnerServer,
) -> None:
    peer = RawPeer(server.data_endpoint)
    try:
        peer.hello()
        assert peer.recv(server).kind == "welcome"
        bad = state_chunk(0.0)
        bad["obs/state"][1, 1] = np.nan
        peer.send_message("chunk", {"seq": 0, "conn": 1}, bad)
        got = pump(server, lambda total: server.stats["rejected:non_finite"] == 1)
        ack = peer.recv(server)
        assert ack.kind == "ack" and ack.fields["rejected"] == "non_finite"
        inf = state_chunk(1.0)
        inf["reward"][0] = np.inf
        peer.send_message("chunk", {"seq": 1, "conn": 1}, inf)
        peer.send_message("chunk", {"seq": 2, "conn": 1}, state_chunk(2.0))
        got = pump(server, lambda total: len(total.chunks) == 1, into=got)
        assert [c.seq for c in got.chunks] == [2]
        assert server.stats["rejected:non_finite"] == 2
    finally:
        peer.close()


@pytest.mark.timeout(10)
def test_client_refuses_a_nan_chunk_before_it_leaves(
    server: LearnerServer, make_client: MakeClient
) -> None:
    client = make_client(server)
    bad = state_chunk(0.0)
    bad["action"][0, 0] = np.nan
    with pytest.raises(ChunkRejected, match="non_finite.*action"):
        client.send_chunk(bad)
    assert client.pending() == 0


def _header(kind: str, arrays: list[dict]) -> bytes:
    return msgpack.packb({"kind": kind, "fields": {"seq": 0}, "arrays": arrays})


@pytest.mark.timeout(30)
def test_bad_input_is_counted_and_dropped_and_a_good_client_is_still_served(
    tmp_path: Path, make_client: MakeClient
) -> None:
    limits = Limits(max_message_bytes=2**20)
    server = LearnerServer(STATE_SPEC, CONFIG_HASH, limits=limits)
    marker = tmp_path / "pwned"
    payload = file_creating_pickle(marker, proto=True)
    host, port = server.data_endpoint.removeprefix("tcp://").rsplit(":", 1)
    attacker = RawPeer(server.data_endpoint)
    silent = RawPeer(server.data_endpoint)  # connects and never speaks
    silent_tcp = socket.create_connection((host, int(port)))
    garbage_tcp = socket.create_connection((host, int(port)))
    try:
        good = encode("chunk", {"seq": 0, "conn": 1}, state_chunk(0.0))
        attacker.send([b"\x93\xc1\xff\x00 not msgpack at all"])
        attacker.send([payload])
        attacker.send([encode("x")[0], payload])  # pickle as an array frame, no entry
        object_array = [{"name": "a", "dtype": "object", "shape": [1]}]
        attacker.send([_header("chunk", object_array), payload])
        attacker.send([*good[:-1], bytes(good[-1])[:-1]])  # truncated last frame
        lying = [{"name": "obs/state", "dtype": "float32", "shape": [32, 17]}]
        attacker.send([_header("chunk", lying), np.zeros((2, 17), np.float32).tobytes()])
        attacker.send(encode("launch_missiles", {"now": True}))
        attacker.send([b"x" * 600_000, b"y" * 600_000])  # each frame fits, the sum does not
        attacker.send([b"\x80"] * 200)
        pump_for(server, 0.5)
        assert not marker.exists()
        expected = {
            "dropped:bad_msgpack": 2,
            "dropped:frame_count_mismatch": 1,
            "dropped:bad_dtype": 1,
            "dropped:frame_size_mismatch": 2,
            "dropped:unknown_kind": 1,
            "dropped:oversized": 1,
            "dropped:too_many_frames": 1,
        }
        assert {k: server.stats[k] for k in expected} == expected

        # Raw bytes on the TCP port (not ZMTP): libzmq either fails the handshake or, taking
        # it for an old ZMTP/1.0 peer, frames it into messages that fail decoding.
        before = sum(server.stats.values())
        garbage_tcp.sendall(b"GET / HTTP/1.1\r\n\r\n" + bytes(range(256)) * 4)
        pump_for(server, 0.3)
        assert server.stats["chunks"] == 0 and sum(server.stats.values()) > before

        disconnects = server.stats["zmq:disconnected"]
        oversized = RawPeer(server.data_endpoint)
        oversized.send([b"z" * (2**20 + 1)])  # over ZMQ_MAXMSGSIZE: libzmq drops the peer
        pump(server, lambda _: server.stats["zmq:disconnected"] > disconnects, 3.0)
        assert server.stats["zmq:disconnected"] > disconnects
        oversized.close()

        client = make_client(server, actor_id="good")
        for seq in range(5):
            client.send_chunk(state_chunk(float(seq)))
        got = pump(server, lambda total: len(total.chunks) == 5)
        assert [(c.actor_id, c.seq) for c in got.chunks] == [("good", s) for s in range(5)]
        assert server.stats["handshakes"] == 1
        assert server.live_actors() == [("good", 0)]
        assert not marker.exists()
    finally:
        for peer in (attacker, silent):
            peer.close()
        silent_tcp.close()
        garbage_tcp.close()
        server.close()


@pytest.mark.timeout(10)
def test_episode_stats_reach_poll(server: LearnerServer, make_client: MakeClient) -> None:
    client = make_client(server)
    client.send_episode_stats({"return": 12.5, "length": 200, "success": True})
    got = pump(server, lambda total: len(total.episode_stats) == 1)
    assert got.episode_stats[0].actor_id == "a0"
    assert got.episode_stats[0].stats == {"return": 12.5, "length": 200, "success": True}
    assert [a.actor_id for a in got.new_actors] == ["a0"]


@pytest.mark.timeout(15)
def test_cursors_survive_json_and_make_a_new_server_drop_old_seqs(
    server: LearnerServer,
) -> None:
    peer = RawPeer(server.data_endpoint)
    try:
        peer.hello(actor_id="robot-0")
        assert peer.recv(server).kind == "welcome"
        for seq in range(3):
            peer.send_message("chunk", {"seq": seq, "conn": 1}, state_chunk(float(seq)))
        pump(server, lambda _: server.stats["chunks"] == 3)
        saved = json.loads(json.dumps(server.cursors()))
        assert saved == {"robot-0": {"0": 2}}
    finally:
        peer.close()
    restarted = LearnerServer(STATE_SPEC, CONFIG_HASH, durable=True)
    restarted.load_cursors(saved)
    peer = RawPeer(restarted.data_endpoint)
    try:
        peer.hello(actor_id="robot-0")
        welcome = peer.recv(restarted)
        assert welcome.fields["cursor"] == 2 and welcome.fields["committed"] == 2
        peer.send_message("chunk", {"seq": 2, "conn": 1}, state_chunk(2.0))
        peer.send_message("chunk", {"seq": 3, "conn": 1}, state_chunk(3.0))
        got = pump(restarted, lambda total: len(total.chunks) == 1)
        assert [c.seq for c in got.chunks] == [3]
        assert restarted.stats["duplicates"] == 1
    finally:
        peer.close()
        restarted.close()


@pytest.mark.timeout(10)
def test_durable_server_commits_only_what_was_checkpointed(server: LearnerServer) -> None:
    durable = LearnerServer(STATE_SPEC, CONFIG_HASH, durable=True)
    peer = RawPeer(durable.data_endpoint)
    try:
        peer.hello()
        assert peer.recv(durable).kind == "welcome"
        peer.send_message("chunk", {"seq": 0, "conn": 1}, state_chunk(0.0))
        ack = peer.recv(durable)
        assert (ack.fields["cursor"], ack.fields["committed"]) == (0, -1)
        snapshot = durable.cursors()
        peer.send_message("chunk", {"seq": 1, "conn": 1}, state_chunk(1.0))
        assert peer.recv(durable).fields["cursor"] == 1
        durable.commit(snapshot)
        commit = peer.recv(durable)
        assert commit.kind == "commit" and commit.fields["committed"] == 0
    finally:
        peer.close()
        durable.close()


@pytest.mark.timeout(5)
def test_client_that_never_connects_times_out_with_a_hint(make_client: MakeClient) -> None:
    server = LearnerServer(STATE_SPEC, CONFIG_HASH)
    server.close()  # nobody is listening at these endpoints any more
    client = make_client(server)
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="no answer from the learner"):
        client.wait_connected(0.3)
    assert time.monotonic() - started < 2.0


@pytest.mark.timeout(10)
def test_chunks_the_actor_no_longer_holds_are_counted_lost_and_skipped() -> None:
    # The learner resumed from a checkpoint older than the commit that let the actor
    # forget seqs 0..4: without the skip, seq 5 would be a gap forever.
    server = LearnerServer(STATE_SPEC, CONFIG_HASH, durable=True)
    server.load_cursors({"raw": {"0": 1}})
    peer = RawPeer(server.data_endpoint)
    try:
        peer.hello(first_seq=5)
        welcome = peer.recv(server)
        assert welcome.fields["cursor"] == 4
        assert server.stats["lost_chunks"] == 3
        peer.send_message("chunk", {"seq": 5, "conn": 1}, state_chunk(5.0))
        got = pump(server, lambda total: len(total.chunks) == 1)
        assert [c.seq for c in got.chunks] == [5]
    finally:
        peer.close()
        server.close()


@pytest.mark.timeout(10)
@pytest.mark.parametrize("first_seq", [10**15, 2**63 - 1])
def test_a_forged_hello_cannot_move_a_live_actors_cursor(first_seq: int) -> None:
    # Issue 18: a hello reusing a live actor's identity with a huge first_seq moved the cursor
    # to ~1e15, and nothing of the real actor's reached the buffer again.
    server = LearnerServer(STATE_SPEC, CONFIG_HASH, durable=True)
    actor, forger = RawPeer(server.data_endpoint), RawPeer(server.data_endpoint)
    try:
        actor.hello()
        assert actor.recv(server).kind == "welcome"
        actor.send_message("chunk", {"seq": 0, "conn": 1}, state_chunk(0.0))
        pump(server, lambda total: len(total.chunks) == 1)
        forger.hello(first_seq=first_seq)
        refused = forger.recv(server)
        assert refused.kind == "refused" and "first_seq" in refused.fields["reason"]
        assert server.stats["lost_chunks"] == 0
        actor.send_message("chunk", {"seq": 1, "conn": 1}, state_chunk(1.0))
        got = pump(server, lambda total: len(total.chunks) == 1)
        assert [c.seq for c in got.chunks] == [1]
    finally:
        actor.close()
        forger.close()
        server.close()


@pytest.mark.timeout(10)
def test_an_implausible_skip_on_a_first_hello_is_refused() -> None:
    server = LearnerServer(STATE_SPEC, CONFIG_HASH, durable=True)
    server.load_cursors({"raw": {"0": 1}})
    peer = RawPeer(server.data_endpoint)
    try:
        peer.hello(first_seq=2**63 - 1)
        refused = peer.recv(server)
        assert refused.kind == "refused" and "implausible" in refused.fields["reason"]
        assert server.stats["lost_chunks"] == 0
        peer.hello(first_seq=2)  # the honest skip after a resume still works
        assert peer.recv(server).fields["cursor"] == 1
    finally:
        peer.close()
        server.close()


@pytest.mark.parametrize(
    "endpoint", ["tipc://{5560,0}", "vmci://1:5560", "ws://0.0.0.0:5560", "TCP://0.0.0.0:5560"]
)
def test_transports_other_machines_can_reach_need_keys_like_tcp(endpoint: str) -> None:
    with pytest.raises(InsecureBindError, match="without CURVE keys"):
        bind_endpoint(endpoint, secure=False, insecure=False)
    assert bind_endpoint(endpoint, secure=True, insecure=False) == endpoint


@pytest.mark.parametrize("endpoint", ["ipc:///tmp/serl-learner.sock", "inproc://learner"])
def test_local_transports_bind_without_keys(endpoint: str) -> None:
    assert bind_endpoint(endpoint, secure=False, insecure=False) == endpoint


@pytest.mark.timeout(15)
def test_a_refused_peer_is_not_shown_the_learners_config_hash() -> None:
    server = LearnerServer(STATE_SPEC, CONFIG_HASH)
    peer = RawPeer(server.data_endpoint)
    try:
        peer.send_message(
            "hello",
            Handshake("0000aaaa1111bbbb", STATE_SPEC, actor_id="stranger").to_fields()
            | {"conn": 1, "weights_version": -1, "first_seq": 0},
        )
        reply = peer.recv(server)
        assert reply is not None and reply.kind == "refused"
        assert "config hash differs" in reply.fields["reason"]
        assert CONFIG_HASH[:4] not in reply.fields["reason"]  # not even its first digits
        assert server.stats["handshake_refused"] == 1
    finally:
        peer.close()
        server.close()


def test_an_actor_silent_past_live_after_s_is_not_live_until_it_speaks_again(
    make_client: MakeClient,
) -> None:
    """What the learner's `learner/actors_live` shows while a robot PC's link is down."""
    now = [0.0]
    server = LearnerServer(STATE_SPEC, CONFIG_HASH, live_after_s=3.0, clock=lambda: now[0])
    try:
        make_client(server, "robot-0")
        pump(server, lambda total: bool(total.new_actors), 5.0)
        assert server.live_actors() == [("robot-0", 0)]
        now[0] += 3.5  # the link is down: nothing heard for 3.5 s
        assert server.live_actors() == []
        server.poll(0)  # the periodic check logs it once
        assert server.stats["actor_went_silent"] == 1
        pump(server, lambda _: bool(server.live_actors()), 5.0)  # its next ping
        assert server.live_actors() == [("robot-0", 0)]
    finally:
        server.close()
