"""`serl bench NAME`: benchmarks as commands that print a table and can write flat JSON.

A benchmark module exposes `run(quick: bool, device: str) -> dict[str, float | str]`. Speed
claims are ratios against a peer measured in the same run, never absolute timings alone.
Packages outside the learning core add benchmarks through the `serl.benchmarks` entry-point
group (`sim = "sim.bench"` gives `serl bench sim`), so serl never imports them by name.
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
from importlib.metadata import entry_points
from pathlib import Path

import torch

BENCHMARKS = {
    "learner": "serl.bench.learner",
    "transport": "serl.bench.transport",
    "reward": "serl.bench.reward",
    **{ep.name: ep.value for ep in entry_points(group="serl.benchmarks")},
}


def machine_description(device: str) -> str:
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads"


def run_benchmark(name: str, args: list[str]) -> int:
    parser = argparse.ArgumentParser(prog=f"serl bench {name}")
    parser.add_argument(
        "--quick", action="store_true", help="small sizes (about a minute on 2 cores)"
    )
    parser.add_argument("--json", type=Path, help="also write the figures as one flat JSON object")
    parser.add_argument("--device", default="cpu", help="torch device for learners (cpu, cuda)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    opts = parser.parse_args(args)
    if opts.threads:
        torch.set_num_threads(opts.threads)
    module = importlib.import_module(BENCHMARKS[name])
    figures = module.run(quick=opts.quick, device=opts.device)
    figures = {"machine": machine_description(opts.device), "quick": opts.quick, **figures}
    width = max(len(k) for k in figures)
    print(f"\nserl bench {name}{' --quick' if opts.quick else ''}")
    for key, value in figures.items():
        shown = f"{value:,.2f}" if isinstance(value, float) else str(value)
        print(f"  {key:<{width}}  {shown}")
    if opts.json:
        opts.json.parent.mkdir(parents=True, exist_ok=True)
        opts.json.write_text(json.dumps(figures, indent=2) + "\n")
        print(f"wrote {opts.json}")
    return 0
