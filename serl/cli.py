"""The `serl` command. Each subcommand's flags are generated from its config dataclass (tyro).

serl train                                            # learner + 2 actors on loopback, evaluated
serl learner --data-endpoint tcp://0.0.0.0:5555 --keys-dir keys   # on the GPU PC
serl actor --learner-host gpu-pc --keys-dir keys --actor-id robot-0  # on the robot PC
serl eval runs/train-.../checkpoint.safetensors --episodes 10 --video eval.gif
serl keys generate keys/
serl train-local --env Pendulum-v1 --agent sac       # one process: act, learn, evaluate
serl bench learner --quick                            # learner updates/s against SB3
serl checkpoint-info runs/quickstart/checkpoint.safetensors
serl pretrain-encoder --data data/pick_px --views front wrist --out runs/conv.safetensors

`serl learner`, `serl actor` and `serl train` also take `--config FILE.json` (any subset of
their fields, e.g. the env, agent and agent_cfg a learner and its actors share); flags given
on the command line override it.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import logging
import sys
import typing
from collections.abc import Callable
from importlib.metadata import entry_points

import tyro

COMMANDS: dict[str, tuple[str, Callable[[list[str]], int]]] = {}


def command(name: str, summary: str):
    def register(fn: Callable[[list[str]], int]) -> Callable[[list[str]], int]:
        COMMANDS[name] = (summary, fn)
        return fn

    return register


def _split_agent_flag(args: list[str], default: str) -> tuple[str, list[str]]:
    """Pull `--agent NAME` out first: the preset decides the defaults of the agent's flags."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--agent", default=default)
    known, rest = pre.parse_known_args(args)
    return known.agent, rest


@command("train-local", "train in one process on any env id (quick experiments)")
def _train_local(args: list[str]) -> int:
    from serl.agents.registry import agent_spec
    from serl.evaluation import describe
    from serl.local import LocalTrainConfig, train_local

    agent, rest = _split_agent_flag(args, LocalTrainConfig.agent)
    default = LocalTrainConfig(agent=agent, agent_cfg=agent_spec(agent).default_config())
    cfg = tyro.cli(LocalTrainConfig, default=default, args=rest, prog="serl train-local")
    cfg = dataclasses.replace(cfg, agent=agent)
    result = train_local(cfg)
    print(f"\nfinal evaluation on {cfg.env}: {describe(result.final_eval)}")
    print(f"metrics:    {result.run_dir / 'metrics.jsonl'} (tensorboard --logdir {result.run_dir})")
    print(f"curve:      {result.curve_png}")
    print(f"checkpoint: {result.checkpoint}")
    return 0


@command(
    "bench",
    "benchmarks: learner, transport, sim, reward, robust, hybrid, learn, robot-loop, link-outage",
)
def _bench(args: list[str]) -> int:
    from serl.bench import BENCHMARKS, run_benchmark

    if not args or args[0] not in BENCHMARKS:
        names = ", ".join(sorted(BENCHMARKS))
        print(f"usage: serl bench NAME [--quick] [--json PATH]; NAME is one of: {names}")
        return 0 if args[:1] in (["-h"], ["--help"]) else 2
    return run_benchmark(args[0], args[1:])


@command("checkpoint-info", "print a checkpoint's config, hash and metadata")
def _checkpoint_info(args: list[str]) -> int:
    from serl.checkpoint import read_checkpoint

    parser = argparse.ArgumentParser(prog="serl checkpoint-info")
    parser.add_argument("path")
    header, _ = read_checkpoint(parser.parse_args(args).path)
    shown = {k: header[k] for k in ("config_hash", "metadata", "config")}
    print(json.dumps(shown, indent=2))
    return 0


def _startup_errors() -> tuple[type[Exception], ...]:
    """Errors that mean "fix the command or the files", printed without a traceback."""
    from serl.agents.registry import UnknownAgentError
    from serl.checkpoint import CheckpointError
    from serl.data.datasets import DatasetError
    from serl.envs import EnvUnreachableError, UnknownEnvError
    from serl.learner import LearnerError
    from serl.local import RunDirError
    from serl.transport import AuthError, HandshakeRefused, InsecureBindError
    from serl.video import VideoError

    return (
        AuthError,
        CheckpointError,
        DatasetError,
        EnvUnreachableError,
        HandshakeRefused,
        InsecureBindError,
        LearnerError,
        RunDirError,
        UnknownAgentError,
        UnknownEnvError,
        VideoError,
    )


def _deep_update(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_update(out[key], value)
        else:
            out[key] = value
    return out


def _process_config(cls: type, args: list[str], prog: str):
    """A config from `--config FILE.json` (optional), the `--agent` preset, then the flags.

    Precedence, lowest first: the dataclass defaults, the agent preset's defaults for
    `agent_cfg`, the JSON file, the command-line flags.
    """
    from pathlib import Path

    from serl.agents.registry import agent_spec
    from serl.config import config_from_dict, config_to_dict

    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", type=Path)
    pre.add_argument("--agent")
    known, rest = pre.parse_known_args(args)
    data = json.loads(known.config.read_text()) if known.config is not None else {}
    agent = known.agent or data.get("agent") or cls.agent
    base = config_to_dict(cls(agent=agent, agent_cfg=agent_spec(agent).default_config()))
    default = config_from_dict(cls, _deep_update(base, data) | {"agent": agent})
    description = (
        f"{COMMANDS[prog.split()[-1]][0]}.\n\nAlso takes --config FILE.json: any subset of "
        "these fields as JSON (e.g. the env, agent and agent_cfg a learner shares with its "
        "actors); flags override it."
    )
    parsed = tyro.cli(
        _with_agent_config(cls, agent_spec(agent).config_type),
        default=default,
        args=rest,
        prog=prog,
        description=description,
    )
    values = {f.name: getattr(parsed, f.name) for f in dataclasses.fields(cls)}
    return cls(**(values | {"agent": agent}))


def _with_agent_config(cls: type, config_type: type) -> type:
    """`cls` with `agent_cfg` declared as the preset's config class (H2O, FamO2O, ... have
    their own), so tyro generates that class's `--agent-cfg.*` flags."""
    declared = typing.get_type_hints(cls)["agent_cfg"]
    if config_type is declared:
        return cls
    field = dataclasses.field(default_factory=config_type)
    return dataclasses.make_dataclass(
        cls.__name__, [("agent_cfg", config_type, field)], bases=(cls,), frozen=True
    )


@command("train", "train on loopback: one learner + N actor processes, then evaluate")
def _train(args: list[str]) -> int:
    from serl.evaluation import describe
    from serl.processes import StopSignal
    from serl.train import TrainConfig, TrainError, train

    cfg = _process_config(TrainConfig, args, "serl train")
    try:
        with StopSignal() as stop:
            result = train(cfg, stop=stop)
    except TrainError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if result.interrupted:
        print(f"\ninterrupted; the learner checkpointed to {result.checkpoint}")
        print(f"continue with: serl train --resume --run-dir {result.run_dir}")
        return 130
    print(
        f"\nfinal evaluation of the checkpoint's policy on {cfg.env} "
        f"({cfg.eval_episodes} episodes): {describe(result.final_eval or {})}"
    )
    print(f"metrics:    {result.metrics} (tensorboard --logdir {result.run_dir})")
    print(f"curve:      {result.curve_png}")
    print(f"checkpoint: {result.checkpoint}")
    print(f"logs:       {result.logs}")
    return 0


@command("learner", "the learner process: ingest transitions, train, publish weights")
def _learner(args: list[str]) -> int:
    from serl.learner import Learner, LearnerConfig
    from serl.processes import StopSignal

    cfg = _process_config(LearnerConfig, args, "serl learner")
    with StopSignal() as stop:
        learner = Learner(cfg, stop=stop)
        counters = learner.run()
    print(
        f"learner stopped: {counters.env_steps} env steps, {counters.updates} updates; "
        f"checkpoint {learner.checkpoint_path}"
    )
    return 0


@command("actor", "an actor process: run the env with the newest policy, stream transitions")
def _actor(args: list[str]) -> int:
    from serl.actor import Actor, ActorConfig
    from serl.processes import StopSignal

    cfg = _process_config(ActorConfig, args, "serl actor")
    with StopSignal() as stop:
        counters = Actor(cfg, stop=stop).run()
    print(
        f"actor {cfg.actor_id} stopped: {counters.steps} steps, {counters.episodes} episodes, "
        f"{counters.eval_episodes} evaluation episodes"
    )
    return 0


@command("eval", "run a checkpoint's policy for N episodes (optionally save a GIF)")
def _eval(args: list[str]) -> int:
    from pathlib import Path

    from serl.checkpoint_eval import evaluate_policy, load_policy
    from serl.evaluation import describe

    parser = argparse.ArgumentParser(prog="serl eval", description=_eval.__doc__)
    parser.add_argument("checkpoint", type=Path, help="a .safetensors checkpoint")
    parser.add_argument("--episodes", type=int, default=10, help="episodes to run (default 10)")
    parser.add_argument("--seed", type=int, default=10_000, help="seed of the first episode")
    parser.add_argument("--env", help="env id (default: the checkpoint's)")
    parser.add_argument("--video", type=Path, help="save the episodes as an animated GIF")
    parser.add_argument(
        "--speed",
        type=float,
        default=1.0,
        help="GIF playback speed; 1 (default) is real time at the env's control rate",
    )
    parser.add_argument(
        "--fps", type=float, help="frames per second of real time (default: the env's render_fps)"
    )
    parser.add_argument(
        "--success-key",
        default="",
        help="info key the env reports success under (default: success, is_success or succeed)",
    )
    opts = parser.parse_args(args)
    loaded = load_policy(opts.checkpoint, env=opts.env)
    ev = evaluate_policy(
        loaded,
        episodes=opts.episodes,
        seed=opts.seed,
        video=opts.video,
        fps=opts.fps,
        speed=opts.speed,
        success_key=opts.success_key,
    )
    print(
        f"{loaded.agent} policy on {loaded.env}, {opts.episodes} episodes: {describe(ev)}, "
        f"length {ev['eval/length_mean']:.0f}"
    )
    if opts.video:
        print(f"video: {opts.video}")
    return 0


@command("keys", "CURVE keys: `serl keys generate DIR [--clients NAME ...]`")
def _keys(args: list[str]) -> int:
    from serl.transport.auth import generate_keys

    parser = argparse.ArgumentParser(prog="serl keys")
    sub = parser.add_subparsers(dest="action", required=True)
    gen = sub.add_parser("generate", help="write a learner keypair and actor keypairs to DIR")
    gen.add_argument("dir", help="key directory (created); copy parts of it to each machine")
    gen.add_argument(
        "--clients", nargs="+", default=["actor"], help="actor key names (default: actor)"
    )
    gen.add_argument(
        "--force",
        action="store_true",
        help="replace keys already in DIR (locks out every machine holding the old ones)",
    )
    opts = parser.parse_args(args)
    key_dir = generate_keys(opts.dir, tuple(opts.clients), force=opts.force)
    print(f"wrote CURVE keys to {key_dir}:")
    print(f"  learner (GPU PC):  {key_dir}/server.key_secret, {key_dir}/authorized/")
    for name in opts.clients:
        print(f"  actor {name!r} (robot PC): {key_dir}/{name}.key_secret and {key_dir}/server.key")
    return 0


@command("pretrain-encoder", "pretrain the conv backbone on your recorded camera frames")
def _pretrain_encoder(args: list[str]) -> int:
    from serl.nets.pretrain import PretrainConfig, PretrainError, pretrain_encoder

    cfg = tyro.cli(PretrainConfig, args=args, prog="serl pretrain-encoder")
    try:
        result = pretrain_encoder(cfg)
    except PretrainError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    info = result.info
    height, width = info["frame_size"]
    print(
        f"\npretrained the conv backbone on {info['train_frames']} frames "
        f"({', '.join(info['views'])}, {height}x{width}), {info['steps']} steps; "
        f"{info['val_frames']} held-out frames"
    )
    print(
        f"reconstruction loss: train {info['train_loss']:.5f}, validation "
        f"{info['val_loss']:.5f} (before training {info['initial_val_loss']:.5f})"
    )
    print(f"weights: {cfg.out}")
    print(
        f"use it:  --agent-cfg.encoder.backbone conv --agent-cfg.encoder.backbone-weights "
        f"{cfg.out} --agent-cfg.encoder.backbone-pool {cfg.pool}"
    )
    return 0


# Subcommands defined beside the code they drive; importing a module registers its commands.
COMMAND_MODULES: tuple[str, ...] = (
    "serl.teleop.commands",
    "serl.rewards.commands",
    "serl.robust.commands",
)


def _load_command_modules() -> None:
    """Import serl's command modules and those of other packages (`serl.commands` entry points,
    e.g. ``robots``'s `robot-server`), so serl never imports sim or robots by name."""
    for module in COMMAND_MODULES:
        importlib.import_module(module)
    for entry in entry_points(group="serl.commands"):
        entry.load()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    _load_command_modules()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print("usage: serl COMMAND [--help]\n\ncommands:")
        for name, (summary, _) in COMMANDS.items():
            print(f"  {name:<18} {summary}")
        return 0 if not argv or argv[0] in ("-h", "--help") else 2
    try:
        return COMMANDS[argv[0]][1](argv[1:])
    except _startup_errors() as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    # `python -m serl.cli`: command modules register on the importable `serl.cli`, not on
    # this `__main__` copy, so dispatch through that one.
    from serl.cli import main as serl_main

    sys.exit(serl_main())
