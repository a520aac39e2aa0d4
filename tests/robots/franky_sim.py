"""Processes of the franka backend's tests: franky-sim and `serl robot-server --backend franka`.

franky-sim (a MuJoCo FR3 that speaks the libfranka network protocol) runs from its own
environment (mujoco 4 and pin; the suite pins mujoco 3.3.7), made by
`scripts/setup.sh ...,franky-sim` in `.venv-franky-sim` or `$SERL_FRANKY_SIM_VENV`. The robot
server is the `serl` script, as on the robot PC, with ``--franka.realtime-config ignore`` (no
PREEMPT_RT kernel here). franky-sim steps its physics in real time and idles at half a core,
so a test module starts one with its server and stops both when the module is done.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from serl.processes import child_env, free_port

ROOT = Path(__file__).resolve().parents[2]
FRANKY_SIM_VENV = Path(os.environ.get("SERL_FRANKY_SIM_VENV", ROOT / ".venv-franky-sim"))
START_TIMEOUT_S = 60.0


def wait_for_log(path: Path, pattern: str, proc: subprocess.Popen, what: str) -> re.Match:
    """The first match of `pattern` in the log at `path`, once the process has written it."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        match = re.search(pattern, path.read_text(errors="replace"))
        if match:
            return match
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    raise AssertionError(f"{what} did not come up:\n{path.read_text(errors='replace')}")


def end_process(proc: subprocess.Popen, sig: int = signal.SIGINT) -> int:
    """Stop a process with `sig` (SIGKILL after 15 s); its exit code."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


@contextlib.contextmanager
def run_franky_sim(log_path: Path) -> Iterator[tuple[str, subprocess.Popen]]:
    """A headless franky-sim process; yields the loopback address it serves the arm on (the
    first free one of 127.0.0.1, 127.0.0.2, ...: libfranka's ports are fixed) and the process."""
    exe = FRANKY_SIM_VENV / "bin" / "franky-sim"
    if not exe.exists():
        pytest.skip(f"{exe} is missing; run `scripts/setup.sh dev,franky-sim`")
    with log_path.open("wb") as log:
        # --simulator mujoco: the default 'auto' fails when genesis (an optional extra) is absent.
        proc = subprocess.Popen(
            [str(exe), "--simulator", "mujoco"],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=os.environ | {"PYTHONUNBUFFERED": "1"},
        )
    try:
        yield wait_for_log(log_path, r"using '([0-9.]+)'", proc, "franky-sim").group(1), proc
    finally:
        end_process(proc)


def serl_robot_server(args: list[str], log_path: Path) -> subprocess.Popen:
    """`serl robot-server ARGS` with its output in `log_path`."""
    # The `serl` script, as on the robot PC; PYTHONPATH: this tree's robots/, wherever the
    # venv's editable install points.
    env = child_env() | {"PYTHONPATH": str(ROOT)}
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [str(Path(sys.executable).parent / "serl"), "robot-server", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
        )


@contextlib.contextmanager
def run_server(host: str, tmp: Path, config: dict) -> Iterator[str]:
    """`serl robot-server --backend franka` against the arm at `host`, with the server config
    `config` (JSON fields); yields its endpoint. It must stop cleanly (exit 0) at the end."""
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    config_path = tmp / "server.json"
    config_path.write_text(json.dumps(config))
    log_path = tmp / "server.log"
    args = [
        *("--config", str(config_path), "--backend", "franka", "--endpoint", endpoint),
        *("--franka.robot-ip", host, "--franka.realtime-config", "ignore"),
    ]
    proc = serl_robot_server(args, log_path)
    try:
        wait_for_log(log_path, r"listening on", proc, "the robot server")
        yield endpoint
    finally:
        code = end_process(proc, signal.SIGTERM)
        log = log_path.read_text(errors="replace")
        assert code == 0 and "robot server stopped" in log, log


@contextlib.contextmanager
def franka_server(tmp: Path, config: dict) -> Iterator[str]:
    """A franky-sim and a franka robot server with `config` in front of it; yields the
    server's endpoint."""
    with (
        run_franky_sim(tmp / "franky-sim.log") as (host, _),
        run_server(host, tmp, config) as endpoint,
    ):
        yield endpoint
