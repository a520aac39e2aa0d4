"""The actor's bounded outbox: spill to disk (real robot) or block (simulator), never drop."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from serl.transport.client import ActorClient
from serl.transport.server import LearnerServer
from tests.transport.helpers import (
    CONFIG_HASH,
    FAST_CLIENT,
    STATE_SPEC,
    Serving,
    free_port,
    pump,
    state_chunk,
)

pytestmark = pytest.mark.timeout(60)  # every test here may open sockets

MakeClient = Callable[..., ActorClient]


@pytest.mark.timeout(20)
def test_chunks_spill_to_disk_while_the_learner_is_absent_and_all_arrive_later(
    tmp_path: Path,
) -> None:
    data, weights = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    spill_dir = tmp_path / "spill"
    client = ActorClient(
        data,
        weights,
        STATE_SPEC,
        CONFIG_HASH,
        "robot-0",
        3,
        outbox_limit=2,
        spill_dir=spill_dir,
        **FAST_CLIENT,
    )
    server = None
    try:
        for seq in range(12):
            client.send_chunk(state_chunk(float(seq)), timeout_s=0.0)  # never waits
        assert client.counters()["spilled"] == 10
        assert len(list(spill_dir.glob("*.npz"))) == 10

        server = LearnerServer(STATE_SPEC, CONFIG_HASH, data, weights, durable=True)
        got = pump(server, lambda total: len(total.chunks) == 12, 10.0)
        assert [(c.actor_id, c.incarnation, c.seq) for c in got.chunks] == [
            ("robot-0", 3, s) for s in range(12)
        ]
        for seq, chunk in enumerate(got.chunks):
            np.testing.assert_array_equal(
                chunk.arrays["obs/state"], state_chunk(float(seq))["obs/state"]
            )
        server.commit()
        pump(server, lambda _: client.pending() == 0, 5.0)
        assert client.pending() == 0
        assert list(spill_dir.glob("*")) == []  # committed chunks leave the disk
        assert server.stats["chunks"] == 12 and server.stats["duplicates"] == 0
    finally:
        client.close(timeout_s=0.0)
        if server is not None:
            server.close()


@pytest.mark.timeout(10)
def test_a_full_outbox_blocks_the_simulator_instead_of_dropping() -> None:
    data, weights = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    client = ActorClient(
        data, weights, STATE_SPEC, CONFIG_HASH, "sim-0", outbox_limit=2, **FAST_CLIENT
    )
    try:
        client.send_chunk(state_chunk(0.0))
        client.send_chunk(state_chunk(1.0))
        with pytest.raises(TimeoutError, match="outbox full"):
            client.send_chunk(state_chunk(2.0), timeout_s=0.2)
        assert client.pending() == 2
    finally:
        client.close(timeout_s=0.0)


@pytest.mark.timeout(15)
def test_a_blocked_simulator_goes_on_as_the_learner_takes_chunks(
    server: LearnerServer, make_client: MakeClient
) -> None:
    client = make_client(server, outbox_limit=2)
    with Serving(server) as serving:
        seqs = [client.send_chunk(state_chunk(float(seq)), timeout_s=5.0) for seq in range(20)]
        client.close(timeout_s=5.0)
    assert seqs == list(range(20))
    assert [c.seq for c in serving.total.chunks] == list(range(20))


def test_an_actor_starting_deletes_its_half_written_spill_files(tmp_path: Path) -> None:
    ours = tmp_path / "robot-0-17-000000000003.tmp.npz"  # killed inside np.savez
    theirs = tmp_path / "robot-1-17-000000000003.tmp.npz"  # another actor's, maybe writing
    for path in (ours, theirs):
        path.write_bytes(bytes(1 << 20))
    client = ActorClient(
        "tcp://127.0.0.1:1", "tcp://127.0.0.1:2", STATE_SPEC, CONFIG_HASH, "robot-0",
        spill_dir=tmp_path,
    )  # fmt: skip
    client.close(timeout_s=0.0)
    assert not ours.exists() and theirs.exists()


@pytest.mark.timeout(20)
def test_spill_files_are_the_oldest_chunks_and_their_disk_is_bounded(tmp_path: Path) -> None:
    """With the learner away: the oldest chunks go to disk (a contiguous run a successor can
    resend), the newest stay in memory, and past `spill_limit_bytes` the actor waits."""
    data, weights = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    spill_dir = tmp_path / "spill"
    one_file = 2 * 8 * 17 * 4 + 2048  # two (8, 17) float32 obs arrays, plus the rest and npz
    client = ActorClient(
        data, weights, STATE_SPEC, CONFIG_HASH, "robot-0", 5, outbox_limit=2,
        spill_dir=spill_dir, spill_limit_bytes=3 * one_file, **FAST_CLIENT,
    )  # fmt: skip
    try:
        for seq in range(5):
            client.send_chunk(state_chunk(float(seq)), timeout_s=0.0)
        seqs = sorted(int(path.stem.rsplit("-", 1)[1]) for path in spill_dir.glob("*.npz"))
        assert seqs == [0, 1, 2]  # the oldest; 3 and 4 are in memory
        with pytest.raises(TimeoutError, match="spill full"):
            client.send_chunk(state_chunk(5.0), timeout_s=0.2)
        assert client.counters()["spilled"] == 3
        assert client.counters()["spilled_bytes"] == sum(
            path.stat().st_size for path in spill_dir.glob("*.npz")
        )

        server = LearnerServer(STATE_SPEC, CONFIG_HASH, data, weights, durable=True)
        try:
            got = pump(server, lambda total: len(total.chunks) == 5, 10.0)
            server.commit()
            client.send_chunk(state_chunk(5.0), timeout_s=5.0)  # room again after the commit
            got = pump(server, lambda total: len(total.chunks) == 1, 10.0, into=got)
            assert [c.seq for c in got.chunks] == list(range(6))
        finally:
            server.close()
    finally:
        client.close(timeout_s=0.0)
