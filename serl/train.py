"""`serl train`: one learner and N actor processes on loopback, then a final evaluation.

The launcher writes each child's resolved config to `run_dir/configs/<name>.json` and starts
`serl learner --config ...` and `serl actor --config ...` as subprocesses (their output goes
to `run_dir/logs/<name>.log`), on two free loopback ports. It follows the learner's
metrics.jsonl for a progress bar. The learner stops by itself after `steps` env steps (and the
updates they allow), checkpoints and commits; the actors exit once their last chunks are
committed. The launcher then evaluates the final checkpoint's policy in-process, appends that
evaluation to the metrics and redraws the learning curve.

Ctrl-C or SIGTERM: the actors are stopped first (they flush their last chunk), then the
learner, which writes its checkpoint; `serl train --resume --run-dir DIR` continues the run.
Children run in their own sessions (a terminal's Ctrl-C reaches only the launcher, which
stops them in that order) and stop by themselves if the launcher dies.

Simulated actors run with `sync_steps` = publish_every / (utd_ratio × actors): each waits
for fresh weights after its share of the steps one publishing period allows, so on a small
machine the actors cannot outrun the learner and the run keeps its update-to-data ratio.
"""

from __future__ import annotations

import json
import logging
import math
import signal
import subprocess
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tqdm import tqdm

from serl.actor import ActorConfig
from serl.agents.registry import agent_spec
from serl.agents.sac import SACConfig
from serl.checkpoint import read_checkpoint
from serl.checkpoint_eval import evaluate_policy, load_policy
from serl.data.datasets import check_dataset
from serl.envs import check_env_id
from serl.learner import CHECKPOINT_NAME, LearnerConfig, LearnerError
from serl.metrics import MetricsLogger
from serl.plots import plot_learning_curve
from serl.processes import StopSignal, free_port, spawn_serl
from serl.rewards.config import ClassifierRewardConfig
from serl.rewards.model import check_classifier

logger = logging.getLogger(__name__)

ACTOR_FLUSH_S = 1.0
"""After SIGTERM, time the actors get to queue their last chunk before the learner stops."""
LEARNER_STOP_S = 120.0
"""Longest wait for the learner's last checkpoint after SIGTERM (big image buffers are slow)."""
ACTOR_EXIT_S = 15.0
"""Longest wait for an actor to exit after the learner is done (it waits for its commit)."""
POLL_S = 0.5
"""How often the launcher checks its children and the metrics file."""


class TrainError(RuntimeError):
    """A child process failed; the message names it and quotes the end of its log."""


@dataclass(frozen=True)
class TrainConfig:
    env: str = "Pendulum-v1"
    """Environment id: a gymnasium id or a prefixed one (sim:..., dmc:...)."""
    env_params: dict[str, float] = field(default_factory=dict)
    """Dynamics parameters of the actors' `sim:` envs (e.g. {"friction": 0.5}; IWOCS sets the
    model it solves); empty: the env's own."""
    randomize: str = ""
    """Domain randomisation: each actor's training episodes draw their dynamics from this
    uncertainty set (a name such as friction-mass, or name=low:high,...); evaluation episodes
    keep env_params. Empty: off."""
    success_key: str = ""
    """Info key the env reports success under (e.g. gym-hil's succeed); empty: success,
    is_success or succeed, whichever the env has. Envs without one get no success rate."""
    reward: ClassifierRewardConfig = field(default_factory=ClassifierRewardConfig)
    """Reward classifier (serl train-reward) whose decision replaces the actors' env reward and
    termination; off unless --reward.checkpoint is given. A `sim:` task keeps reporting its own
    success, so the curve and the final evaluation count real successes."""
    agent: str = "sac"
    """Agent preset (sets the defaults of --agent-cfg.*): sac, rlpd, drq, bc, h2o, famo2o, moorl,
    drrpo or iwocs (serl/agents/registry.py says what each is)."""
    agent_cfg: SACConfig = field(default_factory=SACConfig)
    """Agent hyper-parameters (defaults come from the --agent preset)."""
    actors: int = 2
    """Actor processes."""
    steps: int = 6_000
    """Training env steps in total, over all actors."""
    random_steps: int = 1_000
    """Random warm-up steps in total, shared among the actors."""
    min_buffer: int = 1_000
    """Transitions in the buffer before the first update."""
    utd_ratio: float = 1.0
    """Agent updates per received env step."""
    prior_data: Path | None = None
    """Demos / offline dataset sampled 50/50 with online data (see `serl learner --help`)."""
    offline_updates: int = 0
    """Updates on the prior data alone before the actors' data is used."""
    publish_every: int = 10
    """The learner publishes the policy every this many updates."""
    sync: bool = True
    """Simulation: actors wait for fresh weights so they cannot outrun the learner."""
    control_hz: float = 0.0
    """Fixed control rate of each actor (0: as fast as possible)."""
    chunk_size: int = 64
    """Transitions per chunk."""
    eval_every: int = 2
    """Each actor runs one evaluation episode after every this many training episodes."""
    eval_episodes: int = 10
    """Episodes of the final in-process evaluation of the checkpoint's policy."""
    checkpoint_every_s: float = 30.0
    """Seconds between the learner's periodic checkpoints."""
    log_every_s: float = 2.0
    """Seconds between the learner's metric records."""
    run_dir: Path | None = None
    """Run directory (default: runs/train-<date>-<time>)."""
    resume: bool = False
    """Continue the run in --run-dir from its checkpoint."""
    seed: int = 0
    """Seed of the learner; actor i uses seed + 1000 * (i + 1)."""
    device: str = "cpu"
    """Torch device of the learner."""
    threads: int = 1
    """torch threads per process (1 avoids oversubscribing a small machine)."""
    progress: bool = True
    """Show a progress bar."""


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    checkpoint: Path
    metrics: Path
    curve_png: Path | None
    logs: Path
    final_eval: dict[str, float] | None
    """None when the run was interrupted."""
    interrupted: bool


@dataclass
class _Child:
    name: str
    proc: subprocess.Popen
    log: Path


def _default_run_dir() -> Path:
    return Path("runs") / time.strftime("train-%Y%m%d-%H%M%S")


def _split(total: int, parts: int, index: int) -> int:
    """Share `index` of `total` split into `parts` (the first ones take the remainder)."""
    return total // parts + (1 if index < total % parts else 0)


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def child_configs(
    cfg: TrainConfig, run_dir: Path, ports: tuple[int, int], done_steps: int = 0
) -> tuple[LearnerConfig, list[ActorConfig]]:
    """The learner's and each actor's resolved config for this run."""
    data_port, weights_port = ports
    learner = LearnerConfig(
        env=cfg.env,
        agent=cfg.agent,
        agent_cfg=cfg.agent_cfg,
        data_endpoint=f"tcp://127.0.0.1:{data_port}",
        weights_endpoint=f"tcp://127.0.0.1:{weights_port}",
        utd_ratio=cfg.utd_ratio,
        min_buffer=cfg.min_buffer,
        prior_data=cfg.prior_data,
        offline_updates=cfg.offline_updates,
        buffer_capacity=min(1_000_000, max(10_000, 2 * cfg.steps)),
        publish_every=cfg.publish_every,
        checkpoint_every_s=cfg.checkpoint_every_s,
        log_every_s=cfg.log_every_s,
        run_dir=run_dir,
        resume=cfg.resume,
        seed=cfg.seed,
        device=cfg.device,
        max_env_steps=cfg.steps,
        threads=cfg.threads,
    )
    sync_steps = math.ceil(cfg.publish_every / (cfg.utd_ratio * cfg.actors)) if cfg.sync else 0
    remaining = max(0, cfg.steps - done_steps)
    # Every chunk of the run fits in the outbox: actors never wait for a checkpoint (chunks
    # are as short as sync_steps; one more per episode end).
    shortest = min(cfg.chunk_size, sync_steps or cfg.chunk_size)
    outbox_limit = max(1024, 2 * math.ceil(remaining / cfg.actors / shortest))
    random_left = max(0, cfg.random_steps - done_steps)
    actors = [
        ActorConfig(
            env=cfg.env,
            env_params=dict(cfg.env_params),
            randomize=cfg.randomize,
            success_key=cfg.success_key,
            reward=cfg.reward,
            agent=cfg.agent,
            agent_cfg=cfg.agent_cfg,
            data_port=data_port,
            weights_port=weights_port,
            actor_id=f"actor-{i}",
            seed=cfg.seed + 1000 * (i + 1),
            random_steps=_split(random_left, cfg.actors, i),
            control_hz=cfg.control_hz,
            chunk_size=cfg.chunk_size,
            eval_every=cfg.eval_every,
            max_steps=_split(remaining, cfg.actors, i),
            source="sim",
            sync_steps=sync_steps,
            outbox_limit=outbox_limit,
            threads=cfg.threads,
        )
        for i in range(cfg.actors)
    ]
    return learner, actors


def _spawn(name: str, command: str, config: Any, run_dir: Path, threads: int) -> _Child:
    log = run_dir / "logs" / f"{name}.log"
    proc = spawn_serl(command, config, run_dir / "configs" / f"{name}.json", log, threads)
    return _Child(name, proc, log)


class _MetricsTail:
    """The newest learner record, read incrementally from metrics.jsonl."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = path.stat().st_size if path.exists() else 0
        self.last: dict[str, Any] = {}
        self.last_eval: float | None = None

    def read(self) -> dict[str, Any]:
        if not self.path.exists():
            return self.last
        with self.path.open("rb") as fh:
            fh.seek(self.offset)
            data = fh.read()
        complete = data[: data.rfind(b"\n") + 1]
        self.offset += len(complete)
        for line in complete.splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            self.last = record
            if record.get("eval/return_mean") is not None:
                self.last_eval = record["eval/return_mean"]
        return self.last


def _stop(children: list[_Child], learner: _Child) -> None:
    """Actors first (they queue their last chunk), then the learner (it checkpoints)."""
    actors = [c for c in children if c is not learner]
    for child in actors:
        if child.proc.poll() is None:
            child.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + ACTOR_FLUSH_S
    while time.monotonic() < deadline and any(c.proc.poll() is None for c in actors):
        time.sleep(0.05)
    if learner.proc.poll() is None:
        learner.proc.send_signal(signal.SIGTERM)
    _wait_or_kill([learner], LEARNER_STOP_S)
    _wait_or_kill(actors, ACTOR_EXIT_S)


def _wait_or_kill(children: list[_Child], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    for child in children:
        try:
            child.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            logger.warning("%s did not exit within %.0f s; killing it", child.name, timeout_s)
            child.proc.kill()
            child.proc.wait()


def _checkpoint_env_steps(path: Path) -> int:
    if not path.exists():
        return 0
    header, _ = read_checkpoint(path)
    return int(header["metadata"].get("env_steps", 0))


def final_evaluation(cfg: TrainConfig, run_dir: Path) -> dict[str, float]:
    """Evaluate the run's checkpoint for `eval_episodes` episodes (seeds apart from training)
    and log it to the run's metrics as `eval/final` at the checkpoint's env steps."""
    checkpoint = run_dir / CHECKPOINT_NAME
    policy = load_policy(checkpoint)
    final = evaluate_policy(
        policy, episodes=cfg.eval_episodes, seed=cfg.seed + 10_000, success_key=cfg.success_key
    )
    with MetricsLogger(run_dir) as log:
        log.log(_checkpoint_env_steps(checkpoint), {**final, "eval/final": 1.0})
    return final


def train(cfg: TrainConfig, *, stop: StopSignal | None = None) -> TrainResult:
    """Run learner and actors to `cfg.steps` env steps, then evaluate the checkpoint."""
    if cfg.actors < 1 or cfg.steps < 1:
        raise ValueError(f"actors={cfg.actors} and steps={cfg.steps} must be >= 1")
    agent_spec(cfg.agent)  # a typo in --agent or --env stops here, before any process starts
    check_env_id(cfg.env)
    if cfg.prior_data is not None:
        check_dataset(cfg.prior_data)  # before the learner spends seconds starting up
    if cfg.reward.checkpoint is not None:
        try:  # a missing or corrupt classifier stops here, not in every actor's log
            check_classifier(cfg.reward.checkpoint, "--reward.checkpoint")
        except ValueError as exc:
            raise TrainError(str(exc)) from exc
    run_dir = Path(cfg.run_dir) if cfg.run_dir is not None else _default_run_dir()
    checkpoint = run_dir / CHECKPOINT_NAME
    if checkpoint.exists() and not cfg.resume:
        raise LearnerError(
            f"{checkpoint} exists; pass --resume to continue that run or choose another --run-dir"
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    done_steps = _checkpoint_env_steps(checkpoint) if cfg.resume else 0
    data_port = free_port()
    weights_port = free_port()
    while weights_port == data_port:
        weights_port = free_port()
    learner_cfg, actor_cfgs = child_configs(cfg, run_dir, (data_port, weights_port), done_steps)
    stop = stop or StopSignal()
    metrics = _MetricsTail(run_dir / "metrics.jsonl")
    learner = _spawn("learner", "learner", learner_cfg, run_dir, cfg.threads)
    children = [learner]
    interrupted = False
    try:
        for actor_cfg in actor_cfgs:
            children.append(_spawn(actor_cfg.actor_id, "actor", actor_cfg, run_dir, cfg.threads))
        interrupted = _follow(cfg, children, learner, metrics, stop, done_steps)
    finally:
        _stop(children, learner)
    _check_exit(learner, interrupted)
    result = TrainResult(
        run_dir=run_dir,
        checkpoint=checkpoint,
        metrics=run_dir / "metrics.jsonl",
        curve_png=None,
        logs=run_dir / "logs",
        final_eval=None,
        interrupted=interrupted,
    )
    if interrupted:
        return result
    final = final_evaluation(cfg, run_dir)
    title = f"{cfg.agent} on {cfg.env}, {cfg.actors} actors"
    curve = plot_learning_curve(result.metrics, run_dir / "curve.png", title=title)
    return replace(result, final_eval=final, curve_png=curve)


def _follow(
    cfg: TrainConfig,
    children: list[_Child],
    learner: _Child,
    metrics: _MetricsTail,
    stop: StopSignal,
    done_steps: int,
) -> bool:
    """Wait for the learner to finish, showing progress; True when interrupted.

    Two bars: env steps until the actors are done, then the learner's updates, since the
    learner goes on until it has done the `utd_ratio` updates per step that the rate limit
    allows (with a high UTD that is minutes after the actors stop).
    """
    bar = tqdm(
        total=cfg.steps,
        initial=done_steps,
        unit="step",
        disable=not cfg.progress,
        dynamic_ncols=True,
    )
    catching_up = False
    try:
        while learner.proc.poll() is None:
            if stop.stop_requested:
                return True
            for child in children[1:]:
                code = child.proc.poll()
                if code not in (None, 0):
                    raise TrainError(
                        f"{child.name} exited with code {code}; end of {child.log}:\n"
                        f"{_tail(child.log)}"
                    )
            record = metrics.read()
            if catching_up:
                bar.update(
                    max(0, min(int(record.get("learner/updates", bar.n)), bar.total) - bar.n)
                )
            else:
                steps = int(record.get("learner/env_steps", bar.n))
                bar.update(max(0, min(steps, cfg.steps) - bar.n))
                if metrics.last_eval is not None:
                    bar.set_postfix(eval_return=f"{metrics.last_eval:.1f}", refresh=False)
                if steps >= cfg.steps:
                    bar.close()
                    bar = _updates_bar(cfg, int(record.get("learner/updates", 0)))
                    catching_up = True
            time.sleep(POLL_S)
        if not catching_up:
            record = metrics.read()
            bar.update(max(0, min(int(record.get("learner/env_steps", bar.n)), cfg.steps) - bar.n))
        return False
    finally:
        bar.close()


def _updates_bar(cfg: TrainConfig, updates: int) -> tqdm:
    """The second bar of `_follow`: the learner's updates towards what the rate limit allows."""
    total = cfg.offline_updates + math.ceil(cfg.utd_ratio * max(0, cfg.steps - cfg.min_buffer))
    return tqdm(
        total=max(total, updates),
        initial=updates,
        unit="update",
        desc="actors done; learner catching up",
        disable=not cfg.progress,
        dynamic_ncols=True,
    )


def _check_exit(learner: _Child, interrupted: bool) -> None:
    code = learner.proc.returncode
    if code != 0 and not (interrupted and code in (-signal.SIGTERM, 0)):
        raise TrainError(
            f"the learner exited with code {code}; end of {learner.log}:\n{_tail(learner.log)}"
        )
