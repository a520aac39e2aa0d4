"""The launch scripts: valid bash, shellcheck-clean, and they refuse to start without keys."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

LAUNCH = Path(__file__).resolve().parents[1] / "launch"
SCRIPTS = [LAUNCH / "run_learner.sh", LAUNCH / "run_actor.sh"]

pytestmark = pytest.mark.timeout(30)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_launch_script_is_executable_bash(script: Path) -> None:
    assert os.access(script, os.X_OK)
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed")
def test_launch_scripts_are_shellcheck_clean() -> None:
    result = subprocess.run(["shellcheck", *map(str, SCRIPTS)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize(
    ("script", "env", "message"),
    [
        ("run_learner.sh", {}, "server.key_secret not found; run 'false keys generate"),
        ("run_actor.sh", {"SERL_LEARNER_HOST": "gpu"}, "server.key not found; copy server.key"),
        ("run_actor.sh", {}, "set SERL_LEARNER_HOST"),
    ],
)
def test_launch_scripts_fail_closed_without_keys(
    tmp_path: Path, script: str, env: dict[str, str], message: str
) -> None:
    environment = dict(os.environ, SERL_KEYS=str(tmp_path / "none"), SERL="false", **env)
    environment["SERL_DEVICE"] = "cpu"
    result = subprocess.run(
        [str(LAUNCH / script)], capture_output=True, text=True, env=environment, cwd=tmp_path
    )
    assert result.returncode != 0
    assert message in result.stderr
