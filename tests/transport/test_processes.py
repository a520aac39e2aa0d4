"""Learner and actor as real processes on loopback, including a kill -9 of the learner."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.transport.helpers import spawn, wait_for_file

pytestmark = pytest.mark.timeout(60)  # every test here may open sockets


def _start_server(
    tmp_path: Path, run: int, endpoints: dict[str, str], stall_s: float = 0.0
) -> tuple[subprocess.Popen, dict[str, Any]]:
    ready = tmp_path / f"ready{run}.json"
    proc = spawn(
        "server",
        {
            "data_endpoint": endpoints["data"],
            "weights_endpoint": endpoints["weights"],
            "state_file": str(tmp_path / "learner_state.json"),
            "stop_file": str(tmp_path / "stop"),
            "ready_file": str(ready),
            "checkpoint_s": 0.25,
            "stall_s": stall_s,
        },
    )
    return proc, wait_for_file(ready)


def _start_actor(
    tmp_path: Path, info: dict[str, Any], n_chunks: int, rate: float, **client: float
) -> subprocess.Popen:
    return spawn(
        "actor",
        {
            "data_endpoint": info["data"],
            "weights_endpoint": info["weights"],
            "actor_id": "robot-0",
            "n_chunks": n_chunks,
            "chunks_per_s": rate,
            "result_file": str(tmp_path / "actor.json"),
            "client": client,
        },
    )


def _finish(tmp_path: Path, server: subprocess.Popen, actor: subprocess.Popen) -> tuple[dict, dict]:
    assert actor.wait(timeout=25) == 0
    result = json.loads((tmp_path / "actor.json").read_text())
    (tmp_path / "stop").touch()
    assert server.wait(timeout=10) == 0
    state = json.loads((tmp_path / "learner_state.json").read_text())
    return result, state


def _wait_for_checkpoint_with(tmp_path: Path, at_least: int, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state_file = tmp_path / "learner_state.json"
        if state_file.exists():
            if len(json.loads(state_file.read_text())["received"]) >= at_least:
                return
        time.sleep(0.02)
    raise TimeoutError(f"the learner did not checkpoint {at_least} chunks in {timeout_s} s")


def _kill_all(*procs: subprocess.Popen) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.timeout(40)
def test_chunks_from_an_actor_process_arrive_once_in_order_and_acked(tmp_path: Path) -> None:
    server, info = _start_server(
        tmp_path, 0, {"data": "tcp://127.0.0.1:0", "weights": "tcp://127.0.0.1:0"}
    )
    actor = _start_actor(tmp_path, info, n_chunks=150, rate=500.0)
    try:
        result, state = _finish(tmp_path, server, actor)
    finally:
        _kill_all(actor, server)
    assert [seq for _, _, seq, _ in state["received"]] == list(range(150))
    assert [value for *_, value in state["received"]] == [float(s) for s in range(150)]
    assert result["flushed"] is True
    counters = result["counters"]
    assert counters["sent"] == counters["acked"] == counters["committed"] == 150
    assert counters.get("resent", 0) == 0
    assert state["cursors"] == {"robot-0": {"0": 149}}


@pytest.mark.timeout(60)
def test_a_learner_silent_longer_than_the_actors_timeout_survives_its_reconnects(
    tmp_path: Path,
) -> None:
    """A busy learner (here 1.5 s silent after every checkpoint) stops reading while its
    RCVHWM is full; the actor, hearing nothing for its 0.5 s silence timeout, closes and
    reconnects. With ZMTP heartbeats from the actor this aborted the learner inside libzmq
    ("Assertion failed: !_io_error", src/stream_engine_base.cpp:310) within seconds (2 of 2
    runs, and three benchmark learners under load); every chunk must arrive once, and the
    learner must live."""
    n_chunks = 2_000
    server, info = _start_server(
        tmp_path, 0, {"data": "tcp://127.0.0.1:0", "weights": "tcp://127.0.0.1:0"}, stall_s=1.5
    )
    actor = _start_actor(tmp_path, info, n_chunks=n_chunks, rate=400.0,
                         silence_timeout_s=0.5, heartbeat_s=0.02)  # fmt: skip
    try:
        assert actor.wait(timeout=45) == 0
        assert server.poll() is None, f"the learner died (exit {server.returncode})"
        result = json.loads((tmp_path / "actor.json").read_text())
        (tmp_path / "stop").touch()
        assert server.wait(timeout=10) == 0
        state = json.loads((tmp_path / "learner_state.json").read_text())
    finally:
        _kill_all(actor, server)
    assert [seq for _, _, seq, _ in state["received"]] == list(range(n_chunks))
    assert result["flushed"] is True
    assert result["counters"]["reconnects"] >= 3  # the silences were long enough to matter


@pytest.mark.timeout(50)
def test_learner_killed_and_resumed_ends_with_every_seq_exactly_once(tmp_path: Path) -> None:
    n_chunks = 300
    server, info = _start_server(
        tmp_path, 0, {"data": "tcp://127.0.0.1:0", "weights": "tcp://127.0.0.1:0"}
    )
    actor = _start_actor(tmp_path, info, n_chunks=n_chunks, rate=150.0)
    restarted = None
    try:
        _wait_for_checkpoint_with(tmp_path, at_least=30)
        time.sleep(0.1)  # between two checkpoints: some chunks received but not committed
        os.kill(server.pid, signal.SIGKILL)
        server.wait(timeout=5)
        before = json.loads((tmp_path / "learner_state.json").read_text())
        assert 0 < len(before["received"]) < n_chunks
        time.sleep(0.3)  # the actor keeps producing while no learner is there
        restarted, _ = _start_server(
            tmp_path, 1, {"data": info["data"], "weights": info["weights"]}
        )
        result, state = _finish(tmp_path, restarted, actor)
    finally:
        _kill_all(actor, server, *([restarted] if restarted else []))
    seqs = [seq for _, _, seq, _ in state["received"]]
    assert seqs == list(range(n_chunks))  # every seq exactly once, in order
    assert [value for *_, value in state["received"]] == [float(s) for s in range(n_chunks)]
    assert result["flushed"] is True
    assert result["counters"]["committed"] == n_chunks
    assert result["counters"]["resent"] > 0  # chunks received after the last checkpoint


@pytest.mark.timeout(50)
def test_a_killed_actors_spilled_chunks_are_sent_once_by_its_next_process(tmp_path: Path) -> None:
    """An actor queues 6 chunks while no learner runs: the oldest 5 spilled, the newest in
    memory; it is killed. The next process of the same actor (another incarnation, the same
    spill_dir) sends the 5 spilled ones as the old incarnation, with their seqs, then its own
    4: the learner ends with exactly those 9 rows, and the spill files are gone. (The chunk
    held in memory, the newest, died with the process.)"""
    spill_dir = tmp_path / "spill"
    first, info = _start_server(
        tmp_path, 0, {"data": "tcp://127.0.0.1:0", "weights": "tcp://127.0.0.1:0"}
    )
    (tmp_path / "stop").touch()  # only for its endpoints: the actor runs with no learner
    assert first.wait(timeout=10) == 0
    (tmp_path / "stop").unlink()
    actor = {"data_endpoint": info["data"], "weights_endpoint": info["weights"]}
    actor |= {"actor_id": "robot-0", "chunks_per_s": 1000.0, "spill_dir": str(spill_dir)}
    killed = spawn(
        "actor",
        actor
        | {"incarnation": 1, "n_chunks": 6, "outbox_limit": 1, "wait_for_kill": True}
        | {"result_file": str(tmp_path / "killed.json")},
    )
    server = successor = None
    try:
        assert wait_for_file(tmp_path / "killed.json")["counters"]["spilled"] == 5
        os.kill(killed.pid, signal.SIGKILL)
        killed.wait(timeout=5)
        assert len(list(spill_dir.glob("*.npz"))) == 5
        server, _ = _start_server(tmp_path, 1, {"data": info["data"], "weights": info["weights"]})
        successor = spawn(
            "actor",
            actor | {"incarnation": 2, "n_chunks": 4, "result_file": str(tmp_path / "actor.json")},
        )
        result, state = _finish(tmp_path, server, successor)
    finally:
        _kill_all(killed, *(proc for proc in (server, successor) if proc is not None))
    rows = sorted((incarnation, seq) for _, incarnation, seq, _ in state["received"])
    assert rows == [(1, seq) for seq in range(5)] + [(2, seq) for seq in range(4)]
    assert all(seq == value for _, _, seq, value in state["received"])
    assert result["flushed"] is True
    assert list(spill_dir.iterdir()) == []
