"""Processes of the franka backend's tests: franky-sim and `serl robot-server --backend franka`.

franky-sim (a MuJoCo FR3 that speaks the libfranka network protocol) runs from its own
environment (mujoco 4 and pin; the suite pins mujoco 3.3.7), made by
`scripts/setup.sh ...,franky-sim` in `.venv-franky-sim` or `$SERL_FRANKY_SIM_VENV`. The robot
server is started as launch/README.md tells a user to: `launch/run_robot_server.sh` (which
runs the venv's `serl` script) with ``--franka.realtime-config ignore`` (no PREEMPT_RT kernel
here). franky-sim steps its physics in real time and idles at half a core,
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
SERL = str(Path(sys.executable).parent / "serl")
"""The `serl` script of the venv running the tests."""
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


def spawn(
    command: list[str], log_path: Path, settings: dict[str, str] | None = None
) -> subprocess.Popen:
    """`command` with its output in `log_path` and `settings` (a launch script's SERL_*
    variables) in its environment."""
    # PYTHONPATH: this tree's packages first, wherever the venv's editable install points.
    path = [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = child_env() | {"PYTHONPATH": os.pathsep.join(path)} | (settings or {})
    with log_path.open("wb") as log:
        return subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
        )


def serl_process(args: list[str], log_path: Path) -> subprocess.Popen:
    """`serl ARGS` (the venv's `serl` script, as a user runs it) with its output in `log_path`."""
    return spawn([SERL, *args], log_path)


@contextlib.contextmanager
def run_server(host: str, tmp: Path, config: dict) -> Iterator[str]:
    """`serl robot-server --backend franka` against the arm at `host`, with the server config
    `config` (JSON fields), started by `launch/run_robot_server.sh` as launch/README.md says;
    yields its endpoint. It must stop cleanly (exit 0) at the end."""
    port = free_port()
    config_path = tmp / "server.json"
    config_path.write_text(json.dumps(config))
    log_path = tmp / "server.log"
    settings = {
        "SERL_ROBOT_BACKEND": "franka",
        "SERL_ROBOT_IP": host,
        "SERL_ROBOT_CONFIG": str(config_path),
        "SERL_ROBOT_PORT": str(port),
        "SERL": SERL,
    }
    script = [str(ROOT / "launch" / "run_robot_server.sh"), "--franka.realtime-config", "ignore"]
    proc = spawn(script, log_path, settings)
    try:
        wait_for_log(log_path, r"listening on", proc, "the robot server")
        yield f"tcp://127.0.0.1:{port}"
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
