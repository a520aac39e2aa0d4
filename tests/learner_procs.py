"""Helpers of the learner/actor process tests: start `serl` processes, read what they wrote.

Every process goes through `Procs`, whose fixture kills whatever still runs at teardown; the
children also get SERL_PARENT_PID, so they stop by themselves if pytest itself dies.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from serl.actor import ActorConfig
from serl.agents.sac import SACConfig
from serl.learner import LearnerConfig, StoredRow
from serl.metrics import read_metrics
from serl.processes import free_port, spawn_serl

TINY = SACConfig(hidden_dims=(16,), batch_size=16)
"""Small enough that a learner process trains quickly on a loaded 2-core machine."""


class Procs:
    """Starts `serl learner` / `serl actor` processes with logs under `root/logs`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.procs: dict[str, subprocess.Popen] = {}

    def start(
        self, command: str, name: str, config: Any, prefix: tuple[str, ...] = ()
    ) -> subprocess.Popen:
        """Start `serl COMMAND` as `name`; `prefix` e.g. runs it inside a netlab host."""
        proc = spawn_serl(
            command,
            config,
            self.root / "configs" / f"{name}.json",
            self.log_path(name),
            prefix=prefix,
        )
        self.procs[name] = proc
        return proc

    def log_path(self, name: str) -> Path:
        return self.root / "logs" / f"{name}.log"

    def log(self, name: str) -> str:
        path = self.log_path(name)
        return path.read_text(errors="replace") if path.exists() else ""

    def wait(self, name: str, timeout_s: float) -> int:
        try:
            return self.procs[name].wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{name} still running; log:\n{self.log(name)[-3000:]}") from None

    def terminate(self, name: str, timeout_s: float = 30.0) -> int:
        self.procs[name].send_signal(signal.SIGTERM)
        return self.wait(name, timeout_s)

    def kill9(self, name: str) -> None:
        os.kill(self.procs[name].pid, signal.SIGKILL)
        self.procs[name].wait()

    def kill_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    running = Procs(tmp_path)
    yield running
    running.kill_all()


def endpoints() -> tuple[int, int]:
    data = free_port()
    weights = free_port()
    while weights == data:
        weights = free_port()
    return data, weights


def learner_config(run_dir: Path, ports: tuple[int, int], **overrides: Any) -> LearnerConfig:
    base: dict[str, Any] = dict(
        env="Pendulum-v1",
        agent_cfg=TINY,
        data_endpoint=f"tcp://127.0.0.1:{ports[0]}",
        weights_endpoint=f"tcp://127.0.0.1:{ports[1]}",
        min_buffer=100,
        buffer_capacity=20_000,
        publish_every=5,
        checkpoint_every_s=1.0,
        log_every_s=0.3,
        run_dir=run_dir,
        threads=1,
    )
    return LearnerConfig(**(base | overrides))


def actor_config(ports: tuple[int, int], actor_id: str, **overrides: Any) -> ActorConfig:
    base: dict[str, Any] = dict(
        env="Pendulum-v1",
        agent_cfg=TINY,
        data_port=ports[0],
        weights_port=ports[1],
        actor_id=actor_id,
        random_steps=100,
        control_hz=200.0,
        chunk_size=16,
        eval_every=0,
        close_timeout_s=30.0,
        threads=1,
    )
    return ActorConfig(**(base | overrides))


def records(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "metrics.jsonl"
    return read_metrics(path) if path.exists() else []


def latest(run_dir: Path, key: str, default: float = -1.0) -> float:
    values = [r[key] for r in records(run_dir) if r.get(key) is not None]
    return values[-1] if values else default


def wait_until(
    condition: Callable[[], bool], timeout_s: float, what: str, log: Callable[[], str] = str
) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; log:\n{log()[-3000:]}")
        time.sleep(0.1)


def count_by_actor(rows: list[StoredRow]) -> Counter[str]:
    return Counter(actor for actor, *_ in rows)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")
