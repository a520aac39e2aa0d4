"""Bad input on a training learner's ports: counted, dropped, never fatal, memory bounded.

One learner process (with a 1 MiB message cap, which it lowers for Pendulum's small transitions
to the largest chunk the protocol allows: about 300 KiB, and 64 KiB per frame) trains on one
actor's stream for the whole module; each test throws one kind of bad input at its data port
and checks that the learner counted and dropped it and that its update count keeps rising.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import msgpack
import numpy as np
import pytest

from serl.transport.codec import encode
from tests.learner_procs import (
    Procs,
    actor_config,
    endpoints,
    latest,
    learner_config,
    records,
    rss_mb,
    wait_until,
)
from tests.transport.helpers import RawPeer, file_creating_pickle

pytestmark = pytest.mark.timeout(60)

CAP_MB = 1.0


class Training:
    """The running learner: its run dir, data endpoint and process id."""

    def __init__(self, procs: Procs, run: Path, endpoint: str) -> None:
        self.procs = procs
        self.run = run
        self.endpoint = endpoint
        self.pid = procs.procs["learner"].pid

    def counter(self, name: str) -> float:
        return latest(self.run, f"transport/{name}", 0.0)

    def dropped(self) -> float:
        """All messages dropped for any reason so far."""
        last: dict[str, float] = {}
        for record in records(self.run):
            last |= {k: v for k, v in record.items() if k.startswith("transport/dropped/")}
        return sum(last.values())

    def cut_off(self) -> float:
        """Connections the inbound guard shut because libzmq held too much of theirs."""
        last: dict[str, float] = {}
        for record in records(self.run):
            last |= {k: v for k, v in record.items() if k.startswith("transport/guard/dropped")}
        return sum(last.values())

    def updates(self) -> float:
        return latest(self.run, "learner/updates", 0.0)

    def wait_counter(self, name: str, at_least: float) -> None:
        wait_until(
            lambda: self.counter(name) >= at_least,
            15,
            f"transport/{name} >= {at_least}",
            lambda: self.procs.log("learner"),
        )

    def assert_still_training(self, before: float) -> None:
        wait_until(lambda: self.updates() > before + 5, 20, "updates to keep rising")
        assert self.procs.procs["learner"].poll() is None


@pytest.fixture(scope="module")
def training(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Training]:
    root = tmp_path_factory.mktemp("bad_input")
    procs = Procs(root)
    ports = endpoints()
    run = root / "run"
    try:
        cfg = learner_config(run, ports, max_message_mb=CAP_MB, checkpoint_every_s=1e9)
        procs.start("learner", "learner", cfg)
        procs.start("actor", "actor", actor_config(ports, "actor-0", control_hz=100.0))
        wait_until(
            lambda: latest(run, "learner/updates") > 10,
            60,
            "the learner to train",
            lambda: procs.log("learner") + procs.log("actor"),
        )
        yield Training(procs, run, f"tcp://127.0.0.1:{ports[0]}")
    finally:
        procs.kill_all()


@pytest.fixture
def peer(training: Training) -> Iterator[RawPeer]:
    raw = RawPeer(training.endpoint)
    yield raw
    raw.close()


def _header(arrays: list[dict]) -> bytes:
    return msgpack.packb({"kind": "chunk", "fields": {"seq": 0, "conn": 1}, "arrays": arrays})


def test_random_bytes_are_counted_and_dropped(training: Training, peer: RawPeer) -> None:
    before, updates = training.counter("dropped/bad_msgpack"), training.updates()
    rng = np.random.default_rng(0)
    for _ in range(10):
        peer.send([b"\xc1" + rng.bytes(500)])  # 0xc1 is never valid msgpack
    training.wait_counter("dropped/bad_msgpack", before + 10)
    training.assert_still_training(updates)


def test_a_truncated_message_is_counted_and_dropped(training: Training, peer: RawPeer) -> None:
    before, updates = training.counter("dropped/frame_size_mismatch"), training.updates()
    frames = encode("chunk", {"seq": 0, "conn": 1}, {"reward": np.zeros(64, np.float32)})
    peer.send([frames[0], bytes(frames[1])[:-7]])
    training.wait_counter("dropped/frame_size_mismatch", before + 1)
    training.assert_still_training(updates)


def test_a_header_lying_about_shapes_or_dtypes_is_counted_and_dropped(
    training: Training, peer: RawPeer
) -> None:
    size_before = training.counter("dropped/frame_size_mismatch")
    dtype_before = training.counter("dropped/bad_dtype")
    updates = training.updates()
    payload = np.zeros((2, 3), np.float32).tobytes()
    peer.send([_header([{"name": "obs/state", "dtype": "float32", "shape": [4096, 3]}]), payload])
    peer.send([_header([{"name": "obs/state", "dtype": "object", "shape": [2, 3]}]), payload])
    training.wait_counter("dropped/frame_size_mismatch", size_before + 1)
    training.wait_counter("dropped/bad_dtype", dtype_before + 1)
    training.assert_still_training(updates)


def test_an_oversized_message_is_dropped_unread(training: Training, peer: RawPeer) -> None:
    before = training.counter("zmq/disconnected") + training.counter("dropped/oversized")
    updates = training.updates()
    peer.send([b"z" * int(CAP_MB * 2**20 + 1)])  # over ZMQ_MAXMSGSIZE: libzmq drops the peer
    wait_until(
        lambda: (
            training.counter("zmq/disconnected") + training.counter("dropped/oversized") > before
        ),
        15,
        "the oversized peer to be dropped",
    )
    training.assert_still_training(updates)


def test_a_pickle_payload_is_never_unpickled(
    training: Training, peer: RawPeer, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    payload = file_creating_pickle(marker, proto=True)
    before, updates = training.counter("dropped/bad_msgpack"), training.updates()
    peer.send([payload])
    peer.send([_header([{"name": "obs/state", "dtype": "object", "shape": [1]}]), payload])
    training.wait_counter("dropped/bad_msgpack", before + 1)
    training.assert_still_training(updates)
    assert not marker.exists()


def test_clients_that_connect_and_never_speak_do_not_stop_training(
    training: Training,
) -> None:
    host, port = training.endpoint.removeprefix("tcp://").rsplit(":", 1)
    updates = training.updates()
    silent = [RawPeer(training.endpoint) for _ in range(20)]
    sockets = [socket.create_connection((host, int(port))) for _ in range(20)]
    try:
        training.assert_still_training(updates)
    finally:
        for raw in silent:
            raw.close()
        for sock in sockets:
            sock.close()


def test_memory_stays_bounded_under_a_flood_of_bad_messages(training: Training) -> None:
    rss_before = rss_mb(training.pid)
    dropped_before, cut_before = training.dropped(), training.cut_off()
    updates = training.updates()
    garbage = b"\xc1" + np.random.default_rng(1).bytes(60_000)  # under the 64 KiB frame cap
    peers = [RawPeer(training.endpoint) for _ in range(5)]
    try:
        for raw in peers:  # 5 peers x 900 messages of 60 kB = 270 MB of garbage
            for _ in range(900):
                raw.send([garbage])
        # Each message is read and dropped, unless the learner falls behind (a busy machine)
        # and the inbound guard cuts a flooding peer off for what libzmq holds of it.
        wait_until(
            lambda: training.dropped() >= dropped_before + 4500 or training.cut_off() > cut_before,
            30,
            "4500 drops or a flooding peer cut off",
        )
    finally:
        for raw in peers:
            raw.close()
    training.assert_still_training(updates)
    growth = rss_mb(training.pid) - rss_before
    assert growth < 64, f"learner RSS grew by {growth:.0f} MiB while dropping 270 MiB"
    assert training.procs.procs["learner"].poll() is None
