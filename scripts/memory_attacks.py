"""Peak RSS of the learner transport and the robot server under issue 18's memory attacks.

Prints, per attack, the target's peak RSS (VmHWM) before and after it, the growth, and its
RSS once the attack has landed; docs/transport-memory.md quotes the output. Each attack gets
a fresh target process (`tests/transport/attacks.py`):

- `learner_large_frames`: one message of 24 frames of 100 MiB (issue 18 item 2);
- `learner_many_frames`: one message of 2,000 frames of 256 KiB, each under the frame cap;
- `robot_large_frames`: one message of 1,500 frames of 1 MiB to `serl robot-server` (item 2);
- `robot_many_frames`: one message of 96,000 frames of 16 KiB, each under its frame cap;
- `robot_empty_frames`: one message of 2,000,000 empty frames (libzmq's worst memory per
  wire byte: a 64-byte message struct per 2-byte frame);
- `learner_never_read`: 60 peers that hello, ask for weights every 10 ms for 10 s and never
  read, against a learner publishing a 1 MiB policy at 20 Hz (item 3).

Run from the repository root: `MUJOCO_GL=egl .venv/bin/python scripts/memory_attacks.py`
(`--quick`: a tenth of the sizes; `--only NAME`: one attack). The largest attack sends
2.4 GB over loopback; a target without the bounds holds all of it for a moment.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file, import the repo

from tests.transport.attacks import (  # noqa: E402
    learner_target,
    memory_mib,
    multipart,
    never_read,
    robot_target,
    settle,
)

Target = Callable[[Path], AbstractContextManager[tuple[int, str]]]


@contextmanager
def _never_read(endpoint: str, peers: int, seconds: float) -> Iterator[None]:
    never_read(endpoint, peers, seconds)
    yield


ATTACKS: dict[str, tuple[Target, Callable[[str, int], AbstractContextManager[None]]]] = {
    "learner_large_frames": (learner_target, lambda ep, k: multipart(ep, 100 << 20, 24 // k)),
    "learner_many_frames": (learner_target, lambda ep, k: multipart(ep, 256 << 10, 2000 // k)),
    "robot_large_frames": (robot_target, lambda ep, k: multipart(ep, 1 << 20, 1500 // k)),
    "robot_many_frames": (robot_target, lambda ep, k: multipart(ep, 16 << 10, 96_000 // k)),
    "robot_empty_frames": (robot_target, lambda ep, k: multipart(ep, 0, 2_000_000 // k)),
    "learner_never_read": (learner_target, lambda ep, k: _never_read(ep, 60 // k, 10.0 / k)),
}


def measure(name: str, scale: int) -> dict[str, float]:
    target, attack = ATTACKS[name]
    with tempfile.TemporaryDirectory() as tmp, target(Path(tmp)) as (pid, endpoint):
        before = settle(pid, quiet_s=0.5)
        with attack(endpoint, scale):
            after = settle(pid)
        left = memory_mib(pid)
    return {
        "peak_before_mib": before["peak"],
        "peak_after_mib": after["peak"],
        "growth_mib": after["peak"] - before["peak"],
        "rss_after_mib": left["rss"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the issue's sizes")
    parser.add_argument("--only", choices=sorted(ATTACKS), help="run this attack only")
    args = parser.parse_args()
    names = [args.only] if args.only else list(ATTACKS)
    print(f"{'attack':<22} {'peak before':>12} {'peak after':>11} {'growth':>8} {'RSS after':>10}")
    for name in names:
        row = measure(name, 10 if args.quick else 1)
        print(
            f"{name:<22} {row['peak_before_mib']:>8.0f} MiB {row['peak_after_mib']:>7.0f} MiB "
            f"{row['growth_mib']:>4.0f} MiB {row['rss_after_mib']:>6.0f} MiB",
            flush=True,
        )


if __name__ == "__main__":
    main()
