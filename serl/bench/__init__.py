"""`serl bench NAME`: benchmarks as commands that print a table and can write flat JSON.

A benchmark module exposes `run(quick: bool, device: str) -> dict[str, float | str]`; one with
flags of its own also has `add_arguments(parser)`, and `run` gets them as keywords. Speed
claims are ratios against a peer measured in the same run, never absolute timings alone.
Packages outside the learning core add benchmarks through the `serl.benchmarks` entry-point
group (`sim = "sim.bench"` gives `serl bench sim`), so serl never imports them by name.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import platform
from importlib.metadata import entry_points
from pathlib import Path

import torch

BENCHMARKS = {
    "learner": "serl.bench.learner",
    "transport": "serl.bench.transport",
    "reward": "serl.bench.reward",
    "learn": "serl.bench.learn",
    "robust": "serl.bench.robust",
    "hybrid": "serl.bench.hybrid",
    "link-outage": "serl.bench.outage",
    **{ep.name: ep.value for ep in entry_points(group="serl.benchmarks")},
}


def machine_description(device: str) -> str:
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads"


def _json_value(value: object) -> object:
    """NaN/Inf (a threshold never reached) become null: the file stays valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def run_benchmark(name: str, args: list[str]) -> int:
    parser = argparse.ArgumentParser(prog=f"serl bench {name}")
    parser.add_argument(
        "--quick", action="store_true", help="small sizes (about a minute on 2 cores)"
    )
    parser.add_argument("--json", type=Path, help="also write the figures as one flat JSON object")
    parser.add_argument("--device", default="cpu", help="torch device for learners (cpu, cuda)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    module = importlib.import_module(BENCHMARKS[name])
    base = set(vars(parser.parse_args([])))
    if hasattr(module, "add_arguments"):  # flags of this benchmark only (e.g. learn --suite)
        module.add_arguments(parser)
    opts = parser.parse_args(args)
    if opts.threads:
        torch.set_num_threads(opts.threads)
    extra = {k: v for k, v in vars(opts).items() if k not in base}
    try:
        figures = module.run(quick=opts.quick, device=opts.device, **extra)
    except ValueError as exc:  # a bad flag value found by the benchmark: usage error, exit 2
        parser.error(str(exc))
    figures = {"machine": machine_description(opts.device), "quick": opts.quick, **figures}
    width = max(len(k) for k in figures)
    print(f"\nserl bench {name}{' --quick' if opts.quick else ''}")
    for key, value in figures.items():
        shown = f"{value:,.2f}" if isinstance(value, float) else str(value)
        print(f"  {key:<{width}}  {shown}")
    if opts.json:
        opts.json.parent.mkdir(parents=True, exist_ok=True)
        finite = {k: _json_value(v) for k, v in figures.items()}
        opts.json.write_text(json.dumps(finite, indent=2, allow_nan=False) + "\n")
        print(f"wrote {opts.json}")
    return 0
