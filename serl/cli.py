"""The `serl` command. Each subcommand's flags are generated from its config dataclass (tyro).

serl train-local --env Pendulum-v1 --agent sac       # one process: act, learn, evaluate
serl bench learner --quick                            # learner updates/s against SB3
serl checkpoint-info runs/local/checkpoint.safetensors
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from collections.abc import Callable

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
    from serl.local import LocalTrainConfig, train_local

    agent, rest = _split_agent_flag(args, LocalTrainConfig.agent)
    default = LocalTrainConfig(agent=agent, agent_cfg=agent_spec(agent).default_config())
    cfg = tyro.cli(LocalTrainConfig, default=default, args=rest, prog="serl train-local")
    cfg = dataclasses.replace(cfg, agent=agent)
    result = train_local(cfg)
    ev = result.final_eval
    print(
        f"\nfinal evaluation on {cfg.env}: return {ev['eval/return_mean']:.1f} "
        f"± {ev['eval/return_std']:.1f}, success rate {ev['eval/success_rate']:.0%}"
    )
    print(f"metrics:    {result.run_dir / 'metrics.jsonl'} (tensorboard --logdir {result.run_dir})")
    print(f"curve:      {result.curve_png}")
    print(f"checkpoint: {result.checkpoint}")
    return 0


@command("bench", "benchmarks: learner (more come with their modules)")
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


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print("usage: serl COMMAND [--help]\n\ncommands:")
        for name, (summary, _) in COMMANDS.items():
            print(f"  {name:<18} {summary}")
        return 0 if not argv or argv[0] in ("-h", "--help") else 2
    try:
        return COMMANDS[argv[0]][1](argv[1:])
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
