"""What the READMEs' examples cost on this machine: prints the table docs/readme-costs.md quotes.

Each example runs as the README writes it (`.venv/bin/serl` becomes `python -m serl.cli` of
this interpreter), one at a time, in a temporary directory, with a smaller budget where the
README's would take more than about half a minute. Three kinds of figure:

* `full`: the README's command as written; the time is measured, not estimated.
* `steps`: a training run cut to `--steps S` (and, where the warm-up alone would take minutes,
  a shorter warm-up). Its rate is env steps/s over the second half of its learning phase, read
  from the timestamps of the run's metrics.jsonl (for `serl train`, the learner's updates/s:
  it does one update per env step and the run ends when it has); estimate = the run's
  wall-clock + (README steps - S) / rate. Warm-up steps are costed at the learning rate, so
  the estimate errs high; periodic evaluations beyond the short run's last one are not in it.
* `items`: two runs of n1 and n2 items (steps of pretraining); seconds per item = (t2 - t1) /
  (n2 - n1); estimate = t1 + (README items - n1) * seconds per item.

The load average before each example is printed beside it: on a shared machine the figures
are those of a loaded CPU. Run: `.venv/bin/python scripts/time_readme_examples.py [--bench]
[--only NAME ...]` (about 7 minutes on the 2-core development machine; `--bench` also times the
README's three `--quick` benchmarks).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ("README.md", "sim/README.md", "launch/README.md")


@dataclass(frozen=True)
class Example:
    name: str
    command: str
    """The command exactly as a README writes it."""
    kind: str = "full"
    """full, steps or items (module docstring)."""
    budget: int = 0
    """The README's env steps (steps) or items (items), default values included."""
    short: tuple[str, ...] = ()
    """Flags of the short run (steps), replacing the README's values or added."""
    learn_from: int = 0
    """First env step of the short run's learning phase (steps)."""
    item_flag: str = ""
    """The flag that sets the item count (items)."""
    sizes: tuple[int, int] = (0, 0)
    """n1 and n2 (items)."""


QUICK = ("--eval-episodes", "1", "--no-progress")
EXAMPLES = (
    Example(
        "quickstart",
        ".venv/bin/serl train --env Pendulum-v1 --actors 2 --steps 6000",
        "steps", 6000, ("--steps", "1500", "--run-dir", "runs/quickstart", "--no-progress"), 1000,
    ),
    Example(
        "eval-gif",
        ".venv/bin/serl eval runs/quickstart/checkpoint.safetensors "
        "--video runs/quickstart/policy.gif",
    ),
    Example(
        "reach-local",
        ".venv/bin/serl train-local --env sim:PandaReach-v0 --agent-cfg.init-temperature 0.1",
        "steps", 20_000,
        ("--steps", "1400", "--log-every", "50", "--run-dir", "runs/reach", *QUICK), 1000,
    ),
    Example(
        "cheetah-rlpd",
        ".venv/bin/serl train-local --env HalfCheetah-v5 --agent rlpd",
        "steps", 20_000, ("--steps", "1080", "--log-every", "10", "--run-dir", "runs/hc", *QUICK),
        1000,
    ),
    Example(
        "pick-demos",
        ".venv/bin/serl record-demos --env sim:PandaPickCube-v0 --device expert --n 20 "
        "--out data/pick",
    ),
    Example(
        "pick-rlpd",
        ".venv/bin/serl train --env sim:PandaPickCube-v0 --agent rlpd --prior-data data/pick",
        "steps", 6000, ("--steps", "1080", "--run-dir", "runs/pick", *QUICK), 1000,
    ),
    Example(
        "peg-collect",
        "python -m sim.collect --env PandaPegInsert-v0 --quality noisy --out data/peg_noisy.npz",
    ),
    Example("peg-import", "python -m serl.data.importers npz data/peg_noisy.npz data/peg_noisy"),
    Example(
        "reward-frames",
        ".venv/bin/serl record-rewards --env sim:PandaReachPixels-v0 --label info "
        "--views front wrist --out data/frames.npz",
    ),
    Example(
        "train-reward",
        ".venv/bin/serl train-reward data/frames.npz --train.classifier.views front wrist "
        "--out runs/reward",
    ),
    Example(
        "pick-px-demos",
        ".venv/bin/serl record-demos --env sim:PandaPickCubePixels64-v0 --device expert --n 30 "
        "--out data/pick_px",
    ),
    Example(
        "pretrain",
        ".venv/bin/serl pretrain-encoder --data data/pick_px --views front wrist "
        "--out runs/conv.safetensors",
        "items", 1000, item_flag="--steps", sizes=(20, 60),
    ),
    Example(
        "reach-px-demos",
        ".venv/bin/serl record-demos --env sim:PandaReachPixels64-v0 --device expert --n 20 "
        "--successes-only --out data/reach-demos",
    ),
    Example(
        "reach-px-train",
        ".venv/bin/serl train --env sim:PandaReachPixels64-v0 --agent rlpd --agent-cfg.num-qs 2 "
        "--agent-cfg.utd 8 --agent-cfg.init-temperature 0.01 --agent-cfg.no-backup-entropy "
        "--agent-cfg.encoder.backbone efficientnet-lite0 --prior-data data/reach-demos "
        "--steps 3000",
        "steps", 3000,
        ("--steps", "300", "--random-steps", "100", "--min-buffer", "100", "--run-dir", "runs/rpx",
         *QUICK),
        100,
    ),
    Example(
        "sim-collect-pick",
        "python -m sim.collect --env PandaPickCube-v0 --episodes 100 --quality expert "
        "--out data/pick.npz",
    ),
    Example(
        "sim-collect-reach-px",
        "python -m sim.collect --env PandaReach-v0 --quality random --obs-mode pixels "
        "--out data/reach_px.npz",
    ),
)  # fmt: skip
BENCH_EXAMPLES = (
    Example("bench-learner", ".venv/bin/serl bench learner --quick --json runs/bench-learner.json"),
    Example("bench-transport", ".venv/bin/serl bench transport --quick"),
    Example("bench-sim", ".venv/bin/serl bench sim --quick"),
)
"""The README's `--quick` benchmarks, timed with --bench (about 4 minutes more)."""


def where(command: str) -> str:
    """`path:line` of the README line that shows the command (continuations joined)."""
    want = " ".join(command.split())
    for doc in DOCS:
        lines = (ROOT / doc).read_text().splitlines()
        for number, line in enumerate(lines, start=1):
            joined, rest = line, iter(lines[number:])
            while joined.rstrip().endswith("\\"):
                joined = joined.rstrip()[:-1] + " " + next(rest, "")
            if " ".join(joined.split("#")[0].split()) == want:
                return f"{doc}:{number}"
    return "(not in the READMEs)"


def with_flags(argv: list[str], flags: tuple[str, ...]) -> list[str]:
    """argv with each `--flag value` of flags replacing the README's value, or appended; a flag
    without a value (the next item is a flag too, or none) is appended if absent."""
    argv, index = list(argv), 0
    while index < len(flags):
        flag = flags[index]
        has_value = index + 1 < len(flags) and not flags[index + 1].startswith("--")
        if has_value and flag in argv[:-1]:
            argv[argv.index(flag) + 1] = flags[index + 1]
        elif flag not in argv:
            argv += [flag, flags[index + 1]] if has_value else [flag]
        index += 2 if has_value else 1
    return argv


def to_argv(command: str) -> list[str]:
    tokens = shlex.split(command)
    if tokens[0].endswith("/bin/serl"):
        return [sys.executable, "-m", "serl.cli", *tokens[1:]]
    return [sys.executable, *tokens[1:]]  # python -m ...


def timed(argv: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{shlex.join(argv)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return seconds


def learning_rate(metrics: Path, learn_from: int) -> float:
    """Env steps/s over the second half of the learning phase, from the run's records.

    `serl train` paces by the learner: its actors may run a publishing period ahead and the
    learner then catches up to one update per env step beyond the warm-up (`--utd-ratio 1`, the
    README's), so there the rate is the learner's updates/s; `train-local` steps and updates in
    turn, so its env steps are the clock.
    """
    records = [json.loads(line) for line in metrics.read_text().splitlines()]
    learner = any("learner/updates" in record for record in records)
    first_at: dict[float, float] = {}  # the first record of each count (later ones repeat it)
    for record in records:
        if learner and "learner/updates" in record and record["step"] > learn_from:
            first_at.setdefault(record["learner/updates"], record["time_s"])
        elif not learner and "step" in record and record["step"] > learn_from:
            if not any(key.startswith("eval/") for key in record):
                first_at.setdefault(record["step"], record["time_s"])
    points = sorted(first_at.items())
    if len(points) < 3:
        raise RuntimeError(f"{metrics}: too few records after step {learn_from} for a rate")
    mid, last = points[len(points) // 2 - 1], points[-1]
    return (last[0] - mid[0]) / (last[1] - mid[1])


def measure(example: Example, cwd: Path) -> tuple[str, float]:
    """(rate as text, estimated seconds at the README's budget)."""
    argv = to_argv(example.command)
    if example.kind == "full":
        seconds = timed(argv, cwd)
        return "measured at the README's budget", seconds
    if example.kind == "items":
        n1, n2 = example.sizes
        out = argv.index("--out") + 1
        t1 = timed(with_flags(argv, (example.item_flag, str(n1), "--no-progress")), cwd)
        argv[out] = argv[out] + ".second"
        t2 = timed(with_flags(argv, (example.item_flag, str(n2), "--no-progress")), cwd)
        per_item = (t2 - t1) / (n2 - n1)
        rate = f"{per_item:.2f} s per {example.item_flag.strip('-')} (n = {n1}, {n2})"
        return rate, t1 + (example.budget - n1) * per_item
    short = with_flags(argv, example.short)
    seconds = timed(short, cwd)
    steps = int(short[short.index("--steps") + 1])
    run_dir = cwd / short[short.index("--run-dir") + 1]
    rate = learning_rate(run_dir / "metrics.jsonl", example.learn_from)
    text = f"{rate:.1f} env steps/s ({steps} steps in {seconds:.0f} s)"
    return text, seconds + (example.budget - steps) / rate


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    names = [example.name for example in EXAMPLES + BENCH_EXAMPLES]
    parser.add_argument("--only", nargs="+", choices=names, help="run only these (and not the "
                        "examples whose output they read: give those too)")  # fmt: skip
    parser.add_argument("--bench", action="store_true", help="also time the --quick benchmarks")
    opts = parser.parse_args()
    examples = EXAMPLES + BENCH_EXAMPLES if opts.bench or opts.only else EXAMPLES
    chosen = [example for example in examples if not opts.only or example.name in opts.only]
    print(f"{os.cpu_count()} CPUs, {sys.executable}\n")
    print("| example | README line | load (1 min) | kind | rate | time at the README's budget |")
    print("| --- | --- | --- | --- | --- | --- |")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="serl-readme-") as tmp:
        for example in chosen:
            load = os.getloadavg()[0]
            rate, seconds = measure(example, Path(tmp))
            print(
                f"| `{example.name}` | {where(example.command)} | {load:.1f} | {example.kind} "
                f"| {rate} | {_duration(seconds)} |",
                flush=True,
            )
    print(f"\nthis script: {_duration(time.perf_counter() - start)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
