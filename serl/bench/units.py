"""A benchmark's independent units (one method × seed) run in parallel worker processes.

A unit is a JSON object naming its work (`{"name": "dr_sac-seed3", "method": ..., ...}`); the
benchmark module runs one with `run_unit(spec) -> dict`. Each finished unit's result is
written atomically to `<out>/units/<name>.json`, so a benchmark that is stopped resumes where
it was: units with a result are read back, not rerun. With `jobs > 1` every unit runs as its
own `python -m serl.bench.units MODULE SPEC RESULT` process (JSON in, JSON out, one torch
thread each), which is how a multi-core machine runs a many-seed benchmark in the time of one.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from tqdm import tqdm


def result_path(out: Path, spec: dict[str, Any]) -> Path:
    return out / "units" / f"{spec['name']}.json"


def write_json_atomic(path: Path, value: dict[str, Any]) -> None:
    """`value` as JSON at `path`, never half-written (temporary file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(value, indent=1) + "\n")
    os.replace(tmp, path)


def _run_worker(module: str, spec: dict[str, Any], result: Path) -> None:
    log = result.with_suffix(".log")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "serl.bench.units", module, json.dumps(spec), str(result)]
    with log.open("w") as sink:
        code = subprocess.call(command, stdout=sink, stderr=subprocess.STDOUT, env=env)
    if code != 0:
        tail = "".join(log.read_text().splitlines(keepends=True)[-20:])
        raise RuntimeError(f"unit {spec['name']} exited with {code}; end of {log}:\n{tail}")


def run_units(
    module: str, specs: Sequence[dict[str, Any]], out: Path, jobs: int = 1
) -> dict[str, dict[str, Any]]:
    """Results of every unit by name: read back where already written, else computed."""
    results: dict[str, dict[str, Any]] = {}
    todo = []
    for spec in specs:
        path = result_path(out, spec)
        if path.exists():
            results[spec["name"]] = json.loads(path.read_text())
        else:
            todo.append(spec)
    if results:
        print(f"resuming: {len(results)} of {len(specs)} units already done under {out}")
    bar = tqdm(total=len(todo), desc="units", unit="unit")
    if jobs <= 1:
        run_unit = importlib.import_module(module).run_unit
        for spec in todo:
            results[spec["name"]] = run_unit(spec)
            write_json_atomic(result_path(out, spec), results[spec["name"]])
            bar.update()
    else:
        for spec in todo:
            result_path(out, spec).parent.mkdir(parents=True, exist_ok=True)
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            futures = {
                pool.submit(_run_worker, module, spec, result_path(out, spec)): spec
                for spec in todo
            }
            for future in as_completed(futures):
                future.result()
                spec = futures[future]
                results[spec["name"]] = json.loads(result_path(out, spec).read_text())
                bar.update()
    bar.close()
    return results


def main(argv: Sequence[str]) -> int:
    module, spec, result = argv
    import torch

    torch.set_num_threads(1)
    write_json_atomic(Path(result), importlib.import_module(module).run_unit(json.loads(spec)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
