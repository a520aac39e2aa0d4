"""Transport benchmark on loopback: the learner here, the actor in a separate process.

Figures (DESIGN §7 key names; `serl bench transport` prints them, `--json` writes them):

- `state_transitions_per_s`: chunks of 256 transitions with a 17-float32 observation (obs
  and next_obs), 6-float32 action, reward, flags and the default tags; ~49 KB per chunk.
- `image_transitions_per_s`: chunks of 64 transitions, each with two 128x128x3 uint8 camera
  frames plus a 7-float32 state; next_obs left out, as image buffers rebuild it (§3).
- `weight_sync_p50_ms` / `weight_sync_p99_ms`: `publish_weights` call -> the new version
  available to the actor's control thread (decoded and checked by its I/O thread), for a
  ~300 KB policy published every 20 ms. Both ends stamp `time.time_ns()` on one machine.

Throughput is measured at the learner from the first chunk received to the last, with the
actor sending as fast as its outbox allows (copying each chunk in `send_chunk`, as a real
actor does); the learner only receives, validates and acks (no replay insert).

Actor side: `python -m serl.transport.bench actor CONFIG_JSON` (started by this module).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from serl.transport.client import ActorClient
from serl.transport.protocol import TransitionSpec, chunk_arrays
from serl.transport.server import LearnerServer

logger = logging.getLogger(__name__)

CONFIG_HASH = "bench"
STATE_CHUNK_LEN = 256
IMAGE_CHUNK_LEN = 64
WEIGHT_PERIOD_S = 0.02
"""50 Hz publishing: faster than any learner publishes, slow enough not to queue."""

SPECS = {
    "state": TransitionSpec(obs={"state": ("float32", (17,))}, action=("float32", (6,))),
    "image": TransitionSpec(
        obs={
            "wrist": ("uint8", (128, 128, 3)),
            "front": ("uint8", (128, 128, 3)),
            "state": ("float32", (7,)),
        },
        action=("float32", (7,)),
    ),
}


def _chunk(kind: str, rng: np.random.Generator) -> dict[str, np.ndarray]:
    n = STATE_CHUNK_LEN if kind == "state" else IMAGE_CHUNK_LEN
    tags = {
        "source": np.full(n, 2, np.uint8),
        "episode_id": np.zeros(n, np.int64),
        "t": np.arange(n, dtype=np.int64),
        "policy_version": np.zeros(n, np.int64),
    }
    common = {
        "reward": rng.standard_normal(n).astype(np.float32),
        "terminated": np.zeros(n, bool),
        "truncated": np.zeros(n, bool),
    }
    if kind == "state":
        obs = rng.standard_normal((n + 1, 17)).astype(np.float32)
        return chunk_arrays(
            obs={"state": obs[:-1]},
            next_obs={"state": obs[1:]},
            action=rng.uniform(-1, 1, (n, 6)).astype(np.float32),
            **common,
            **tags,
        )
    return chunk_arrays(
        obs={
            "wrist": rng.integers(0, 256, (n, 128, 128, 3), dtype=np.uint8),
            "front": rng.integers(0, 256, (n, 128, 128, 3), dtype=np.uint8),
            "state": rng.standard_normal((n, 7)).astype(np.float32),
        },
        action=rng.uniform(-1, 1, (n, 7)).astype(np.float32),
        **common,
        **tags,
    )


def _policy(version: int) -> dict[str, np.ndarray]:
    """~300 KB of float32: a 17 -> 256 -> 256 -> 12 MLP."""
    return {
        "l0.weight": np.full((256, 17), version, np.float32),
        "l0.bias": np.zeros(256, np.float32),
        "l1.weight": np.full((256, 256), version, np.float32),
        "l1.bias": np.zeros(256, np.float32),
        "head.weight": np.full((12, 256), version, np.float32),
        "head.bias": np.zeros(12, np.float32),
    }


def _spawn_actor(config: dict[str, Any]) -> subprocess.Popen:
    root = Path(__file__).resolve().parents[2]
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])
    )
    return subprocess.Popen(
        [sys.executable, "-m", "serl.transport.bench", "actor", json.dumps(config)], env=env
    )


def _stream(kind: str, n_chunks: int) -> float:
    """Transitions per second received by the learner from one actor process."""
    server = LearnerServer(SPECS[kind], CONFIG_HASH)
    actor = _spawn_actor(
        {
            "role": "stream",
            "kind": kind,
            "n_chunks": n_chunks,
            "data": server.data_endpoint,
            "weights": server.weights_endpoint,
        }
    )
    try:
        received = transitions = 0
        started = last = 0.0
        deadline = time.monotonic() + 120.0
        while received < n_chunks and time.monotonic() < deadline:
            for chunk in server.poll(10).chunks:
                last = time.perf_counter()
                if received == 0:
                    started = last  # the clock starts at the first chunk, not counted
                else:
                    transitions += len(chunk)
                received += 1
        if received < 2:
            raise RuntimeError(f"{kind} benchmark: only {received} chunks arrived")
        actor.wait(timeout=30)
    finally:
        if actor.poll() is None:
            actor.kill()
        server.close()
    return transitions / (last - started)


def _weight_sync(n_versions: int) -> tuple[float, float]:
    """p50 and p99 milliseconds from publish to availability in the actor process."""
    server = LearnerServer(SPECS["state"], CONFIG_HASH)
    with tempfile.TemporaryDirectory() as tmp:
        result_file = Path(tmp) / "latencies.json"
        actor = _spawn_actor(
            {
                "role": "weights",
                "kind": "state",
                "n_versions": n_versions,
                "data": server.data_endpoint,
                "weights": server.weights_endpoint,
                "result_file": str(result_file),
            }
        )
        try:
            version = 0
            deadline = time.monotonic() + 30.0
            while not server.live_actors() and time.monotonic() < deadline:
                server.poll(10)
            server.publish_weights(version, _policy(version))  # warm-up, not measured
            warm_until = time.monotonic() + 0.5
            while time.monotonic() < warm_until:
                server.poll(10)
            for version in range(1, n_versions + 1):
                server.publish_weights(version, _policy(version))
                next_at = time.monotonic() + WEIGHT_PERIOD_S
                while time.monotonic() < next_at:
                    server.poll(max(1, int((next_at - time.monotonic()) * 1000)))
            end = time.monotonic() + 30.0
            while actor.poll() is None and time.monotonic() < end:
                server.poll(10)
            latencies = json.loads(result_file.read_text())["latencies_ms"]
        finally:
            if actor.poll() is None:
                actor.kill()
            server.close()
    if len(latencies) < n_versions // 2:
        raise RuntimeError(f"only {len(latencies)} of {n_versions} weight versions measured")
    p50, p99 = np.percentile(latencies, [50, 99])
    return float(p50), float(p99)


def measure_transport(quick: bool = False) -> dict[str, float]:
    """Run the three loopback measurements; `quick` sizes finish in well under a minute."""
    state_chunks, image_chunks, versions = (400, 60, 150) if quick else (2000, 300, 1000)
    results = {
        "state_transitions_per_s": _stream("state", state_chunks),
        "image_transitions_per_s": _stream("image", image_chunks),
    }
    p50, p99 = _weight_sync(versions)
    results |= {"weight_sync_p50_ms": p50, "weight_sync_p99_ms": p99}
    for name, value in results.items():
        logger.info("%s = %.3g", name, value)
    return results


# ---- actor process ---------------------------------------------------------------------


def _actor_stream(cfg: dict[str, Any], client: ActorClient) -> None:
    chunk = _chunk(cfg["kind"], np.random.default_rng(0))
    for _ in range(cfg["n_chunks"]):
        client.send_chunk(chunk)


def _actor_weights(cfg: dict[str, Any], client: ActorClient) -> None:
    client.wait_for_weights(timeout_s=30.0)  # the warm-up version
    latencies: list[float] = []
    version = 0
    deadline = time.monotonic() + 60.0
    while version < cfg["n_versions"] and time.monotonic() < deadline:
        try:
            weights = client.wait_for_weights(timeout_s=1.0, newer_than=version)
        except TimeoutError:
            continue
        version = weights.version
        latencies.append((weights.received_ns - weights.published_ns) / 1e6)
    tmp = Path(cfg["result_file"] + ".tmp")
    tmp.write_text(json.dumps({"latencies_ms": latencies}))
    os.replace(tmp, cfg["result_file"])


def _actor_main(cfg: dict[str, Any]) -> None:
    client = ActorClient(
        cfg["data"],
        cfg["weights"],
        SPECS[cfg["kind"]],
        CONFIG_HASH,
        actor_id=f"bench-{cfg['role']}",
        outbox_limit=64 if cfg["kind"] == "state" else 8,
    )
    try:
        {"stream": _actor_stream, "weights": _actor_weights}[cfg["role"]](cfg, client)
    finally:
        client.close(timeout_s=30.0)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "actor":
        logging.basicConfig(level=logging.WARNING)
        _actor_main(json.loads(sys.argv[2]))
    else:
        sys.exit("usage: python -m serl.transport.bench actor CONFIG_JSON (started by the bench)")
