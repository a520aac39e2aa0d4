"""`serl record-rewards` and `serl train-reward`: label frames, then train the classifier.

serl record-rewards --env sim:PandaReachPixels-v0 --label info --out data/reward_frames.npz
serl record-rewards --env robot:franka-peg --label key --views wrist --out data/peg.npz
serl record-rewards --add data/reach_px.npz --out data/all.npz      # frames from a dataset
serl train-reward data/all.npz --classifier.views front wrist --out runs/reward
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import tyro

from serl.cli import command
from serl.envs import make_env
from serl.rewards.dataset import FrameSet, balance_warning, concatenate, load_frames
from serl.rewards.model import ClassifierConfig, save_classifier
from serl.rewards.record import TerminalKeys, info_success, record
from serl.rewards.train import RewardTrainConfig, train_classifier, write_report


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
    actions: Literal["random", "zero"] = "random"
    """Actions sent while recording (a teleop layer moves a real robot itself)."""
    views: tuple[str, ...] = ("front",)
    """Camera keys of the observation to record ("render" takes env.render())."""
    image_size: int = 64
    """Frames are stored resized to image_size x image_size."""
    add: tuple[Path, ...] = ()
    """Frame sets, episode datasets (sim.collect .npz, serl record-demos directories) or saved
    replay buffers whose frames are added."""
    seed: int = 0
    """Seed of the first episode's reset."""


@command("record-rewards", "record success-labelled frames for a reward classifier")
def _record_rewards(args: list[str]) -> int:
    cfg = tyro.cli(RecordConfig, args=args, prog="serl record-rewards")
    sets: list[FrameSet] = []
    if cfg.out.is_file():
        sets.append(load_frames(cfg.out, cfg.views, cfg.image_size))
    sets += [load_frames(path, cfg.views, cfg.image_size) for path in cfg.add]
    if cfg.env is not None:
        env = make_env(cfg.env, render_mode="rgb_array" if "render" in cfg.views else None)
        zero = env.action_space.sample() * 0

        def act(obs: object) -> object:
            return env.action_space.sample() if cfg.actions == "random" else zero

        labeller = TerminalKeys() if cfg.label == "key" else contextlib.nullcontext(info_success)
        if cfg.label == "key":
            print("hold SPACE while the task is solved; Ctrl-C stops")
        with labeller as label:
            sets.append(record(env, act, label, episodes=cfg.episodes, views=cfg.views,
                               size=cfg.image_size, seed=cfg.seed, progress=True))  # fmt: skip
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
        f"{report['threshold']:.4f} (target precision {opts.train.target_precision}):\n"
        f"  accuracy {report['accuracy']:.3f}  precision {report['precision']:.3f}  "
        f"recall {report['recall']:.3f}\n"
        f"  confusion: [[tn {tn}, fp {fp}], [fn {fn}, tp {tp}]]"
    )
    print(f"report:     {opts.out / 'report.json'}, {opts.out / 'report.png'}")
    print(f"classifier: {path}")
    return 0
