"""The READMEs' commands still match the code, so the docs cannot drift from it.

Every `serl ...` and `python -m ...` line in the fenced code blocks of README.md,
launch/README.md and sim/README.md (and the extra flags the README passes to the launch
scripts, which hand them to `serl learner` / `serl actor` / `serl robot-server`) is parsed
against its command's flags without running it: a renamed subcommand or flag fails here with
the README line named. The `serl ...` code spans of the prose, fragments that often leave out
flag values, must name an existing command and flags its --help shows. A few short commands
then run end to end with tiny budgets in a temporary directory, with only their budget flags
rewritten, and must exit 0 and write their files.
"""

from __future__ import annotations

import argparse
import importlib
import itertools
import json
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import tyro

from serl.cli import main as serl_main
from serl.data.datasets import episode_ids

ROOT = Path(__file__).resolve().parent.parent
DOCS = ("README.md", "launch/README.md", "sim/README.md")
SHELL_BLOCKS = ("", "bash", "sh", "shell", "console")
"""Languages of the fenced blocks that hold commands (json, python blocks hold none)."""
LAUNCH_SCRIPTS = {
    "launch/run_learner.sh": "learner",
    "launch/run_actor.sh": "actor",
    "launch/run_robot_server.sh": "robot-server",
}
"""The launch scripts pass their extra arguments on to these `serl` subcommands."""
PACKAGES = ("serl", "sim", "robots")
"""`python -m` lines of these packages are ours (`python -m pytest ...` is not checked)."""
ENV_ASSIGNMENT = re.compile(r"^[A-Z_][A-Z0-9_]*=")


@dataclass(frozen=True)
class DocCommand:
    """One command line of a README: `serl ARGV` or `python -m MODULE ARGV`."""

    where: str
    """`path:line` of the command's first line."""
    text: str
    """The command as the README writes it (continuations joined)."""
    module: str | None
    """The module of a `python -m` line; None for a `serl` line."""
    argv: tuple[str, ...]
    """The arguments after `serl` or after `python -m MODULE`."""


def _shell_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, line) of the shell code blocks, continuation lines joined."""
    block: str | None = None
    pending, start = "", 0
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        fence = raw.strip()
        if fence.startswith("```"):
            block = fence[3:].strip() if block is None else None
            continue
        if block not in SHELL_BLOCKS:
            continue
        if not pending:
            start = number
        if raw.rstrip().endswith("\\"):
            pending += raw.rstrip()[:-1] + " "
            continue
        yield start, pending + raw
        pending = ""


def _command(tokens: list[str]) -> tuple[str | None, list[str]] | None:
    """(module or None for serl, argv) of a tokenised line, or None if it is not ours."""
    while tokens and ENV_ASSIGNMENT.match(tokens[0]):
        tokens = tokens[1:]  # SERL_CONFIG=my_task.json launch/run_learner.sh ...
    if not tokens:
        return None
    program, rest = tokens[0], tokens[1:]
    if program == "serl" or program.endswith("/bin/serl"):
        return None, rest
    if program in LAUNCH_SCRIPTS:
        return None, [LAUNCH_SCRIPTS[program], *rest]
    python = program == "python" or program.endswith("/bin/python")
    if python and rest[:1] == ["-m"] and rest[1].split(".")[0] in PACKAGES:
        return rest[1], rest[2:]
    return None


def doc_commands(relative: str) -> list[DocCommand]:
    """Every serl / python -m command of one README's shell blocks."""
    found = []
    for number, line in _shell_lines(ROOT / relative):
        parsed = _command(shlex.split(line, comments=True))
        if parsed is not None:
            module, argv = parsed
            found.append(DocCommand(f"{relative}:{number}", line.strip(), module, tuple(argv)))
    return found


def inline_commands(relative: str) -> list[DocCommand]:
    """The `serl ...` / `python -m ...` code spans of one README's prose: fragments that name
    a command and some of its flags, often without their values (`serl iwocs
    --fallback-checkpoint`, `python -m sim.bench [--quick]`)."""
    text = (ROOT / relative).read_text()
    blank = lambda match: re.sub(r"[^\n]", " ", match.group())  # noqa: E731 (keeps line numbers)
    prose = re.sub(r"```.*?```", blank, text, flags=re.S)
    found = []
    for match in re.finditer(r"`([^`]+)`", prose):
        parsed = _command([token.strip("[]") for token in match.group(1).split()])
        if parsed is not None and (parsed[0] or parsed[1]):  # not the bare program, `serl`
            number = prose.count("\n", 0, match.start()) + 1
            text_ = " ".join(match.group(1).split())
            found.append(DocCommand(f"{relative}:{number}", text_, parsed[0], tuple(parsed[1])))
    return found


ALL_COMMANDS = [command for doc in DOCS for command in doc_commands(doc)]
INLINE_COMMANDS = [command for doc in DOCS for command in inline_commands(doc)]


class _Parsed(Exception):
    """Raised by the patched parsers once a command's flags have parsed: nothing runs."""


@pytest.fixture
def parse_only(monkeypatch: pytest.MonkeyPatch):
    """Stop every command right after its flags parse (tyro or argparse).

    Commands parse in stages (`--agent` and `--config` first, with `parse_known_args`); the
    stage that sees the README's last flag is the final `tyro.cli`, or the `parse_args` call
    whose arguments end the command line (`serl bench` first parses `[]` for its defaults).
    """
    real_cli, real_parse = tyro.cli, argparse.ArgumentParser.parse_args
    state = {"argv": [], "in_tyro": False}

    def cli(*args, **kwargs):
        state["in_tyro"] = True
        try:
            real_cli(*args, **kwargs)
        finally:
            state["in_tyro"] = False
        raise _Parsed

    def parse_args(self, args=None, namespace=None):
        namespace = real_parse(self, args, namespace)
        argv, given = state["argv"], list(args or [])
        ends_the_line = given and argv[len(argv) - len(given) :] == given
        if not state["in_tyro"] and (ends_the_line or len(argv) <= 1):
            raise _Parsed
        return namespace

    monkeypatch.setattr(tyro, "cli", cli)
    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_args)
    return state


def test_the_readmes_have_commands_to_check() -> None:
    """The extraction finds the commands the READMEs are known to show (not silently none)."""
    where = {command.where.split(":")[0] for command in ALL_COMMANDS}
    assert where == set(DOCS)
    subcommands = {command.argv[0] for command in ALL_COMMANDS if command.module is None}
    assert {"train", "train-local", "eval", "record-demos", "bench", "keys", "actor"} <= subcommands
    assert {"sim.collect", "serl.data.importers"} <= {command.module for command in ALL_COMMANDS}
    continued = [c for c in ALL_COMMANDS if "--reward.checkpoint" in c.argv]
    assert continued and continued[0].argv[:3] == ("actor", "--env", "robot:franka-peg")


@pytest.mark.parametrize("command", ALL_COMMANDS, ids=[c.where for c in ALL_COMMANDS])
def test_readme_command_parses(command: DocCommand, parse_only, capsys) -> None:
    parse_only["argv"] = list(command.argv)
    if command.module is None:
        run = serl_main
    else:
        run = importlib.import_module(command.module).main
    try:
        code = run(list(command.argv))
    except _Parsed:
        return
    except SystemExit as exit_info:
        code = exit_info.code
        if code == 0 and "--help" in command.argv:
            return
    err = capsys.readouterr()
    pytest.fail(
        f"{command.where}: `{command.text}` does not parse (exit {code}):\n{err.out}{err.err}"
    )


def readme_command(*prefix: str, module: str | None = None) -> DocCommand:
    """The first README command of `module` (None: serl) whose arguments start with `prefix`."""
    for command in ALL_COMMANDS:
        if command.module == module and command.argv[: len(prefix)] == prefix:
            return command
    shown = " ".join(prefix)
    raise LookupError(f"no README command `{module or 'serl'} {shown} ...`: renamed or removed?")


def with_flags(command: DocCommand, flags: dict[str, str]) -> list[str]:
    """The command's arguments with these flags' values replaced, or appended if absent: the
    only rewriting the end-to-end runs do (budgets and, where a later line reads a run's
    output, the run directory)."""
    argv, todo = list(command.argv), dict(flags)
    for index, token in enumerate(argv[:-1]):
        if token in todo:
            argv[index + 1] = todo.pop(token)
    return argv + [item for pair in todo.items() for item in pair]


def run_readme(command: DocCommand, argv: list[str] | None = None) -> None:
    """Run a README command in-process (the working directory is the test's tmp dir)."""
    argv = list(command.argv) if argv is None else argv
    run = serl_main if command.module is None else importlib.import_module(command.module).main
    assert run(argv) == 0, f"{command.where}: `{command.text}` run as {argv} failed"


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.timeout(120)
def test_quickstart_train_then_eval_run_as_the_readme_shows(in_tmp: Path, capsys) -> None:
    """`serl train` on Pendulum (learner + 2 actor processes) with a tiny budget in the run
    directory scripts/quickstart.sh uses, then the README's `serl eval ... --video` on it."""
    train = readme_command("train", "--env", "Pendulum-v1")
    budget = {
        "--steps": "200",
        "--random-steps": "100",
        "--min-buffer": "100",
        "--eval-episodes": "1",
        "--run-dir": "runs/quickstart",
    }
    run_readme(train, with_flags(train, budget) + ["--no-progress"])
    run = in_tmp / "runs/quickstart"
    for name in ("checkpoint.safetensors", "metrics.jsonl", "curve.png"):
        assert (run / name).is_file(), name
    assert "final evaluation of the checkpoint's policy on Pendulum-v1" in capsys.readouterr().out

    evaluate = readme_command("eval", "runs/quickstart/checkpoint.safetensors")
    run_readme(evaluate, with_flags(evaluate, {"--episodes": "1"}))
    assert (run / "policy.gif").read_bytes()[:6] in (b"GIF87a", b"GIF89a")
    assert "policy on Pendulum-v1, 1 episodes" in capsys.readouterr().out


@pytest.mark.timeout(90)
def test_train_local_on_panda_reach_runs_as_the_readme_shows(in_tmp: Path) -> None:
    command = readme_command("train-local", "--env", "sim:PandaReach-v0")
    budget = {
        "--steps": "120",
        "--random-steps": "60",
        "--start-training": "60",
        "--eval-every": "120",
        "--eval-episodes": "1",
        "--run-dir": "runs/reach",
    }
    run_readme(command, with_flags(command, budget) + ["--no-progress"])
    last = json.loads((in_tmp / "runs/reach/metrics.jsonl").read_text().splitlines()[-1])
    assert last["step"] == 120 and "eval/success_rate" in last  # the final evaluation
    assert (in_tmp / "runs/reach/checkpoint.safetensors").is_file()
    assert (in_tmp / "runs/reach/curve.png").is_file()


def test_keys_generate_as_the_launch_readme_shows(in_tmp: Path) -> None:
    command = readme_command("keys", "generate", "keys")
    run_readme(command)
    named = {
        "server.key_secret",
        "server.key",
        "robot-0.key_secret",
        "authorized/robot-0.key",
        "robot-1.key_secret",
        "authorized/robot-1.key",
    }  # what launch/README.md names
    written = {p.relative_to(in_tmp / "keys").as_posix() for p in (in_tmp / "keys").rglob("*")}
    assert named <= written


@pytest.mark.timeout(60)
def test_recorded_demos_inspect_as_the_readme_shows(in_tmp: Path, capsys) -> None:
    record = readme_command("record-demos", "--env", "sim:PandaPickCube-v0")
    run_readme(record, with_flags(record, {"--n": "2"}))
    capsys.readouterr()
    run_readme(readme_command("inspect-dataset", "data/pick"))
    out = capsys.readouterr().out
    assert "episodes:          2" in out and "success rate:      100.0%" in out


@pytest.mark.timeout(60)
def test_sim_collect_then_import_as_the_readme_shows(in_tmp: Path) -> None:
    collect = readme_command("--env", "PandaPegInsert-v0", module="sim.collect")
    run_readme(collect, with_flags(collect, {"--episodes": "2"}))
    assert (in_tmp / "data/peg_noisy.npz").is_file()
    run_readme(readme_command("npz", "data/peg_noisy.npz", module="serl.data.importers"))
    assert len(episode_ids(in_tmp / "data/peg_noisy")) == 2


@pytest.mark.timeout(90)
def test_reward_frames_then_classifier_as_the_readme_shows(in_tmp: Path) -> None:
    record = readme_command("record-rewards", "--env", "sim:PandaReachPixels-v0")
    run_readme(record, with_flags(record, {"--episodes": "8"}))
    train = readme_command("train-reward", "data/frames.npz")
    run_readme(train, with_flags(train, {"--train.epochs": "2"}) + ["--train.no-progress"])
    assert (in_tmp / "runs/reward/classifier.safetensors").is_file()
    report = json.loads((in_tmp / "runs/reward/report.json").read_text())
    assert sum(map(sum, report["confusion_matrix"])) > 0  # evaluated on held-out frames


def _help(command: DocCommand, capsys) -> str:
    """The --help text of the command the span names (its words before the first flag)."""
    words = list(itertools.takewhile(lambda token: not token.startswith("-"), command.argv))
    run = serl_main if command.module is None else importlib.import_module(command.module).main
    with pytest.raises(SystemExit) as exit_info:
        run([*words, "--help"])
    assert exit_info.value.code == 0, f"{command.where}: `{command.text}`: no such command"
    return capsys.readouterr().out


@pytest.mark.parametrize("command", INLINE_COMMANDS, ids=[c.where for c in INLINE_COMMANDS])
def test_readme_prose_command_names_existing_flags(command: DocCommand, capsys) -> None:
    text = _help(command, capsys)
    flags = [token.split("=")[0] for token in command.argv if token.startswith("--")]
    missing = [flag for flag in flags if not re.search(re.escape(flag) + r"(?![\w.-])", text)]
    assert not missing, f"{command.where}: `{command.text}`: {missing} not in its --help"
