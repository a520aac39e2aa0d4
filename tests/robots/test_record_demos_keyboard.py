"""`serl record-demos` on `robot:` tasks with a person at the keyboard: the keys the task uses,
and a clear one-line refusal when no robot server answers."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import pytest

from robots.env import make
from robots.server import RobotServer
from serl.data.datasets import load_dataset
from serl.teleop.keyboard import keymap
from tests.robots.conftest import server_config

pytestmark = pytest.mark.timeout(60)

REPO = Path(__file__).resolve().parents[2]
CLI = "import sys; from serl.cli import main; sys.exit(main())"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serl(args: list[str], cwd: Path, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-c", CLI, *args], env=env, cwd=cwd, text=True, **kwargs
    )


def test_a_person_at_the_keyboard_records_a_marked_reach_on_the_sim_server(
    tmp_path: Path,
) -> None:
    server = RobotServer(server_config(realtime=True)).start()
    task = tmp_path / "reach.json"
    task.write_text(json.dumps({"server": server.endpoint, "max_episode_steps": 40, "cameras": {
        "front": {"source": "server:front", "size": [64, 64]}}}))  # fmt: skip
    out = tmp_path / "demos"
    args = ["record-demos", "--env", f"robot:{task}", "--device", "keyboard", "--n", "1",
            "--out", str(out)]  # fmt: skip
    proc = serl(args, tmp_path, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE)  # fmt: skip
    said: list[str] = []

    def operator() -> None:  # reads the terminal, types when asked
        for line in proc.stderr:
            said.append(line)
            if "press ENTER to start" in line:
                proc.stdin.write("\n")
                proc.stdin.flush()
                for keys in ("w", "w", "w", "y"):  # +x for a while, then a success mark
                    time.sleep(0.3)
                    proc.stdin.write(keys)
                    proc.stdin.flush()

    reader = threading.Thread(target=operator, daemon=True)
    reader.start()
    try:
        stdout = proc.stdout.read()
        proc.wait(timeout=40)
    finally:
        proc.kill()
        server.close()
    reader.join(timeout=5)
    assert proc.returncode == 0, "".join(said)
    assert "keys: 'w' +x" in stdout and "'c'" not in stdout  # a reach task: no gripper keys
    assert f"live view: {out / 'live.png'}" in stdout
    assert "saved 1 episodes (1 successful)" in stdout
    assert any("saved as a success" in line for line in said)
    (episode,) = load_dataset(out).episodes
    assert episode.success and (episode.actions[:, 0] > 0).any()  # the person's +x
    assert episode.observations["front"].shape[1:] == (64, 64, 3)
    image = cv2.imread(str(out / "live.png"))
    assert image is not None and image.shape == (256, 256, 3) and image.std() > 0


def test_the_sim_reach_keymap_lists_translation_and_episode_keys_only() -> None:
    env = make("sim-reach")  # reads the shipped task file; contacts no server
    keys = keymap(env.action_space.shape[0])
    assert set(keys) == {"w", "s", "a", "d", "r", "f", "enter", "y", "n", "x", "q"}
    assert not {"c", "v", " ", "u", "j"} & set(keys)  # no gripper, rotation or intervention


def test_record_demos_without_a_server_says_it_is_unreachable_within_seconds(
    tmp_path: Path,
) -> None:
    endpoint = f"tcp://127.0.0.1:{free_port()}"  # nothing listens there
    task = tmp_path / "reach.json"
    task.write_text(json.dumps({"server": endpoint, "cameras": {
        "front": {"source": "server:front", "size": [64, 64]}}}))  # fmt: skip
    args = ["record-demos", "--env", f"robot:{task}", "--device", "keyboard", "--n", "1",
            "--out", str(tmp_path / "demos")]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", CLI, *args], env=env, cwd=tmp_path, stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=45,
    )  # fmt: skip
    elapsed = time.monotonic() - start
    assert proc.returncode == 2, proc.stderr
    assert f"the robot server at {endpoint} is unreachable" in proc.stderr
    assert f"serl robot-server --backend sim --endpoint {endpoint}" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert elapsed < 15.0  # a 2 s probe plus the imports; the reset used to wait 30 s
    assert not (tmp_path / "demos" / "data").exists()
