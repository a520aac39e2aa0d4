"""Process plumbing shared by the learner, the actors and `serl train`.

* `StopSignal`: SIGTERM and SIGINT set a flag that the process's loop checks between steps,
  so a stop never interrupts a checkpoint half-way; the loop then shuts down cleanly (the
  learner writes a last checkpoint). A child started by `serl train` also stops when its
  parent disappears (`SERL_PARENT_PID`), so a killed launcher leaves no orphans training.
* `limit_threads`: one torch/OpenMP thread per process by default in multi-process runs; on a
  2-core machine several processes each spawning a thread per core run ~10x slower.
* `spawn_serl`: start `serl COMMAND --config FILE.json` as a child process with its own log,
  in its own session (a terminal's Ctrl-C reaches only the parent, which stops the children in
  the order it chooses). `free_port`, `child_env`: loopback ports and the child environment.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

import torch

from serl.config import config_to_dict

logger = logging.getLogger(__name__)

PARENT_PID_ENV = "SERL_PARENT_PID"
"""Set by `serl train` for its children: they stop when this process is gone."""
PARENT_CHECK_S = 1.0
"""How often a child looks for its parent; a stop therefore follows within about a second."""


class StopSignal:
    """A flag set by SIGTERM/SIGINT (and by the parent's death, see the module doc).

    Install it once, from the main thread, before the loop starts; `stop_requested` is cheap
    enough to check every control or learner step.
    """

    def __init__(self) -> None:
        self._signal: int | None = None
        self._parent = int(os.environ.get(PARENT_PID_ENV, "0") or 0)
        self._next_parent_check = 0.0
        self._previous: dict[int, object] = {}

    def install(self) -> StopSignal:
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        self._previous.clear()

    def __enter__(self) -> StopSignal:
        return self.install()

    def __exit__(self, *exc: object) -> None:
        self.uninstall()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self._signal is None:
            logger.info("received %s; stopping after the current step", signal.Signals(signum).name)
        self._signal = signum

    def request(self) -> None:
        """Stop as if a SIGTERM had arrived (used by tests and by in-process callers)."""
        self._signal = signal.SIGTERM

    @property
    def stop_requested(self) -> bool:
        if self._signal is not None:
            return True
        if self._parent:
            now = time.monotonic()
            if now >= self._next_parent_check:
                self._next_parent_check = now + PARENT_CHECK_S
                if os.getppid() != self._parent:
                    logger.warning("parent process %d is gone; stopping", self._parent)
                    self._signal = signal.SIGTERM
                    return True
        return False


def limit_threads(threads: int) -> None:
    """Set torch's intra-op threads (0 keeps torch's default)."""
    if threads > 0:
        torch.set_num_threads(threads)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago on `host` (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def child_env(threads: int = 1) -> dict[str, str]:
    """Environment for a spawned serl process: this one's, one OpenMP thread, parent pid."""
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = str(max(1, threads))
    env["MKL_NUM_THREADS"] = str(max(1, threads))
    env[PARENT_PID_ENV] = str(os.getpid())
    return env


def spawn_serl(
    command: str,
    config: Any,
    config_path: Path,
    log_path: Path,
    threads: int = 1,
    prefix: tuple[str, ...] = (),
) -> subprocess.Popen:
    """Write `config` (a config dataclass) to `config_path` and start `serl COMMAND --config`.

    stdout and stderr go to `log_path` (appended); the child gets `child_env(threads)` and a
    session of its own. `prefix` runs it through a launcher that execs it (e.g. `ip netns
    exec NS`, see serl.bench.netlab), so the returned pid is still serl's.
    """
    config_path.parent.mkdir(parents=True, exist_ok=True)
    config_path.write_text(json.dumps(config_to_dict(config), indent=2) + "\n")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as out:
        proc = subprocess.Popen(
            [*prefix, sys.executable, "-m", "serl.cli", command, "--config", str(config_path)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=child_env(threads),
            start_new_session=True,
        )
    logger.info("started serl %s (pid %d), log %s", command, proc.pid, log_path)
    return proc
