"""`serl bench transport`: actor <-> learner transport on loopback, and what ingestion costs.

Figures (keys as in issue 3):

- `state_transitions_per_s`, `image_transitions_per_s`, `weight_sync_p50_ms`,
  `weight_sync_p99_ms`: from `serl.transport.bench.measure_transport` (its docstring says
  exactly what each measures: one actor process streaming as fast as it can into a learner
  that only receives, and publish -> usable-in-the-actor latency of a ~300 KB policy).
- `learner_slowdown_with_ingest` = 1 − (SAC updates/s while two actor processes stream
  transitions into the learner ÷ updates/s with no actor). The learner is the real `Learner`
  loop (poll, validate, copy into the replay buffer, update, publish every 10 updates) with
  SAC's defaults (256x256, batch 256) on Pendulum-v1 spaces and one torch thread, so the two
  actor processes have the machine's second core, as in `serl train`. Each actor sends
  chunks of 64 transitions at 500 transitions/s (1,000/s in all: 10x a 10 Hz robot fleet of
  50 arms, and several times what this learner can train on at UTD 1). Rounds alternate
  alone / with actors so machine noise hits both alike; the figure uses the medians.
  Target: <= 0.10.

`--smoke` is `--quick` with one 1-second slowdown round: what CI runs to catch a broken
benchmark. Its figures are not measurements.

Actor side of the slowdown measurement: `python -m serl.bench.transport CONFIG_JSON`.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from serl.transport.bench import measure_transport

logger = logging.getLogger(__name__)

CHUNK = 64
"""Transitions per chunk sent by each streaming actor."""
ACTOR_RATE = 500.0
"""Transitions per second sent by each of the two actors."""
PREFILL = 5_000
"""Transitions in the replay buffer before measuring (so sampling costs what it would)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="seconds-long run of every measurement, for CI (figures are not measurements)",
    )


def _pendulum_chunk(start: int, n: int = CHUNK) -> dict[str, np.ndarray]:
    """n transitions of 200-step episodes, numbered from global step `start`."""
    from serl.transport.protocol import SOURCES, chunk_arrays

    steps = np.arange(start, start + n)
    rng = np.random.default_rng(start)
    obs = rng.standard_normal((n + 1, 3)).astype(np.float32)
    t = steps % 200
    return chunk_arrays(
        obs={"state": obs[:-1]},
        next_obs={"state": obs[1:]},
        action=rng.uniform(-1, 1, (n, 1)).astype(np.float32),
        reward=rng.standard_normal(n).astype(np.float32),
        terminated=np.zeros(n, bool),
        truncated=t == 199,
        source=np.full(n, SOURCES.index("sim"), np.uint8),
        episode_id=(steps // 200).astype(np.int64),
        t=t.astype(np.int64),
        policy_version=np.zeros(n, np.int64),
    )


def _make_learner(run_dir: Path, device: str) -> Any:
    from serl.learner import Learner, LearnerConfig
    from serl.transport.protocol import Chunk
    from serl.transport.server import PollResult

    cfg = LearnerConfig(
        env="Pendulum-v1",
        data_endpoint="tcp://127.0.0.1:0",
        weights_endpoint="tcp://127.0.0.1:0",
        utd_ratio=1e9,  # never rate-limited: measure raw update speed
        min_buffer=0,
        buffer_capacity=200_000,
        checkpoint_every_s=1e9,
        log_every_s=1e9,
        run_dir=run_dir,
        device=device,
    )
    learner = Learner(cfg)
    for k in range(PREFILL // CHUNK):
        chunk = Chunk("prefill", 0, k, _pendulum_chunk(k * CHUNK))
        learner.ingest(PollResult(chunks=[chunk]))
    return learner


def _spawn_actor(learner: Any, index: int, seconds: float) -> subprocess.Popen:
    from serl.processes import child_env

    config = {
        "data": learner.server.data_endpoint,
        "weights": learner.server.weights_endpoint,
        "spec": learner.spec.to_wire(),
        "config_hash": learner.agreement.hash,
        "actor_id": f"bench-{index}",
        "seconds": seconds,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "serl.bench.transport", json.dumps(config)], env=child_env(1)
    )


def _updates_per_s(learner: Any, seconds: float) -> float:
    start_updates, start = learner.counters.updates, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        learner.step()
    return (learner.counters.updates - start_updates) / elapsed


def learner_slowdown(quick: bool, device: str, smoke: bool = False) -> dict[str, float]:
    """1 − updates/s with two streaming actors ÷ updates/s alone (medians over rounds)."""
    seconds, rounds = (1.0, 1) if smoke else (3.0, 2) if quick else (8.0, 4)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    alone: list[float] = []
    streaming: list[float] = []
    ingested = 0
    with tempfile.TemporaryDirectory() as tmp:
        learner = _make_learner(Path(tmp) / "run", device)
        try:
            _updates_per_s(learner, 1.0)  # warm-up
            for _ in range(rounds):
                alone.append(_updates_per_s(learner, seconds))
                actors = [_spawn_actor(learner, i, seconds + 30.0) for i in range(2)]
                try:
                    steps = learner.counters.env_steps
                    deadline = time.monotonic() + 30.0
                    while len(learner.server.live_actors()) < 2 or (
                        learner.counters.env_steps < steps + 4 * CHUNK
                    ):  # both actors started and streaming
                        if time.monotonic() > deadline:
                            raise RuntimeError("the streaming actors did not start")
                        learner.step()
                    before = learner.counters.env_steps
                    streaming.append(_updates_per_s(learner, seconds))
                    ingested += learner.counters.env_steps - before
                finally:
                    for actor in actors:
                        actor.kill()
                        actor.wait()
                learner.server.poll(10)
        finally:
            learner.close()
            torch.set_num_threads(threads)
    base, loaded = statistics.median(alone), statistics.median(streaming)
    return {
        "learner_updates_per_s_alone": base,
        "learner_updates_per_s_with_ingest": loaded,
        "learner_ingest_transitions_per_s": ingested / (seconds * rounds),
        "learner_slowdown_with_ingest": 1.0 - loaded / base,
    }


def run(quick: bool, device: str, smoke: bool = False) -> dict[str, float | bool]:
    figures: dict[str, float | bool] = {"smoke": True} if smoke else {}
    figures |= measure_transport(quick or smoke)
    figures |= learner_slowdown(quick, device, smoke)
    return figures


# ---- streaming actor process -------------------------------------------------------------


def _stream(config: dict[str, Any]) -> None:
    """Send Pendulum chunks at ACTOR_RATE transitions/s for config['seconds']."""
    from serl.transport.client import ActorClient
    from serl.transport.protocol import TransitionSpec

    client = ActorClient(
        config["data"],
        config["weights"],
        TransitionSpec.from_wire(config["spec"]),
        config["config_hash"],
        config["actor_id"],
        outbox_limit=4096,
    )
    period = CHUNK / ACTOR_RATE
    start = time.monotonic()
    k = 0
    try:
        while time.monotonic() - start < config["seconds"]:
            client.send_chunk(_pendulum_chunk(k * CHUNK), copy=False)
            k += 1
            time.sleep(max(0.0, start + k * period - time.monotonic()))
    finally:
        client.close(timeout_s=0.0)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    if len(sys.argv) != 2:
        sys.exit("usage: python -m serl.bench.transport CONFIG_JSON (started by the benchmark)")
    _stream(json.loads(sys.argv[1]))
