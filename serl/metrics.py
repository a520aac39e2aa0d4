"""Run metrics: one JSON line per record (machine-readable, used by benchmarks) + TensorBoard."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from torch.utils.tensorboard import SummaryWriter


class MetricsLogger:
    """Appends `{"step": s, "time_s": t, **metrics}` lines to `metrics.jsonl` under `run_dir`.

    `time_s` is the Unix time of the record, so curves can be drawn against wall-clock across
    processes and resumed runs (benchmarks subtract their own start time)."""

    def __init__(self, run_dir: str | Path, *, tensorboard: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.run_dir / "metrics.jsonl"
        self._file = self.path.open("a", buffering=1)
        self._tb = SummaryWriter(str(self.run_dir / "tensorboard")) if tensorboard else None

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        record: dict[str, Any] = {"step": step, "time_s": round(time.time(), 3)}
        for key, value in metrics.items():
            value = float(value)
            record[key] = value if math.isfinite(value) else None
            if self._tb is not None and math.isfinite(value):
                self._tb.add_scalar(key, value, step)
        self._file.write(json.dumps(record) + "\n")

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()

    def __enter__(self) -> MetricsLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """All records of a metrics.jsonl file; a torn last line (crash mid-write) is skipped."""
    records = []
    for line in Path(path).read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records
