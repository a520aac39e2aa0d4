"""`serl robot-server` as a process with its config file, and backends without their driver."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from robots.backends.base import MissingDriverError, make_backend
from robots.client import RobotClient
from robots.config import ConfigError, RobotServerConfig, load_server_config
from serl.cli import main
from serl.processes import child_env, free_port

pytestmark = pytest.mark.timeout(90)


def test_server_process_takes_its_limits_from_the_config_file(tmp_path: Path) -> None:
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    config = tmp_path / "server.json"
    config.write_text(
        json.dumps(
            {
                "endpoint": endpoint,
                "safety": {"max_step_m": 0.01, "workspace_high_m": [0.7, 0.3, 0.5]},
                "sim": {"realtime": False},
            }
        )
    )
    # The `serl` script, as on the robot PC (`python -m serl.cli` would register the commands
    # of entry-point modules on a second copy of serl.cli, not on __main__).
    log = (tmp_path / "server.log").open("wb")
    env = child_env() | {"MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "serl"), "robot-server", "--config", str(config)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:
        with RobotClient(endpoint, timeout_s=30.0) as client:
            info = client.info()
            assert info["safety"]["max_step_m"] == 0.01
            assert info["safety"]["workspace_high_m"] == [0.7, 0.3, 0.5]
            result = client.move_delta([0.05, 0.0, 0.0])
            assert result.clamped == ("step_m",)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    assert "robot server stopped" in (tmp_path / "server.log").read_text()


def test_sigusr1_to_the_server_process_releases_an_estop_at_the_robot_pc(tmp_path: Path) -> None:
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    config = tmp_path / "server.json"
    config.write_text(json.dumps({"endpoint": endpoint, "sim": {"realtime": False}}))
    log = (tmp_path / "server.log").open("wb")
    env = child_env() | {"MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "serl"), "robot-server", "--config", str(config)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:
        with RobotClient(endpoint, timeout_s=30.0) as button:
            button.estop()
        with RobotClient(endpoint, timeout_s=30.0) as client:
            assert client.get_state()["estopped"]
            proc.send_signal(signal.SIGUSR1)
            deadline = time.monotonic() + 10.0
            while client.get_state()["estopped"]:
                assert time.monotonic() < deadline, "SIGUSR1 did not release the e-stop"
                time.sleep(0.05)
            assert client.move_delta([0.0, 0.0, 0.005]).accepted
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    assert "e-stop released on the robot PC" in (tmp_path / "server.log").read_text()


def test_config_file_with_an_unknown_field_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "server.json"
    path.write_text(json.dumps({"safety": {"max_step_mm": 5}}))
    with pytest.raises(ConfigError, match="max_step_mm"):
        load_server_config(path)


@pytest.mark.parametrize(
    ("backend", "module", "package"),
    [("franka", "franky", "franky-control"), ("ur", "rtde_control", "ur_rtde")],
)
def test_real_backend_without_its_driver_says_what_to_install(
    backend: str, module: str, package: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # as on a machine without the driver
    with pytest.raises(MissingDriverError) as err:
        make_backend(RobotServerConfig(backend=backend))  # type: ignore[arg-type]
    assert package in str(err.value)
    assert f"pip install serl-suite[robots,{backend}]" in str(err.value)


def test_robot_server_command_reports_a_missing_driver(
    capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "franky", None)
    assert main(["robot-server", "--backend", "franka", "--endpoint", "tcp://127.0.0.1:0"]) == 2
    assert "franky-control" in capsys.readouterr().err
