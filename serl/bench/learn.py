"""`serl bench learn --suite NAME`: sample efficiency and wall-clock of full training runs.

Every run goes through the actor-learner processes (`serl.train.train`: one learner and one
actor process on loopback), never a shortcut loop, and writes its own metrics.jsonl under
`--out`. The harness then reads the evaluation curves, writes `summary.json`, prints a table
(mean ± std over seeds at fixed env-step budgets, env steps and wall-clock to a threshold) and
draws `curves.png` (return or success against env steps and against wall-clock, published
references dashed).

Suites (`SUITES`; `--quick` runs the small size that CI runs, never a result to quote):

* `pendulum`: our SAC against Stable-Baselines3's SAC (`serl.bench.sb3_peer`) on Pendulum-v1,
  same budget, networks, hyper-parameters and seeds, run one after the other in one process.
* `dmc-state`: five DeepMind Control tasks with state observations at 100k env steps against
  the state-SAC column of the CURL paper (Laskin et al. 2020, Table 1, 100k steps).
* `panda`: PandaPickCube and PandaPegInsert, state and pixels, with 20 scripted-expert demos
  as prior data (RLPD mode, 10k env steps): success rate against env steps and wall-clock.
  Target for state PickCube: >= 90% success within 30 minutes on the 2-core CPU machine
  (`--tasks sim:PandaPickCube-v0` runs that task alone).
* `panda-pixels`: PandaReach and PandaPickCube from the front and wrist cameras (64x64) plus
  proprioception, 20 scripted demos, RLPD mode as `panda`; the methods are image encoders side
  by side: DrQ trained end to end (`drq`), the frozen ImageNet EfficientNet-Lite0 (`imagenet`),
  the suite's conv trunk pretrained on the task's demo frames by `serl pretrain-encoder` and
  frozen (`pretrained`), and the same trunk frozen at random (`random`, the control). The table
  adds learner updates/s and bytes per stored transition. Targets (2-core CPU): PickCube >= 80 %
  within 60 minutes, Reach >= 90 % within 15 minutes. PickCube also at 128x128
  (`sim:PandaPickCubePixels-v0`). `--minutes 60` stops each run at the target's wall-clock:
  what DrQ, too slow on a CPU to run its steps, reaches in that time.
* `mujoco-100k`: four gymnasium MuJoCo v5 tasks at 100k env steps in RLPD mode (10 critics,
  G = 20, no prior data) against REDQ at 100k (Chen et al. 2021, Table 1). Meant for a GPU.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from tqdm import tqdm  # noqa: E402

from serl.agents.registry import agent_spec  # noqa: E402
from serl.bench.curves import (  # noqa: E402
    Curve,
    curve_from_metrics,
    first_crossing,
    mean_std,
    rolling_mean,
    value_at,
)
from serl.bench.units import write_json_atomic  # noqa: E402

OURS = "serl"
PEER = "sb3"
CLASSIFIER_SUFFIX = "-classifier"
"""Appended to every method's name when a reward classifier replaces the env's reward."""
PEER_THREADS = 1
"""torch threads of the SB3 run, like each of our processes (`serl train --threads 1`): on a
2-core machine two threads per process oversubscribe the cores and slow SB3 down by ~5x."""


@dataclass(frozen=True)
class Suite:
    tasks: tuple[str, ...]
    """Environment ids."""
    agent: str
    """Agent preset of our runs (sac, rlpd)."""
    steps: int
    """Env steps per run."""
    budgets: tuple[int, ...]
    """Env-step budgets at which the table reports the metric."""
    random_steps: int
    """Uniformly random warm-up steps."""
    metric: str = "returns"
    """What the table reports: evaluation `returns` or `success` rate."""
    threshold: float | None = None
    """Env steps and wall-clock to reach this metric value are reported (None: not)."""
    crossing_window: int = 1
    """Evaluations averaged for the threshold crossing (`first_crossing`)."""
    published: dict[str, float] = field(default_factory=dict)
    """Published result per task at the last budget (drawn dashed, listed in the table)."""
    published_source: str = ""
    """Where the published figures come from."""
    peer: bool = False
    """Also train Stable-Baselines3's SAC with the same settings."""
    agent_overrides: dict[str, Any] = field(default_factory=dict)
    """Changes to the preset's agent config."""
    demos: int = 0
    """Scripted-expert demos recorded per task (`serl record-demos --device expert`) and
    given to the learner as prior data (RLPD symmetric sampling)."""
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Methods compared side by side: name -> `EncoderConfig` fields of that run (empty: one
    method, `serl`, with the preset's encoder)."""
    pretrained_variants: tuple[str, ...] = ()
    """Variants whose backbone weights come from `serl pretrain-encoder` on the task's demos."""
    task_steps: dict[str, int] = field(default_factory=dict)
    """Env steps of the tasks that need fewer (or more) than `steps`."""
    quick: dict[str, Any] = field(default_factory=dict)
    """Fields replaced for `--quick` (fewer tasks, steps, budgets)."""


SUITES: dict[str, Suite] = {
    "pendulum": Suite(
        tasks=("Pendulum-v1",),
        agent="sac",
        steps=20_000,
        budgets=(5_000, 10_000, 20_000),
        random_steps=1_000,
        threshold=-200.0,
        peer=True,
        quick={"steps": 3_000, "budgets": (1_000, 2_000, 3_000), "random_steps": 500},
    ),
    "dmc-state": Suite(
        tasks=(
            "dmc:cartpole-swingup",
            "dmc:walker-walk",
            "dmc:cheetah-run",
            "dmc:reacher-easy",
            "dmc:finger-spin",
        ),
        agent="sac",
        steps=100_000,
        budgets=(50_000, 100_000),
        random_steps=5_000,
        published={
            "dmc:cartpole-swingup": 835.0,
            "dmc:walker-walk": 891.0,
            "dmc:cheetah-run": 616.0,
            "dmc:reacher-easy": 746.0,
            "dmc:finger-spin": 811.0,
        },
        published_source="CURL (Laskin et al. 2020), Table 1, state SAC at 100k env steps",
        quick={"steps": 4_000, "budgets": (2_000, 4_000), "random_steps": 1_000},
    ),
    "panda": Suite(
        tasks=(
            "sim:PandaPickCube-v0",
            "sim:PandaPegInsert-v0",
            "sim:PandaPickCubePixels-v0",
            "sim:PandaPegInsertPixels-v0",
        ),
        agent="rlpd",
        steps=10_000,
        budgets=(2_500, 5_000, 10_000),
        random_steps=200,
        metric="success",
        threshold=0.9,
        crossing_window=10,  # one-episode evaluations: 9 of the last 10 succeed
        demos=20,
        # RLPD with demos (symmetric sampling, LayerNorm critics), in SERL's sizes for a small
        # learner: 2 critics and G = 8 critic steps per env step (rail-berkeley/serl's SAC
        # default ensemble and its state-sim example's critic_actor_ratio), no entropy term in
        # the target (SERL's default: with a sparse success reward the entropy bonus of a long
        # episode can outweigh the reward), and α0 = 0.01: from α0 = 1 at one temperature step
        # per update, α is still 0.7 after 1,300 updates and the policy stays near-uniform
        # (entropy 2.7 of a 4-D action) — measured, 0 % success at 1,500 steps.
        agent_overrides={
            "num_qs": 2,
            "utd": 8,
            "backup_entropy": False,
            "init_temperature": 0.01,
        },
        quick={
            "tasks": ("sim:PandaPickCube-v0",),
            "steps": 1_500,
            "budgets": (500, 1_000, 1_500),
        },
    ),
    "panda-pixels": Suite(
        # PickCube at 128x128 too: frozen features of 64x64 frames place the cube to 6 cm, of
        # 128x128 ones to 4 cm (scripts/probe_backbone_features.py, docs/benchmarks.md).
        tasks=(
            "sim:PandaReachPixels64-v0",
            "sim:PandaPickCubePixels64-v0",
            "sim:PandaPickCubePixels-v0",
        ),
        agent="rlpd",
        steps=10_000,
        task_steps={"sim:PandaReachPixels64-v0": 3_000},  # its target is 15 minutes
        budgets=(1_000, 3_000, 10_000),
        random_steps=200,
        metric="success",
        threshold=0.8,
        crossing_window=10,
        demos=20,
        agent_overrides={  # as `panda` (see there why)
            "num_qs": 2,
            "utd": 8,
            "backup_entropy": False,
            "init_temperature": 0.01,
        },
        variants={
            "drq": {},
            "imagenet": {"backbone": "efficientnet-lite0"},
            "pretrained": {"backbone": "conv"},
            "random": {"backbone": "conv"},
        },
        pretrained_variants=("pretrained",),
        quick={
            "tasks": ("sim:PandaReachPixels64-v0",),
            "steps": 400,
            "task_steps": {},
            "budgets": (200, 400),
            "variants": {"pretrained": {"backbone": "conv"}},
        },
    ),
    "mujoco-100k": Suite(
        tasks=("Hopper-v5", "Walker2d-v5", "HalfCheetah-v5", "Ant-v5"),
        agent="rlpd",
        steps=100_000,
        budgets=(50_000, 100_000),
        random_steps=5_000,
        published={
            "Hopper-v5": 2750.0,
            "Walker2d-v5": 3459.0,
            "HalfCheetah-v5": 7823.0,
            "Ant-v5": 3287.0,
        },
        published_source="REDQ (Chen et al. 2021), Table 1, at 100k env steps (v2 tasks)",
        quick={"tasks": ("Hopper-v5",), "steps": 600, "budgets": (600,), "random_steps": 300},
    ),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--suite", required=True, choices=sorted(SUITES), help="which suite")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per task and method")
    parser.add_argument(
        "--first-seed",
        type=int,
        default=0,
        help="run seeds FIRST_SEED .. FIRST_SEED + SEEDS - 1 (to split a suite's seeds over "
        "machines or runs; a later run with the same --out and --seeds reads them all back)",
    )
    parser.add_argument("--out", type=Path, help="run directory (default runs/bench-learn-...)")
    parser.add_argument(
        "--tasks", nargs="+", metavar="TASK", help="only these tasks of the suite (default: all)"
    )
    parser.add_argument(
        "--variants",
        nargs="+",
        metavar="NAME",
        help="only these methods of a suite that compares several (panda-pixels: drq imagenet "
        "pretrained random; default: all)",
    )
    parser.add_argument(
        "--minutes",
        type=float,
        metavar="M",
        help="stop each of our runs after M minutes of wall-clock (then checkpoint and the final "
        "evaluation, as at its last step): what a method reaches within a target's time, for one "
        "too slow to run its steps (budgets past where a run got to show nan; the peer runs its "
        "steps)",
    )
    parser.add_argument(
        "--reward-classifier",
        type=Path,
        metavar="CLASSIFIER",
        help="a success classifier (serl train-reward) whose decision is the reward and the end "
        "of every episode, the demos' too, instead of the env's reward (the real-robot recipe); "
        "the curves still count the env's own successes. Methods get the suffix -classifier",
    )


def _slug(task: str) -> str:
    return task.replace(":", "_").replace("-", "_").lower()


def record_demos(task: str, episodes: int, out: Path, classifier: Path | None = None) -> Path:
    """`episodes` successful scripted-expert episodes of `task` (seeds apart from evaluation),
    rewarded and ended by `classifier` when one is given (kept by the env's success, as an
    operator keeps the demos that worked)."""
    from serl.cli import main

    if not out.exists():
        reward = ["--reward.checkpoint", str(classifier)] if classifier is not None else []
        code = main(
            ["record-demos", "--env", task, "--device", "expert", "--n", str(episodes),
             "--successes-only", "--seed", "100000", "--out", str(out), *reward]
        )  # fmt: skip
        if code != 0:
            raise RuntimeError(f"recording {episodes} expert demos of {task} failed ({code})")
    return out


RUN_RECORD = "bench_run.json"
"""Written into a run's directory when it finishes, with its start time (the wall-clock origin
of its curve): a rerun with the same `--out` reads finished runs back instead of repeating them."""


def finished_curve(run_dir: Path) -> Curve | None:
    """The curve of a finished run in `run_dir`; None when there is none. A run that started
    and did not finish is an error: its curve would be cut, and resuming it would count the
    time it was down."""
    record = run_dir / RUN_RECORD
    if record.exists():
        start = float(json.loads(record.read_text())["start_time_s"])
        return curve_from_metrics(run_dir / "metrics.jsonl", start)
    if (run_dir / "metrics.jsonl").exists():
        raise RuntimeError(
            f"{run_dir} holds a run that did not finish; delete that directory to run it again"
        )
    return None


def _record_finished(
    run_dir: Path, start_time_s: float, stopped_at_minutes: float | None = None
) -> None:
    record = {"start_time_s": start_time_s}
    if stopped_at_minutes is not None:  # `--minutes` ended it before its steps
        record["stopped_at_minutes"] = stopped_at_minutes
    write_json_atomic(run_dir / RUN_RECORD, record)


def pretrain_encoder(demos: Path, out: Path) -> Path:
    """The suite's conv trunk pretrained on the demos' frames (`serl pretrain-encoder`)."""
    from serl.cli import main

    if not out.exists():
        code = main(["pretrain-encoder", "--data", str(demos), "--out", str(out)])
        if code != 0:
            raise RuntimeError(f"pretraining an encoder on {demos} failed ({code})")
    return out


def _run_ours(
    suite: Suite,
    task: str,
    seed: int,
    run_dir: Path,
    device: str,
    prior: Path | None,
    encoder: dict[str, Any],
    classifier: Path | None = None,
    minutes: float | None = None,
) -> Curve:
    """One run of our method; with `minutes`, stopped then and evaluated as at its end."""
    from serl.processes import StopSignal
    from serl.rewards.config import ClassifierRewardConfig
    from serl.train import TrainConfig, final_evaluation, train

    agent_cfg = dataclasses.replace(
        agent_spec(suite.agent).default_config(), **suite.agent_overrides
    )
    if encoder:
        agent_cfg = dataclasses.replace(
            agent_cfg, encoder=dataclasses.replace(agent_cfg.encoder, **encoder)
        )
    cfg = TrainConfig(
        env=task,
        agent=suite.agent,
        agent_cfg=agent_cfg,
        actors=1,
        steps=suite.task_steps.get(task, suite.steps),
        random_steps=suite.random_steps,
        min_buffer=suite.random_steps,
        prior_data=prior,
        reward=ClassifierRewardConfig(checkpoint=classifier),
        run_dir=run_dir,
        seed=seed,
        device=device,
        progress=False,
    )
    start = time.time()
    stop = StopSignal()
    clock = threading.Timer(minutes * 60, stop.request) if minutes else None
    if clock is not None:
        clock.daemon = True
        clock.start()
    try:
        result = train(cfg, stop=stop)
    finally:
        if clock is not None:
            clock.cancel()
    if result.interrupted:  # only the clock stops it: a Ctrl-C raises KeyboardInterrupt
        tqdm.write(f"{run_dir}: stopped after {minutes:g} minutes; evaluating its checkpoint")
        final_evaluation(cfg, run_dir)
    _record_finished(run_dir, start, minutes if result.interrupted else None)
    return curve_from_metrics(run_dir / "metrics.jsonl", start)


def _run_peer(suite: Suite, task: str, seed: int, run_dir: Path) -> Curve:
    from serl.bench.sb3_peer import PeerRun, train_sb3_sac

    run = PeerRun(
        env=task,
        steps=suite.steps,
        random_steps=suite.random_steps,
        seed=seed,
        eval_every=max(suite.steps // 20, 500),
        eval_episodes=5,
        threads=PEER_THREADS,
    )
    start = train_sb3_sac(run, run_dir)
    _record_finished(run_dir, start)
    return curve_from_metrics(run_dir / "metrics.jsonl", start)


def _value_at_budget(curve: Curve, budget: int, window: int, metric: str) -> float:
    """`value_at`, or NaN for a budget past the run's last evaluation (its final one, at the
    env steps it got to): a run stopped by `--minutes`, or a task with fewer steps, has no
    value there."""
    if not len(curve.steps) or curve.steps[-1] < budget:
        return math.nan
    return value_at(curve, budget, window, metric)


def summarize(
    suite: Suite, curves: dict[tuple[str, str], list[Curve]]
) -> tuple[dict[str, float], list[str]]:
    """Flat figures and table lines from the curves of every (task, method)."""
    figures: dict[str, float] = {}
    header = ["task", "method", *(f"@{b:,}" for b in suite.budgets)]
    if suite.threshold is not None:
        over = f" (mean of {suite.crossing_window})" if suite.crossing_window > 1 else ""
        header += [f"steps to {suite.threshold:g}{over}", f"seconds to {suite.threshold:g}{over}"]
    header += ["wall-clock s", "published"]
    rows = [header]
    for (task, method), runs in curves.items():
        key = f"{_slug(task)}_{method}" if len(suite.tasks) > 1 else method
        row = [task, method]
        for budget in suite.budgets:
            window = max(budget // 5, 1)
            mean, std = mean_std([_value_at_budget(c, budget, window, suite.metric) for c in runs])
            figures[f"{key}_{suite.metric}_at_{budget}"] = mean
            figures[f"{key}_{suite.metric}_at_{budget}_std"] = std
            row.append(f"{mean:.1f} ± {std:.1f}")
        if suite.threshold is not None:
            crossings = [
                first_crossing(c, suite.threshold, suite.metric, suite.crossing_window)
                for c in runs
            ]
            steps, _ = mean_std([s for s, _ in crossings])
            seconds, _ = mean_std([t for _, t in crossings])
            reached = sum(math.isfinite(s) for s, _ in crossings)
            figures[f"{key}_steps_to_threshold"] = steps
            figures[f"{key}_seconds_to_threshold"] = seconds
            figures[f"{key}_seeds_reaching_threshold"] = float(reached)
            row += [f"{steps:,.0f} ({reached}/{len(runs)})", f"{seconds:.0f}"]
        wall, _ = mean_std([float(c.seconds[-1]) if len(c.seconds) else math.nan for c in runs])
        figures[f"{key}_wallclock_s"] = wall
        published = suite.published.get(task, math.nan)
        if math.isfinite(published):
            figures[f"{_slug(task)}_published"] = published
        row += [f"{wall:.0f}", f"{published:g}" if math.isfinite(published) else "-"]
        rows.append(row)
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return figures, lines


def plot_suite(suite: Suite, curves: dict[tuple[str, str], list[Curve]], png: Path) -> Path:
    """One row per task: the metric against env steps (left) and wall-clock (right)."""
    fig, axes = plt.subplots(
        len(suite.tasks), 2, figsize=(11, 3.6 * len(suite.tasks)), squeeze=False
    )
    colors = {OURS: "tab:blue", PEER: "tab:orange"}
    colors |= {name: f"C{i}" for i, name in enumerate(suite.variants)}
    label = "evaluation return" if suite.metric == "returns" else "success rate"
    k = suite.crossing_window
    if k > 1:
        label += f" (mean of last {k} evaluations)"
    for row, task in enumerate(suite.tasks):
        for (curve_task, method), runs in curves.items():
            if curve_task != task:
                continue
            for seed, c in enumerate(runs):
                values = rolling_mean(c.metric(suite.metric), k)
                kwargs = {"color": colors.get(method), "alpha": 0.8, "marker": "."}
                kwargs["label"] = method if seed == 0 else None
                axes[row, 0].plot(c.steps[k - 1 :], values, **kwargs)
                axes[row, 1].plot(c.seconds[k - 1 :], values, **kwargs)
        if task in suite.published:
            for ax in axes[row]:
                ax.axhline(suite.published[task], ls="--", color="gray", label="published")
        axes[row, 0].set(title=task, xlabel="env steps", ylabel=label)
        axes[row, 1].set(title=task, xlabel="wall-clock seconds", ylabel=label)
        for ax in axes[row]:
            ax.grid(alpha=0.3)
            ax.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=90)
    plt.close(fig)
    return png


def select_tasks(spec: Suite, tasks: list[str] | None) -> Suite:
    """`spec` reduced to `tasks` (None: all of them); an unknown task names the valid ones."""
    if not tasks:
        return spec
    unknown = [t for t in tasks if t not in spec.tasks]
    if unknown:
        raise ValueError(
            f"--tasks {' '.join(unknown)}: not in this suite; its tasks are {', '.join(spec.tasks)}"
        )
    return dataclasses.replace(spec, tasks=tuple(t for t in spec.tasks if t in tasks))


def select_variants(spec: Suite, variants: list[str] | None) -> Suite:
    """`spec` reduced to the methods `variants` (None: all); unknown names list the valid ones."""
    if not variants:
        return spec
    unknown = [v for v in variants if v not in spec.variants]
    if unknown:
        raise ValueError(
            f"--variants {' '.join(unknown)}: not methods of this suite; they are "
            f"{', '.join(spec.variants) or 'none (it has one method)'}"
        )
    kept = {name: enc for name, enc in spec.variants.items() if name in variants}
    return dataclasses.replace(spec, variants=kept)


def learner_figures(run_dir: Path) -> dict[str, float]:
    """The learner's mean update rate over the run and its memory per stored transition.

    The rate is updates made over the seconds between the learner's first and last metrics
    records: the last record's own `learner/updates_per_s` covers only the final log window,
    which at the end of a run is a few stragglers (it once read 0.14 for a run that averaged 4).
    """
    from serl.metrics import read_metrics

    records = read_metrics(run_dir / "metrics.jsonl")
    progress = [
        (float(r["time_s"]), float(r["learner/updates"]))
        for r in records
        if r.get("learner/updates") is not None
    ]
    sizes = [float(r["buffer/bytes_per_slot"]) for r in records if r.get("buffer/bytes_per_slot")]
    rate = math.nan
    if len(progress) >= 2 and progress[-1][0] > progress[0][0]:
        rate = (progress[-1][1] - progress[0][1]) / (progress[-1][0] - progress[0][0])
    return {
        "updates_per_s": rate,
        "bytes_per_transition": sizes[-1] if sizes else math.nan,
    }


def run(
    quick: bool,
    device: str,
    suite: str,
    seeds: int = 3,
    first_seed: int = 0,
    out: Path | None = None,
    tasks: list[str] | None = None,
    variants: list[str] | None = None,
    reward_classifier: Path | None = None,
    minutes: float | None = None,
) -> dict[str, Any]:
    if minutes is not None and not 0 < minutes < math.inf:
        raise ValueError(f"--minutes {minutes}: give a positive number of minutes")
    if seeds < 1 or first_seed < 0:
        raise ValueError(f"--seeds {seeds} and --first-seed {first_seed}: need 1+ seeds from 0 up")
    spec = SUITES[suite]
    if quick:
        spec = dataclasses.replace(spec, **spec.quick)
    spec = select_variants(select_tasks(spec, tasks), variants)
    out = out or Path("runs") / time.strftime(f"bench-learn-{suite}-%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    if reward_classifier is not None:
        from serl.rewards.model import check_classifier

        check_classifier(reward_classifier, "--reward-classifier")  # not in a run's log
        spec = dataclasses.replace(
            spec,
            variants={f"{m}{CLASSIFIER_SUFFIX}": e for m, e in spec.variants.items()},
            pretrained_variants=tuple(f"{m}{CLASSIFIER_SUFFIX}" for m in spec.pretrained_variants),
            peer=False,  # the peer has no classifier reward
        )
    methods = list(spec.variants) or [OURS + CLASSIFIER_SUFFIX * (reward_classifier is not None)]
    if spec.peer:
        methods.append(PEER)
    jobs = [
        (t, m, s)
        for t in spec.tasks
        for m in methods
        for s in range(first_seed, first_seed + seeds)
    ]
    curves: dict[tuple[str, str], list[Curve]] = {(t, m): [] for t in spec.tasks for m in methods}
    learner: dict[tuple[str, str], list[dict[str, float]]] = {key: [] for key in curves}
    for task, method, seed in tqdm(jobs, desc=f"bench learn {suite}", unit="run"):
        run_dir = out / _slug(task) / f"{method}-seed{seed}"
        curve = finished_curve(run_dir)
        if curve is not None:
            tqdm.write(f"{run_dir}: finished earlier, read back")
        elif method != PEER:
            demos = (
                out / _slug(task) / ("demos" if reward_classifier is None else "demos-classifier")
            )
            prior = record_demos(task, spec.demos, demos, reward_classifier) if spec.demos else None
            encoder = dict(spec.variants.get(method, {}))
            if method in spec.pretrained_variants:
                weights = pretrain_encoder(demos, out / _slug(task) / "encoder.safetensors")
                encoder["backbone_weights"] = str(weights)
            curve = _run_ours(
                spec, task, seed, run_dir, device, prior, encoder, reward_classifier, minutes
            )
        else:
            curve = _run_peer(spec, task, seed, run_dir)
        curves[(task, method)].append(curve)
        if method != PEER:
            learner[(task, method)].append(learner_figures(run_dir))
    figures, table = summarize(spec, curves)
    if spec.variants:
        lines = [f"{'task':<32}{'method':<22}{'updates/s':>12}{'bytes/transition':>18}"]
        for (task, method), runs in learner.items():
            rate, _ = mean_std([r["updates_per_s"] for r in runs])
            size, _ = mean_std([r["bytes_per_transition"] for r in runs])
            figures[f"{_slug(task)}_{method}_updates_per_s"] = rate
            figures[f"{_slug(task)}_{method}_bytes_per_transition"] = size
            lines.append(f"{task:<32}{method:<22}{rate:>12.3g}{size:>18,.0f}")
        table += ["", *lines]
    png = plot_suite(spec, curves, out / "curves.png")
    summary = {
        "suite": suite,
        "seeds": seeds,
        "first_seed": first_seed,
        "minutes": minutes,
        "steps": spec.steps,
        **figures,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print("\n" + "\n".join(table))
    if spec.published_source:
        print(f"published: {spec.published_source}")
    print(f"runs, summary.json and curves.png in {out}")
    return {
        "suite": suite,
        "seeds": float(seeds),
        "steps": float(spec.steps),
        **figures,
        "plot": str(png),
    }
