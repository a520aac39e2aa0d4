"""`serl record-demos` and `serl inspect-dataset`: demonstrations in, dataset statistics out.

serl record-demos --env sim:PandaPickCube-v0 --n 20 --out demos/pick --device spacemouse
serl record-demos --env sim:PandaPickCube-v0 --n 20 --out demos/pick --device expert
serl record-demos --env Pendulum-v1 --n 5 --out demos/pend --device expert --policy pkg.mod:make
serl inspect-dataset demos/pick --random-return 0 --expert-return 1 --reference demos/other

A person at a keyboard, SpaceMouse or gamepad sees the episode in a live view (the cameras in
an OpenCV window, or ``OUT/live.png`` where there is no display, and a status line in the
terminal: `serl.teleop.live_view`), starts each episode with a key and keeps only the episodes
they mark (`serl.teleop.recorder`); the keys printed at the start are those the task's action
uses. A SpaceMouse has no keys to spare: its episode keys are the terminal's (ENTER, y, n, x,
q). An env that talks to a server (``robot:`` ids) connects before the first prompt, so an
unreachable server is said at once, not after the person pressed start.

The ``expert`` device is a program, not a person: ``--policy MODULE:FACTORY`` names a function
``FACTORY(env) -> policy`` (``policy(obs) -> action`` in the env's layout, with an optional
``policy.reset()`` called each episode). Without ``--policy``, a ``prefix:Name`` env id uses
``make_expert`` of the ``experts`` module beside the module its prefix's `serl.envs` entry
point names, looked up at run time (``sim:`` ids get ``sim.experts``, the simulator's scripted
experts; ``robot:`` ids ``robots.experts``), so serl names no env package in its code.
"""

from __future__ import annotations

import dataclasses
import importlib
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import tyro

from serl.cli import command
from serl.rewards.config import ClassifierRewardConfig

_HUMAN_HZ = 10.0
"""Default control rate with a person at the device (the sim tasks' and SERL's 10 Hz)."""


@dataclass(frozen=True)
class RecordDemosConfig:
    """Record teleoperated episodes with success marks into a dataset."""

    env: str
    """Env id, e.g. sim:PandaPickCube-v0 or Pendulum-v1."""
    out: Path
    """Dataset directory; created, or appended to when it exists."""
    n: int = 10
    """Episodes to save."""
    device: Literal["keyboard", "spacemouse", "gamepad", "expert"] = "keyboard"
    """Who drives: a person at a device, or a scripted expert (see --policy)."""
    policy: str | None = None
    """MODULE:FACTORY of the expert, FACTORY(env) -> policy(obs) -> action."""
    success_from: Literal["auto", "device", "env"] = "auto"
    """Success mark: the human's key (device), info["success"] (env), or the mark else env."""
    successes_only: bool = False
    """Keep only successful episodes (recording goes on until --n successes)."""
    seed: int = 0
    """Episode i of this session resets with seed + i."""
    control_hz: float | None = None
    """Control rate; default 10 Hz with a person, as fast as possible with an expert."""
    max_steps: int | None = None
    """End an episode (as truncation) after this many steps; default: the env's time limit."""
    obs_mode: str | None = None
    """Passed to the env factory when given (sim tasks: state or pixels)."""
    live_view: Path | None = None
    """PNG the live view is written to where no display exists (default: OUT/live.png)."""
    live_view_hz: float = 4.0
    """Live-view frames per second (the status line too)."""
    reward: ClassifierRewardConfig = field(default_factory=ClassifierRewardConfig)
    """Reward classifier (serl train-reward) whose decision becomes the demos' reward and
    termination, as the actor sees them with the same --reward.checkpoint (a robot without a
    hand-written reward); off unless --reward.checkpoint is given."""


@dataclass(frozen=True)
class InspectDatasetConfig:
    """Print a dataset's episodes, success rate, transitions, TQ and SACo."""

    path: Annotated[Path, tyro.conf.Positional]
    """Dataset directory (written by serl record-demos or serl.data.datasets)."""
    random_return: float | None = None
    """Random policy's episode return, the 0 of TQ (default: the dataset's ref_min_score)."""
    expert_return: float | None = None
    """Expert's episode return, the 1 of TQ (default: the dataset's ref_max_score)."""
    reference: Path | None = None
    """Reference dataset for SACo (e.g. an online run's replay data)."""
    state_key: str = "state"
    """Observation key of the state vector for SACo when observations are a dict."""
    bins: int = 10
    """SACo grid: cells per dimension between both datasets' per-dimension min and max."""
    max_rows: int = 50
    """Episodes listed (the totals always cover all)."""


def experts_module(prefix: str) -> str:
    """Where the scripted experts of `prefix:` env ids live: the ``experts`` module beside the
    module of the prefix's `serl.envs` entry point (``sim.registration`` -> ``sim.experts``,
    ``robots.env`` -> ``robots.experts``); ``<prefix>.experts`` for a gymnasium
    ``module:EnvName`` id, which no entry point names."""
    from serl.envs import env_factories

    entry = env_factories().get(prefix)
    if entry is None:
        return f"{prefix}.experts"
    package = entry.module.rpartition(".")[0] or entry.module
    return f"{package}.experts"


def resolve_policy_factory(env_id: str, spec: str | None) -> Callable[[Any], Any]:
    """`spec` ("module:function") or ``make_expert`` of the env prefix's `experts_module`."""
    if spec is None:
        prefix, sep, _ = env_id.partition(":")
        if not sep:
            raise ValueError(
                f"--device expert: {env_id!r} has no package prefix to find a scripted expert "
                "in; pass --policy MODULE:FACTORY (FACTORY(env) -> policy(obs) -> action)"
            )
        spec = f"{experts_module(prefix)}:make_expert"
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(
            f"expert policy {spec!r}: cannot import {module_name!r} ({exc}); install the package "
            "that provides it or pass --policy MODULE:FACTORY"
        ) from exc
    factory = getattr(module, attr or "make_expert", None)
    if not callable(factory):
        raise ValueError(f"expert policy {spec!r}: {module_name} has no callable {attr!r}")
    return factory


def _make_device(cfg: RecordDemosConfig, env: Any) -> Any:
    from serl.teleop.device import make_device
    from serl.teleop.scripted import ScriptedDevice

    if cfg.device != "expert":
        return make_device(cfg.device)
    policy = resolve_policy_factory(cfg.env, cfg.policy)(env)
    return ScriptedDevice(policy, reset_fn=getattr(policy, "reset", None))


def _describe_keys(device: Any, keys: Any, action_dim: int) -> str:
    """The keys a person uses for this task: the keyboard's motion keys of the axes the action
    takes, and the episode keys of whichever device gives them."""
    from serl.teleop.keyboard import KeyboardDevice, keymap

    if isinstance(device, KeyboardDevice):
        named = {"ENTER" if k == "enter" else k: what for k, what in keymap(action_dim).items()}
        return "keys: " + ", ".join(f"{k!r} {what}" for k, what in named.items())
    episode = ", ".join(f"{what} {key}" for what, key in keys.episode_keys.items())
    where = "terminal keys" if keys is not device else f"{device.name} buttons"
    return f"{device.name} moves the arm; episode {where}: {episode}"


@command("record-demos", "record teleoperated episodes (with success marks) into a dataset")
def _record_demos(args: list[str]) -> int:
    from tqdm import tqdm

    from serl.checkpoint import CheckpointError
    from serl.rewards.wrapper import make_classified_env
    from serl.teleop.keyboard import KeyboardDevice
    from serl.teleop.live_view import LiveView
    from serl.teleop.recorder import record_dataset

    cfg = tyro.cli(RecordDemosConfig, args=args, prog="serl record-demos")
    if cfg.live_view_hz <= 0:
        print(f"error: --live-view-hz {cfg.live_view_hz} must be > 0 (frames per second)")
        return 2
    # Ctrl-C and SIGTERM must stop a recording whatever the launching process did: a signal
    # mask is inherited, and with SIGINT blocked here the signal would stay pending forever.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    person = cfg.device != "expert"
    kwargs: dict[str, Any] = {"obs_mode": cfg.obs_mode} if cfg.obs_mode else {}
    if person:
        kwargs["render_mode"] = "rgb_array"  # the live view's frame when there is no camera
    try:
        env = make_classified_env(cfg.env, cfg.reward, **kwargs)
    except (OSError, CheckpointError) as exc:
        print(f"error: --reward.checkpoint: {exc}")
        return 2
    hz = cfg.control_hz if cfg.control_hz is not None else (_HUMAN_HZ if person else 0)
    try:
        device = _make_device(cfg, env)
        keys = KeyboardDevice() if cfg.device == "spacemouse" else device
    except (ValueError, RuntimeError) as exc:
        env.close()
        print(f"error: {exc}")
        return 2
    metadata = {
        "env_id": cfg.env,
        "dataset_id": cfg.out.name,
        "recorded_with": cfg.device,
        "config": {k: str(v) for k, v in dataclasses.asdict(cfg).items()},
    }
    view = bar = None

    def progress(episode: Any, kept: bool) -> None:
        if bar is not None:
            bar.update(int(kept))
            bar.set_postfix(last="success" if episode.success else "failure", steps=len(episode))

    try:
        with device, keys:
            connect = getattr(env.unwrapped, "connect", None)
            if callable(connect):  # a server-backed env (robot:): fail now, not after a prompt
                connect()  # EnvUnreachableError: one line from `serl`'s handler
            if person:
                cfg.out.mkdir(parents=True, exist_ok=True)
                png = cfg.live_view or cfg.out / "live.png"
                view = LiveView.open(png, sys.stderr, hz=cfg.live_view_hz)
                print(_describe_keys(device, keys, int(np.prod(env.action_space.shape))))
                print(view.describe(), flush=True)
            else:
                bar = tqdm(total=cfg.n, unit="episode", desc=f"recording {cfg.env}")
            result = record_dataset(
                env, device, cfg.out, cfg.n, seed=cfg.seed, success_from=cfg.success_from,
                successes_only=cfg.successes_only, control_hz=hz, max_steps=cfg.max_steps,
                metadata=metadata, on_episode=progress, view=view, keys=keys,
            )  # fmt: skip
    finally:
        if bar is not None:
            bar.close()
        if view is not None:
            view.close()
        env.close()
    print(
        f"saved {result.saved} episodes ({result.successes} successful) to {cfg.out}"
        + (f", discarded {result.discarded}" if result.discarded else "")
        + ("; stopped by the human" if result.quit else "")
    )
    return 0


def _state_actions(dataset: Any, state_key: str) -> tuple[np.ndarray, np.ndarray]:
    states, actions = [], []
    for episode in dataset.episodes:
        obs = episode.observations
        if isinstance(obs, dict):
            if state_key not in obs:
                raise ValueError(
                    f"{dataset.path}: observations have keys {sorted(obs)}, no {state_key!r}; "
                    "pass --state-key KEY of the state vector"
                )
            obs = obs[state_key]
        states.append(np.asarray(obs[: len(episode)]).reshape(len(episode), -1))
        actions.append(np.asarray(episode.actions).reshape(len(episode), -1))
    return np.concatenate(states), np.concatenate(actions)


def _grid_bounds(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension min and max of (N, D) vectors; a constant dimension gets a width of 1."""
    low, high = vectors.min(0), vectors.max(0)
    return low, np.where(high > low, high, low + 1.0)


def _first_number(*values: Any) -> float | None:
    """The first of `values` that is a number (a flag, then a metadata entry), else None."""
    for value in values:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    return None


@command("inspect-dataset", "episodes, success rate, transitions, TQ and SACo of a dataset")
def _inspect_dataset(args: list[str]) -> int:
    from serl.data import diagnostics
    from serl.data.datasets import DatasetError, load_dataset

    cfg = tyro.cli(InspectDatasetConfig, args=args, prog="serl inspect-dataset")
    try:
        dataset = load_dataset(cfg.path)
    except DatasetError as exc:
        print(f"error: {exc}")
        return 2
    returns = diagnostics.episode_returns(e.rewards for e in dataset.episodes)
    meta = dataset.metadata
    print(f"{cfg.path}: env {meta.get('env_id', '?')}, format {meta.get('data_format', '?')}")
    print(f"{'episode':>8} {'length':>7} {'return':>10} {'success':>8}  source")
    for episode, ret in list(zip(dataset.episodes, returns, strict=True))[: cfg.max_rows]:
        success = str(episode.success)
        print(f"{episode.id:>8} {len(episode):>7} {ret:>10.3f} {success:>8}  {episode.source}")
    if len(dataset.episodes) > cfg.max_rows:
        print(f"... {len(dataset.episodes) - cfg.max_rows} more")
    print(f"episodes:          {len(dataset.episodes)}")
    print(f"total transitions: {dataset.total_steps}")
    print(f"success rate:      {dataset.success_rate:.1%}")
    if not dataset.episodes:
        return 0
    print(f"mean return:       {returns.mean():.3f}")
    # D4RL-style reference scores (kept by `serl.data.importers minari`) are TQ's 0 and 1.
    random_return = _first_number(cfg.random_return, meta.get("ref_min_score"))
    expert_return = _first_number(cfg.expert_return, meta.get("ref_max_score"))
    if random_return is not None and expert_return is not None:
        tq = diagnostics.trajectory_quality(returns, random_return, expert_return)
        print(f"TQ:                {tq:.4f} (random {random_return:g} -> 0, expert "
              f"{expert_return:g} -> 1)")  # fmt: skip
    else:
        print("TQ:                n/a (the mean return scaled so a random policy's is 0 and an "
              "expert's 1: give --random-return and --expert-return)")  # fmt: skip
    try:
        states, actions = _state_actions(dataset, cfg.state_key)
        if cfg.reference is None:
            low, high = _grid_bounds(np.c_[states, actions])
            count = diagnostics.unique_state_actions(states, actions, low, high, cfg.bins)
            print(f"unique (s, a):     {count} ({cfg.bins} bins per dimension)")
            print("SACo:              n/a (unique (s, a) over a reference dataset's, e.g. "
                  "all data of the env: give --reference DATASET)")  # fmt: skip
            return 0
        ref_states, ref_actions = _state_actions(load_dataset(cfg.reference), cfg.state_key)
    except (ValueError, DatasetError) as exc:
        print(f"SACo:              n/a ({exc})")
        return 0
    low, high = _grid_bounds(np.r_[np.c_[states, actions], np.c_[ref_states, ref_actions]])
    count = diagnostics.unique_state_actions(states, actions, low, high, cfg.bins)
    ref_count = diagnostics.unique_state_actions(ref_states, ref_actions, low, high, cfg.bins)
    saco = diagnostics.state_action_coverage(count, ref_count)
    print(f"unique (s, a):     {count} (reference {ref_count}, {cfg.bins} bins per dimension)")
    print(f"SACo:              {saco:.4f}")
    return 0
