"""`serl bench link-outage`: a robot PC's link pulled for 2-20 s; what it costs to come back.

One learner ("gpu-pc") and one actor ("robot-0", Pendulum at 100 Hz, CURVE keys, spilling to
disk with 8 chunks of 16 transitions in memory) run as real `serl` processes in network
namespaces (serl.bench.netlab). While they stream, the robot's link is pulled at the switch
for each outage length in turn, with 8 s of normal streaming between outages. Figures:

- `resume_s_<L>`: from the link coming back to the learner ingesting new transitions again
  (read from the learner's metrics, logged every 0.1 s), for an outage of L seconds. It is
  bounded by the actor noticing the silence (`silence_timeout_s`, 3 s here) and its
  reconnect back-off; a short outage can resume on the same TCP connection.
- `spill_bytes_per_outage_s_<L>`: spill files on disk when the link returns ÷ L (the first
  1.3 s of an outage fill the in-memory outbox, so short outages spill less per second).
- `transitions_stepped`, `lost`, `duplicated`: what the actor stepped against the rows of the
  learner's final checkpoint (both must be 0), over all outages of the run.

Needs root and iproute2 (network namespaces); `--quick` does 2 s and 5 s outages only;
`--plot PNG` draws the first two figures against the outage length.
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from serl.actor import ActorConfig
from serl.agents.sac import SACConfig
from serl.bench.netlab import NetLab, unavailable_reason
from serl.learner import LearnerConfig, stored_transitions
from serl.metrics import read_metrics
from serl.processes import spawn_serl
from serl.transport.auth import generate_keys

OUTAGES_S = (2.0, 5.0, 10.0, 20.0)
QUICK_OUTAGES_S = (2.0, 5.0)
BETWEEN_S = 8.0
"""Normal streaming before the first outage and between outages."""
PORTS = (5555, 5556)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--outages", type=float, nargs="+", help=f"outage lengths in s (default {OUTAGES_S})"
    )
    parser.add_argument(
        "--plot", type=Path, help="also draw time to resume and spill rate against outage length"
    )


def plot_outages(figures: dict[str, Any], lengths: tuple[float, ...], png: Path) -> Path:
    """Two panels against outage length: seconds to resume streaming, spilled kB per second."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    resume = [figures[f"resume_s_{length:g}"] for length in lengths]
    spill = [figures[f"spill_bytes_per_outage_s_{length:g}"] / 1e3 for length in lengths]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    left.plot(lengths, resume, marker="o")
    left.set(xlabel="outage (s)", ylabel="s to resume streaming", ylim=(0, None))
    left.set_title("link back -> learner ingesting again", fontsize=10)
    right.plot(lengths, spill, marker="o", color="tab:orange")
    right.set(xlabel="outage (s)", ylabel="spilled kB per s of outage", ylim=(0, None))
    right.set_title("Pendulum at 100 Hz, 8 chunks of 16 in memory", fontsize=10)
    for ax in (left, right):
        ax.grid(alpha=0.3)
    lost, duplicated = figures["lost"], figures["duplicated"]
    fig.suptitle(
        f"a robot PC's link pulled: {figures['transitions_stepped']:,} transitions stepped, "
        f"{lost} lost, {duplicated} duplicated",
        fontsize=11,
    )
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return png


def _wait(condition: Any, timeout_s: float, what: str, procs: dict[str, Any], logs: Path) -> None:
    """Wait for `condition`; a process that died meanwhile or a timeout raises, naming its log."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        for name, proc in procs.items():
            if proc.poll() is not None:
                tail = (logs / f"{name}.log").read_text()[-2000:]
                raise RuntimeError(f"{name} exited ({proc.returncode}) before {what}:\n{tail}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.05)


def _ingest_times(run_dir: Path) -> list[tuple[float, int]]:
    """(unix time, env steps received) of each learner metrics record."""
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    return [
        (r["time_s"], int(r["learner/env_steps"]))
        for r in read_metrics(path)
        if "learner/env_steps" in r
    ]


def _resumed_at(run_dir: Path, link_up: float, timeout_s: float = 60.0) -> float:
    """Unix time at which the learner's env steps first grew after `link_up`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        records = _ingest_times(run_dir)
        before = [steps for t, steps in records if t <= link_up]
        after = [(t, steps) for t, steps in records if t > link_up]
        if before and after:
            grown = [t for t, steps in after if steps > before[-1]]
            if grown:
                return grown[0]
        time.sleep(0.1)
    raise RuntimeError(f"streaming did not resume within {timeout_s} s of the link coming back")


def run(
    quick: bool, device: str, outages: list[float] | None = None, plot: Path | None = None
) -> dict[str, Any]:
    reason = unavailable_reason()
    if reason is not None:
        raise ValueError(f"link-outage needs network namespaces, but {reason}")
    lengths = tuple(outages) if outages else (QUICK_OUTAGES_S if quick else OUTAGES_S)
    if any(length <= 0 for length in lengths):
        raise ValueError(f"--outages {lengths}: each must be > 0 s")
    with tempfile.TemporaryDirectory(prefix="serl-outage-") as tmp, NetLab("bench") as lab:
        figures = _measure(Path(tmp), lab, lengths, device)
    if plot is not None:
        print(f"wrote {plot_outages(figures, lengths, plot)}")
    return figures


def _measure(root: Path, lab: NetLab, lengths: tuple[float, ...], device: str) -> dict[str, Any]:
    gpu, robot = lab.add_host("gpu-pc"), lab.add_host("robot-0")
    keys = generate_keys(root / "keys", ("robot-0",))
    run_dir, spill_dir = root / "run", root / "spill"
    agent = SACConfig(hidden_dims=(16,), batch_size=16)
    learner = LearnerConfig(
        env="Pendulum-v1",
        agent_cfg=agent,
        data_endpoint=f"tcp://{gpu.address}:{PORTS[0]}",
        weights_endpoint=f"tcp://{gpu.address}:{PORTS[1]}",
        keys_dir=keys,
        min_buffer=100,
        utd_ratio=0.2,
        checkpoint_every_s=0.5,
        log_every_s=0.1,
        run_dir=run_dir,
        threads=1,
        device=device,
    )
    actor = ActorConfig(
        env="Pendulum-v1",
        agent_cfg=agent,
        learner_host=gpu.address,
        data_port=PORTS[0],
        weights_port=PORTS[1],
        keys_dir=keys,
        key_name="robot-0",
        actor_id="robot-0",
        random_steps=100,
        control_hz=100.0,
        chunk_size=16,
        eval_every=0,
        spill_dir=spill_dir,
        outbox_limit=8,
        silence_timeout_s=3.0,
        close_timeout_s=60.0,
    )
    logs = root / "logs"
    procs = {
        "learner": spawn_serl(
            "learner", learner, root / "learner.json", logs / "learner.log", prefix=gpu.prefix
        )
    }
    try:
        _wait(lambda: _ingest_times(run_dir) != [], 180, "the learner to start", procs, logs)
        procs["actor"] = spawn_serl(
            "actor", actor, root / "actor.json", logs / "actor.log", prefix=robot.prefix
        )
        _wait(
            lambda: any(s > 0 for _, s in _ingest_times(run_dir)),
            180,
            "the first transitions",
            procs,
            logs,
        )
        figures: dict[str, Any] = {}
        for length in lengths:
            time.sleep(BETWEEN_S)
            lab.link_down(robot)
            time.sleep(length)
            spilled = sum(p.stat().st_size for p in spill_dir.glob("*[0-9].npz"))
            lab.link_up(robot)
            link_up = time.time()
            resumed = _resumed_at(run_dir, link_up)
            figures[f"resume_s_{length:g}"] = resumed - link_up
            figures[f"spill_bytes_per_outage_s_{length:g}"] = spilled / length
            print(f"outage {length:g} s: streaming resumed {resumed - link_up:.2f} s after the "
                  f"link came back; {spilled / 1e3:.0f} kB spilled", flush=True)  # fmt: skip
        time.sleep(BETWEEN_S)
        procs["actor"].terminate()  # SIGTERM: flush, wait for the learner's commit, exit
        if procs["actor"].wait(timeout=90) != 0:
            raise RuntimeError(f"the actor failed; see {logs / 'actor.log'}")
        procs["learner"].terminate()  # a last checkpoint, then exit
        if procs["learner"].wait(timeout=90) != 0:
            raise RuntimeError(f"the learner failed; see {logs / 'learner.log'}")
        done = re.search(r"actor robot-0 done: (\d+) steps", (logs / "actor.log").read_text())
        if done is None:
            raise RuntimeError(f"the actor did not report its steps; see {logs / 'actor.log'}")
        stepped = int(done.group(1))
        _, rows = stored_transitions(run_dir)
        unique = Counter((r[1], r[2], r[3]) for r in rows)
        figures |= {
            "transitions_stepped": stepped,
            "lost": stepped - len(unique),
            "duplicated": len(rows) - len(unique),
        }
        return figures
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
