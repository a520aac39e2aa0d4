"""Learner and actors as real processes on loopback: a learner kill -9, an actor restart."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from serl.checkpoint import read_checkpoint
from serl.learner import stored_transitions
from tests.learner_procs import (
    actor_config,
    count_by_actor,
    endpoints,
    latest,
    learner_config,
    procs,  # noqa: F401  (fixture)
    records,
    wait_until,
)

STEPS = 600
"""Per actor (6 s at 100 Hz): 3 Pendulum episodes, so chunks cross episode boundaries."""


@pytest.mark.timeout(120)
def test_learner_killed_and_resumed_holds_every_actor_transition_exactly_once(
    tmp_path,
    procs,  # noqa: F811
) -> None:
    run = tmp_path / "run"
    ports = endpoints()
    first = learner_config(run, ports, max_env_steps=2 * STEPS, utd_ratio=0.2)
    procs.start("learner", "learner-1", first)
    for i in range(2):
        config = actor_config(ports, f"actor-{i}", max_steps=STEPS, control_hz=100.0)
        procs.start("actor", f"actor-{i}", config)

    def checkpointed_steps() -> int:
        if not (run / "checkpoint.safetensors").exists():
            return 0
        header, _ = read_checkpoint(run / "checkpoint.safetensors")
        return header["metadata"]["counters"]["env_steps"]

    wait_until(
        lambda: checkpointed_steps() >= 200,
        60,
        "a checkpoint with 200 env steps",
        lambda: procs.log("learner-1"),
    )
    time.sleep(0.3)  # chunks accepted after the checkpoint die with the learner
    procs.kill9("learner-1")
    checkpointed = checkpointed_steps()
    assert latest(run, "learner/env_steps") < 2 * STEPS  # killed mid-run
    time.sleep(0.5)  # the actors keep acting meanwhile; their outboxes hold the chunks

    logged_before_resume = len(records(run))
    procs.start("learner", "learner-2", learner_config(run, ports, **{
        "max_env_steps": 2 * STEPS, "utd_ratio": 0.2, "resume": True}))  # fmt: skip
    assert procs.wait("learner-2", 90) == 0
    for i in range(2):
        assert procs.wait(f"actor-{i}", 30) == 0  # reconnected by themselves and finished

    meta, rows = stored_transitions(run)
    assert count_by_actor(rows) == {"actor-0": STEPS, "actor-1": STEPS}
    duplicates = [key for key, n in Counter(r[:4] for r in rows).items() if n > 1]
    assert duplicates == []
    for actor in ("actor-0", "actor-1"):
        steps = sorted((e, t) for a, _, e, t, _ in rows if a == actor)
        assert steps == [(k // 200, k % 200) for k in range(STEPS)]
    # Counters continue from the checkpoint rather than restarting or double counting.
    assert meta["counters"]["env_steps"] == 2 * STEPS
    assert meta["counters"]["updates"] == int(0.2 * (2 * STEPS - 100))
    assert "resumed from" in procs.log("learner-2")
    resumed = records(run)[logged_before_resume:]
    assert resumed and min(r["step"] for r in resumed) >= checkpointed


@pytest.mark.timeout(120)
def test_a_new_actor_incarnation_gets_current_weights_before_acting_and_training_goes_on(
    tmp_path,
    procs,  # noqa: F811
) -> None:
    run = tmp_path / "run"
    ports = endpoints()
    procs.start("learner", "learner", learner_config(run, ports, utd_ratio=0.5))
    procs.start("actor", "actor-old", actor_config(ports, "actor-0", control_hz=100.0))
    wait_until(
        lambda: latest(run, "learner/updates") >= 15,
        60,
        "15 updates",
        lambda: procs.log("learner") + procs.log("actor-old"),
    )
    procs.kill9("actor-old")
    time.sleep(0.5)  # the learner catches up with the data it has, then waits
    version_before = latest(run, "learner/weights_version")
    updates_before = latest(run, "learner/updates")
    procs.start("actor", "actor-new", actor_config(
        ports, "actor-0", random_steps=0, max_steps=150, control_hz=150.0))  # fmt: skip
    assert procs.wait("actor-new", 60) == 0
    assert procs.terminate("learner") == 0  # SIGTERM: a last checkpoint, then exit

    meta, rows = stored_transitions(run)
    incarnations = sorted({(a, i) for a, i, *_ in rows})
    assert len(incarnations) == 2 and {a for a, _ in incarnations} == {"actor-0"}
    new = [r for r in rows if r[1] == incarnations[1][1]]
    assert len(new) == 150
    assert min(v for *_, v in new) >= version_before  # acted only with current weights
    assert meta["counters"]["updates"] > updates_before  # training went on
