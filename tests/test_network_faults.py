"""A GPU PC and two robot PCs on one CI machine (network namespaces), with the link cut.

`serl learner` runs in a "gpu-pc" namespace bound to its own non-loopback address, `serl
actor`s in "robot-k" namespaces reach it through veth links and a bridge, each with its own
CURVE key (serl.bench.netlab). Faults are links pulled at the switch, processes SIGKILLed and
a learner resumed; each test counts the rows in the learner's final buffer against what each
actor stepped: every transition exactly once.

These tests need root and iproute2 (CI runs as root); elsewhere they are skipped, in CI a
missing capability fails them.
"""

from __future__ import annotations

import os
import shutil
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from serl.bench import outage
from serl.bench.netlab import Host, NetLab, unavailable_reason
from serl.checkpoint import read_checkpoint
from serl.learner import StoredRow, stored_transitions
from serl.transport.auth import generate_keys
from tests.learner_procs import (
    Procs,
    actor_config,
    count_by_actor,
    latest,
    learner_config,
    procs,  # noqa: F401  (fixture)
    records,
    wait_until,
)

PORTS = (5555, 5556)
"""The learner's data and weights ports on the GPU PC's address (each lab is isolated)."""
EPISODE = 200
"""Pendulum's episode length: rows are (episode, t) with t < EPISODE."""


def require_namespaces() -> None:
    """Skip where namespaces cannot be made (not root); in CI, fail instead."""
    reason = unavailable_reason()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the network-fault tests, but {reason}")
        pytest.skip(reason)


@pytest.fixture
def lab() -> Iterator[NetLab]:
    require_namespaces()
    with NetLab("t") as net:
        yield net


def host_keys(keys: Path, name: str, dest: Path) -> Path:
    """What launch/README.md copies to a robot PC: its secret key and the learner's public
    key, nothing else."""
    dest.mkdir(parents=True, mode=0o700)
    for file in (f"{name}.key_secret", "server.key"):
        shutil.copy(keys / file, dest / file)
    (dest / f"{name}.key_secret").chmod(0o600)
    return dest


class Site:
    """The GPU PC and robot PCs of one test, their keys, and the configs they run."""

    def __init__(self, lab: NetLab, running: Procs, root: Path, robots: int = 2) -> None:
        self.lab, self.procs, self.root = lab, running, root
        self.run = root / "run"
        self.gpu = lab.add_host("gpu-pc")
        self.robots = [lab.add_host(f"robot-{k}") for k in range(robots)]
        self.keys = generate_keys(root / "keys", tuple(h.name for h in self.robots))

    def start_learner(self, name: str, **overrides: Any) -> None:
        endpoints = [f"tcp://{self.gpu.address}:{port}" for port in PORTS]
        config = learner_config(self.run, PORTS, **{
            "data_endpoint": endpoints[0], "weights_endpoint": endpoints[1],
            "keys_dir": self.keys, "checkpoint_every_s": 0.3, "utd_ratio": 0.2,
        } | overrides)  # fmt: skip
        self.procs.start("learner", name, config, prefix=self.gpu.prefix)
        wait_until(
            lambda: "weights on" in self.procs.log(name),
            60,
            f"{name} bound on {self.gpu.address}",
            lambda: self.procs.log(name),
        )

    def start_actor(self, host: Host, name: str, key: str | None = None, **overrides: Any) -> None:
        """`serl actor` on `host`, with the keys of `key` (default: the host's own)."""
        key = key or host.name
        keys = self.root / "hosts" / name / "keys"
        host_keys(self.keys, key, keys)
        actor_id = overrides.pop("actor_id", host.name)
        config = actor_config(PORTS, actor_id, **{
            "learner_host": self.gpu.address, "keys_dir": keys, "key_name": key,
            "spill_dir": self.root / "hosts" / host.name / "spill", "outbox_limit": 8,
            "silence_timeout_s": 3.0, "control_hz": 100.0, "close_timeout_s": 60.0,
        } | overrides)  # fmt: skip
        self.procs.start("actor", name, config, prefix=host.prefix)

    def start_streaming(self, learner: str, steps: int) -> None:
        """The learner, to stop after every robot's `steps`, and one actor per robot PC."""
        self.start_learner(learner, max_env_steps=len(self.robots) * steps)
        for host in self.robots:
            self.start_actor(host, host.name, max_steps=steps)

    def wait_finished(self, learner: str) -> None:
        """The learner and every robot's actor exit 0 by themselves."""
        assert self.procs.wait(learner, 120) == 0
        for host in self.robots:
            assert self.procs.wait(host.name, 30) == 0

    def spill_dir(self, host: Host) -> Path:
        return self.root / "hosts" / host.name / "spill"

    def steps_in_learner(self) -> int:
        return int(latest(self.run, "learner/env_steps", 0))

    def wait_for_steps(self, n: int, learner: str = "learner") -> None:
        what = f"{n} env steps in the learner"
        wait_until(lambda: self.steps_in_learner() >= n, 60, what, lambda: self.procs.log(learner))

    def checkpointed_steps(self) -> int:
        path = self.run / "checkpoint.safetensors"
        if not path.exists():
            return 0
        header, _ = read_checkpoint(path)
        return int(header["metadata"]["counters"]["env_steps"])


def spilled_rows(spill_dir: Path) -> set[tuple[int, int, int]]:
    """(incarnation, episode, t) of every transition in the spill files of `spill_dir`."""
    rows: set[tuple[int, int, int]] = set()
    for path in spill_dir.glob("*[0-9].npz"):  # <actor>-<incarnation>-<seq>.npz
        incarnation = int(path.stem.split("-")[-2])
        with np.load(path) as chunk:
            steps = zip(chunk["episode_id"], chunk["t"], strict=True)
            rows |= {(incarnation, int(e), int(t)) for e, t in steps}
    return rows


def assert_exactly_once(rows: list[StoredRow], stepped: dict[str, int]) -> None:
    """Each actor's rows are its steps 0..n-1 (episode, t), each once: none lost, none doubled."""
    assert count_by_actor(rows) == stepped
    assert [key for key, n in Counter(r[:4] for r in rows).items() if n > 1] == []
    for actor, n in stepped.items():
        steps = sorted((e, t) for a, _, e, t, _ in rows if a == actor)
        assert steps == [(k // EPISODE, k % EPISODE) for k in range(n)]


@pytest.mark.timeout(150)
def test_two_robot_pcs_stream_to_the_gpu_pc_and_both_follow_every_weights_version(
    lab: NetLab,
    procs: Procs,  # noqa: F811
    tmp_path: Path,
) -> None:
    site = Site(lab, procs, tmp_path)
    steps = 800
    site.start_streaming("learner", steps)
    site.wait_finished("learner")

    meta, rows = stored_transitions(site.run)
    assert_exactly_once(rows, {"robot-0": steps, "robot-1": steps})
    published = meta["weights_version"]
    for host in site.robots:
        versions = [v for a, _, e, t, v in sorted(rows, key=lambda r: r[2:4]) if a == host.name]
        used = [v for v in versions if v >= 0]  # -1: the random warm-up
        assert used == sorted(used)  # versions only move forward
        assert len(set(used)) >= 3, f"{host.name} acted with versions {sorted(set(used))}"
        assert max(used) >= published // 2  # it kept following the learner to the end
    assert latest(site.run, "learner/actors_live") >= 0
    assert max(r.get("learner/actors_live", 0) for r in records(site.run)) == 2


@pytest.mark.timeout(180)
def test_a_robot_pcs_link_down_for_10_s_loses_and_doubles_nothing(
    lab: NetLab,
    procs: Procs,  # noqa: F811
    tmp_path: Path,
) -> None:
    site = Site(lab, procs, tmp_path)
    steps = 2000  # 20 s at 100 Hz: the outage falls in the middle
    site.start_streaming("learner", steps)
    site.wait_for_steps(500)
    cut = site.robots[1]
    lab.link_down(cut)
    time.sleep(10.0)
    spilled_during_outage = len(list(site.spill_dir(cut).glob("*.npz")))
    live_during_outage = latest(site.run, "learner/actors_live")
    lab.link_up(cut)
    site.wait_finished("learner")

    _, rows = stored_transitions(site.run)
    assert_exactly_once(rows, {"robot-0": steps, "robot-1": steps})
    # The cut robot kept stepping (its outbox of 8 chunks filled, then it spilled), logged
    # the outage and reconnected by itself; the learner showed it as not live meanwhile.
    assert spilled_during_outage > 10
    assert list(site.spill_dir(cut).glob("*.npz")) == []  # all sent, committed, deleted
    log = procs.log(cut.name)
    assert "unreachable for" in log and "spilled" in log
    assert "connected to the learner" in log.split("unreachable for", 1)[1]
    assert live_during_outage == 1
    assert "robot-1 incarnation" in procs.log("learner") and "not live" in procs.log("learner")
    # The other robot never noticed.
    assert "reconnecting" not in procs.log("robot-0")
    assert "unreachable" not in procs.log("robot-0")


@pytest.mark.timeout(180)
def test_the_gpu_pcs_link_down_while_checkpointing_then_a_learner_kill_and_resume(
    lab: NetLab,
    procs: Procs,  # noqa: F811
    tmp_path: Path,
) -> None:
    site = Site(lab, procs, tmp_path)
    steps = 1500
    site.start_streaming("learner-1", steps)
    wait_until(
        lambda: site.checkpointed_steps() >= 400,
        60,
        "a checkpoint with 400 steps",
        lambda: procs.log("learner-1"),
    )
    # The learner checkpoints every 0.3 s: its network goes while one is written or due,
    # this time the interface itself (the NIC gone, its address and routes with it).
    lab.remove_interface(site.gpu)
    time.sleep(2.0)
    procs.kill9("learner-1")
    time.sleep(1.0)
    lab.restore_interface(site.gpu)
    site.start_learner("learner-2", max_env_steps=2 * steps, resume=True)
    site.wait_finished("learner-2")

    meta, rows = stored_transitions(site.run)
    assert_exactly_once(rows, {"robot-0": steps, "robot-1": steps})
    assert meta["counters"]["env_steps"] == 2 * steps
    assert "resumed from" in procs.log("learner-2")
    assert set(meta["owners"]) == {"robot-0", "robot-1"}  # key ties survive the restart


@pytest.mark.timeout(180)
def test_a_robot_pc_killed_outright_and_its_next_process_sends_what_was_spilled(
    lab: NetLab,
    procs: Procs,  # noqa: F811
    tmp_path: Path,
) -> None:
    site = Site(lab, procs, tmp_path, robots=1)
    robot = site.robots[0]
    site.start_learner("learner")
    site.start_actor(robot, "robot-0-old", max_steps=100_000)
    site.wait_for_steps(300)
    lab.link_down(robot)  # it spills while it cannot send...
    spill = site.spill_dir(robot)
    wait_until(lambda: len(list(spill.glob("*[0-9].npz"))) >= 20, 30, "20 spilled chunks")
    lab.kill_host(robot)  # ...and then its PC loses power
    procs.procs["robot-0-old"].wait(timeout=10)
    spilled = spilled_rows(spill)
    lab.link_up(robot)
    site.start_actor(robot, "robot-0-new", max_steps=300, random_steps=0)
    assert procs.wait("robot-0-new", 90) == 0
    assert procs.terminate("learner") == 0

    _, rows = stored_transitions(site.run)
    incarnations = sorted({i for _, i, *_ in rows})
    assert len(incarnations) == 2
    old, new = incarnations
    assert [k for k, n in Counter(r[:4] for r in rows).items() if n > 1] == []
    assert spilled and {(i, e, t) for _, i, e, t, _ in rows if i == old} >= spilled
    assert sum(i == new for _, i, *_ in rows) == 300
    # Only the newest chunks (at most outbox_limit, held in memory) died with the process:
    # what arrived from the old incarnation is a gapless run of its steps.
    old_steps = sorted((e, t) for _, i, e, t, _ in rows if i == old)
    assert old_steps == [(k // EPISODE, k % EPISODE) for k in range(len(old_steps))]
    assert list(spill.glob("*.npz")) == []
    assert "spilled by 1 earlier incarnation" in procs.log("robot-0-new")


@pytest.mark.timeout(150)
def test_a_host_without_keys_or_with_another_hosts_key_is_refused(
    lab: NetLab,
    procs: Procs,  # noqa: F811
    tmp_path: Path,
) -> None:
    site = Site(lab, procs, tmp_path)
    intruder = lab.add_host("intruder")
    site.start_learner("learner")
    site.start_actor(site.robots[1], "robot-1", max_steps=300)
    assert procs.wait("robot-1", 60) == 0  # robot-1's id is now tied to robot-1's key
    # robot-0's key, copied to another PC, claiming robot-1's name:
    site.start_actor(intruder, "stolen-key", key="robot-0", actor_id="robot-1", max_steps=300)
    assert procs.wait("stolen-key", 60) != 0
    assert "belongs to another CURVE key" in procs.log("stolen-key")
    # No keys at all: the CURVE handshake fails, nothing gets through.
    no_keys = actor_config(PORTS, "robot-0", **{
        "learner_host": site.gpu.address, "max_steps": 100, "close_timeout_s": 3.0,
    })  # fmt: skip
    procs.start("actor", "no-keys", no_keys, prefix=intruder.prefix)
    assert procs.wait("no-keys", 60) == 0  # it stepped its random warm-up; nothing arrived
    assert "never acknowledged" in procs.log("no-keys")
    wait_until(
        lambda: any(
            key.startswith("transport/zmq/handshake_failed") and value >= 1
            for record in records(site.run)
            for key, value in record.items()
        ),
        20,
        "the learner to count the failed handshake",
        lambda: procs.log("learner"),
    )
    assert procs.terminate("learner") == 0
    _, rows = stored_transitions(site.run)
    assert count_by_actor(rows) == {"robot-1": 300}


@pytest.mark.timeout(150)
def test_the_link_outage_benchmark_runs_and_counts_nothing_lost(tmp_path: Path) -> None:
    """`serl bench link-outage` end to end with one short outage (its figures in docs come
    from the full run)."""
    require_namespaces()
    figures = outage.run(quick=True, device="cpu", outages=[1.0], plot=tmp_path / "o.png")
    assert figures["lost"] == 0 and figures["duplicated"] == 0
    assert figures["transitions_stepped"] > 1000
    assert 0 <= figures["resume_s_1"] < 15
    assert (tmp_path / "o.png").stat().st_size > 10_000
