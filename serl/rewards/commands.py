"""`serl record-rewards` and `serl train-reward`: label frames, then train the classifier.

serl record-rewards --env sim:PandaReachPixels-v0 --label info --out data/reward_frames.npz
serl record-rewards --env robot:franka-peg --label key --actions zero --views wrist --out peg.npz
serl record-rewards --add data/reach_px.npz --out data/all.npz      # frames from a dataset
serl train-reward data/all.npz --classifier.views front wrist --out runs/reward
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import tyro

from serl.checkpoint import CheckpointError
from serl.checkpoint_eval import load_policy
from serl.cli import command
from serl.envs import make_env
from serl.rewards.dataset import FrameSet, balance_warning, concatenate, load_frames
from serl.rewards.model import ClassifierConfig, save_classifier
from serl.rewards.record import TerminalKeys, info_success, record
from serl.rewards.report import format_probabilities, write_report
from serl.rewards.train import RewardTrainConfig, train_classifier
from serl.teleop.commands import resolve_policy_factory


@dataclass(frozen=True)
class RecordConfig:
    """Record labelled frames from an env and/or gather them from datasets."""

    out: Path = Path("data/reward_frames.npz")
    """Frame-set file to write (added to if it exists)."""
    env: str | None = None
    """Env id to record from (None: only gather --add files)."""
    episodes: int = 20
    """Episodes to record."""
    label: Literal["key", "info"] = "key"
    """Label source: the space key in this terminal, or the env's info["success"] (sim)."""
    actions: Literal["auto", "expert", "policy", "random", "zero"] = "auto"
    """Actions sent while recording: the env's scripted expert plus --noise-std Gaussian noise
    (as `serl record-demos --device expert` finds it), a trained policy (--policy-checkpoint)
    plus that noise, uniform random, or zero (the arm holds while a person arranges the
    scene). auto: expert with --label info, else random. A policy trained on a classifier's
    reward goes where that classifier is wrong: its frames, labelled, teach the next one."""
    policy_checkpoint: Path | None = None
    """Checkpoint (serl train, train-local, learner) whose deterministic policy acts with
    --actions policy."""
    noise_std: float = 0.3
    """Std of the Gaussian noise added to the expert's or the policy's actions (in [-1, 1]
    units)."""
    views: tuple[str, ...] = ("front",)
    """Camera keys of the observation to record ("render" takes env.render())."""
    image_size: int = 64
    """Frames are stored resized to image_size x image_size."""
    add: tuple[Path, ...] = ()
    """Frame sets, episode datasets (sim.collect .npz, serl record-demos directories) or saved
    replay buffers whose frames are added."""
    seed: int = 0
    """Seed of the first episode's reset."""
    hold_success: int = 0
    """Steps to keep acting and labelling after an episode ends on its success (the env's,
    or the person's key with --label key), so every success gives more than one positive frame:
    a sim task that ends at the instant it is solved otherwise gives one per episode."""


def _action_source(cfg: RecordConfig, env: gym.Env) -> Callable[[Any], np.ndarray]:
    """The policy that moves the env while frames are recorded (see `RecordConfig.actions`)."""
    actions = cfg.actions
    space = env.action_space
    if actions == "auto" and cfg.label == "info":
        try:
            return _action_source(dataclasses.replace(cfg, actions="expert"), env)
        except ValueError as exc:
            print(f"no scripted expert ({exc}); recording random actions")
    if actions == "auto":
        actions = "random"
    if actions == "random":
        return lambda obs: space.sample()
    if actions == "zero":
        zero = np.zeros(space.shape, space.dtype)
        return lambda obs: zero
    if actions == "policy":
        if cfg.policy_checkpoint is None:
            raise ValueError("--actions policy needs --policy-checkpoint FILE")
        try:
            loaded = load_policy(cfg.policy_checkpoint, cfg.env)
        except (OSError, CheckpointError) as exc:
            raise ValueError(f"--policy-checkpoint: {exc}") from exc
        policy = loaded.policy
        return NoisyActions(
            lambda obs: policy.act(obs, deterministic=True), space, cfg.noise_std, cfg.seed
        )
    try:
        expert = resolve_policy_factory(cfg.env or "", None)(env)
    except (ValueError, KeyError) as exc:
        raise ValueError(f"--actions expert: {exc}; use --actions random or zero") from exc
    return NoisyActions(expert, space, cfg.noise_std, cfg.seed)


class NoisyActions:
    """A scripted expert's or a trained policy's action plus Gaussian noise, clipped to the
    action space: it reaches the goal in most episodes (positive frames) by paths that vary
    (negative frames)."""

    def __init__(self, source: Callable[[Any], Any], space: Any, noise_std: float, seed: int):
        self.source, self.space, self.noise_std = source, space, noise_std
        self.rng = np.random.default_rng(seed)

    def reset(self) -> None:
        """Restart a scripted expert's episode phase (`record` calls it after every env.reset)."""
        if (reset := getattr(self.source, "reset", None)) is not None:
            reset()

    def __call__(self, obs: Any) -> np.ndarray:
        noise = self.rng.normal(0.0, self.noise_std, self.space.shape)
        action = np.clip(np.asarray(self.source(obs)) + noise, self.space.low, self.space.high)
        return action.astype(self.space.dtype)


@command("record-rewards", "record success-labelled frames for a reward classifier")
def _record_rewards(args: list[str]) -> int:
    cfg = tyro.cli(RecordConfig, args=args, prog="serl record-rewards")
    sets: list[FrameSet] = []
    if cfg.out.is_file():
        sets.append(load_frames(cfg.out, cfg.views, cfg.image_size))
    sets += [load_frames(path, cfg.views, cfg.image_size) for path in cfg.add]
    if cfg.env is not None:
        env = make_env(cfg.env, render_mode="rgb_array" if "render" in cfg.views else None)
        try:
            act = _action_source(cfg, env)
        except ValueError as exc:
            print(f"error: {exc}")
            return 2

        labeller = TerminalKeys() if cfg.label == "key" else contextlib.nullcontext(info_success)
        if cfg.label == "key":
            print("hold SPACE while the task is solved; Ctrl-C stops")
        with labeller as label:
            sets.append(record(env, act, label, episodes=cfg.episodes, views=cfg.views,
                               size=cfg.image_size, seed=cfg.seed, hold_success=cfg.hold_success,
                               progress=True))  # fmt: skip
        env.close()
    if not sets:
        print("nothing to record: give --env and/or --add")
        return 2
    data = concatenate(sets)
    data.save(cfg.out, source=cfg.env or "datasets")
    positives, negatives = data.counts()
    print(f"{cfg.out}: {len(data)} frames, {positives} positives, {negatives} negatives")
    if warning := balance_warning(positives, negatives):
        print(f"warning: {warning}")
    return 0


@dataclass(frozen=True)
class TrainRewardArgs:
    """Train, calibrate and save a reward classifier."""

    frames: tyro.conf.Positional[tuple[Path, ...]]
    """Frame sets (serl record-rewards), episode datasets (sim.collect .npz, serl record-demos
    directories) or saved replay buffers, with pixel observations."""
    out: Path = Path("runs/reward")
    """Directory for classifier.safetensors, report.json and report.png."""
    train: RewardTrainConfig = field(default_factory=RewardTrainConfig)
    """Training and calibration settings."""


@command("train-reward", "train and calibrate a reward classifier on labelled frames")
def _train_reward(args: list[str]) -> int:
    default = TrainRewardArgs(frames=(), train=RewardTrainConfig(classifier=ClassifierConfig()))
    opts = tyro.cli(TrainRewardArgs, default=default, args=args, prog="serl train-reward")
    if not opts.frames:
        print("give one or more frame files: serl train-reward FRAMES.npz [...] (see --help)")
        return 2
    cls = opts.train.classifier
    data = concatenate([load_frames(p, cls.views, cls.image_size) for p in opts.frames])
    positives, negatives = data.counts()
    print(f"{len(data)} frames: {positives} positives, {negatives} negatives")
    if warning := balance_warning(positives, negatives):
        print(f"warning: {warning}")
    try:
        result = train_classifier(data, opts.train)
    except ValueError as exc:  # one class missing, or the precision cannot be reached
        print(f"error: {exc}")
        return 2
    report = write_report(result, opts.out)
    path = save_classifier(opts.out / "classifier.safetensors", result.model, result.rule,
                           report=report)  # fmt: skip
    (tn, fp), (fn, tp) = report["confusion_matrix"]
    print(
        f"\nvalidation ({report['validation_frames']} frames) at threshold "
        f"{format_probabilities([report['threshold']])[0]} "
        f"(target precision {opts.train.target_precision}):\n"
        f"  accuracy {report['accuracy']:.3f}  precision {report['precision']:.3f}  "
        f"recall {report['recall']:.3f}  F1 {report['f1']:.3f}\n"
        f"  confusion: [[tn {tn}, fp {fp}], [fn {fn}, tp {tp}]]"
    )
    print(f"report:     {opts.out / 'report.json'}, {opts.out / 'report.png'}")
    print(f"classifier: {path}")
    return 0
