"""Memory attacks on the learner's and the robot server's sockets, against real processes.

Targets (each its own process, so its peak RSS is its own):

* `learner`: `python -m tests.transport.attacks CONFIG_JSON`, a `LearnerServer` for
  `STATE_SPEC` that polls as a learner loop does and publishes a policy of `weights_mib` every
  `publish_every_s`, until `stop_file` appears;
* `robot`: `serl robot-server --config FILE` with the sim backend, the process that owns the arm.

Attacks, run from the calling process: `multipart` sends one message of many frames and
`unfinished_message` one that never ends (issue 18 item 2); `never_read` connects peers that
hello, spam `weights_request` and never read (item 3).
`tests/transport/test_memory_bounds.py` runs them small; `scripts/memory_attacks.py` runs the
issue's sizes and prints the figures docs/transport-memory.md quotes.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import zmq

from tests.transport.helpers import (
    CONFIG_HASH,
    REPO_ROOT,
    STATE_SPEC,
    RawPeer,
    free_port,
    wait_for_file,
)


def memory_mib(pid: int) -> dict[str, float]:
    """The process's resident set now (`rss`) and at its peak (`peak`), in MiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) / 1024
    return {"rss": fields["VmRSS"], "peak": fields["VmHWM"]}


def settle(pid: int, quiet_s: float = 1.0, timeout_s: float = 20.0) -> dict[str, float]:
    """Memory once the peak has risen less than 1 MiB for `quiet_s` (the attack has landed)."""
    deadline = time.monotonic() + timeout_s
    mark, since = memory_mib(pid), time.monotonic()
    now = mark
    while time.monotonic() < deadline and time.monotonic() - since < quiet_s:
        time.sleep(0.1)
        now = memory_mib(pid)
        if now["peak"] - mark["peak"] >= 1.0:
            mark, since = now, time.monotonic()
    return now


@contextmanager
def learner_target(tmp_path: Path, weights_mib: float = 1.0) -> Iterator[tuple[int, str]]:
    """A learner transport process; yields (pid, data endpoint)."""
    config = {
        "ready_file": str(tmp_path / "learner-ready.json"),
        "stop_file": str(tmp_path / "learner-stop"),
        "weights_mib": weights_mib,
        "publish_every_s": 0.05,
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.transport.attacks", json.dumps(config)],
        cwd=REPO_ROOT,
        env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)),
    )
    try:
        ready = wait_for_file(Path(config["ready_file"]), timeout_s=30.0)
        yield proc.pid, ready["data"]
    finally:
        Path(config["stop_file"]).touch()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def robot_target(tmp_path: Path) -> Iterator[tuple[int, str]]:
    """`serl robot-server` with the sim backend; yields (pid, endpoint) once it answers."""
    from robots.client import RobotClient
    from serl.processes import child_env

    endpoint = f"tcp://127.0.0.1:{free_port()}"
    config = tmp_path / "robot-server.json"
    config.write_text(json.dumps({"endpoint": endpoint, "sim": {"realtime": False}}))
    log = (tmp_path / "robot-server.log").open("wb")
    # This checkout's code, whatever the `serl` script was installed from.
    env = child_env() | {
        "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"),
        "PYTHONPATH": str(REPO_ROOT),
    }
    serl = str(Path(sys.executable).parent / "serl")
    command = [serl, "robot-server", "--config", str(config)]
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        with RobotClient(endpoint, timeout_s=60.0) as client:
            client.get_state()
        yield proc.pid, endpoint
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@contextmanager
def multipart(endpoint: str, frame_bytes: int, frames: int) -> Iterator[None]:
    """Send one message of `frames` frames of `frame_bytes` each (one buffer, zero copy: the
    attacker itself stays small); the connection stays open until the block ends."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.linger = 0
    sock.connect(endpoint)
    payload = zmq.Frame(b"\0" * frame_bytes, copy=False)
    try:
        for _ in range(frames - 1):
            sock.send(payload, zmq.SNDMORE, copy=False)
        sock.send(payload, copy=False)
        yield
    finally:
        sock.close(linger=0)
        ctx.term()


def unfinished_message(endpoint: str, frame_bytes: int, frames: int) -> socket.socket:
    """Speak ZMTP 3.0 by hand (NULL mechanism, as a DEALER) and send `frames` frames that all
    say more follow: a message libzmq assembles and never hands over. Returns the connection,
    still open (unless the target closed it).

    A send that makes no progress for 5 s also ends the sending: when the target has already
    read everything and closed, its kernel keeps the orphaned socket in FIN-WAIT-2 with a zero
    window for `tcp_fin_timeout` (60 s), and a blocking send would wait that long for a reset."""
    host, port = endpoint.removeprefix("tcp://").rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=5.0)
    greeting = b"\xff" + bytes(8) + b"\x7f\x03\x00" + b"NULL".ljust(20, b"\0") + bytes(32)
    sock.sendall(greeting)
    sock.recv(64)
    ready = b"\x05READY\x0bSocket-Type" + struct.pack(">I", 6) + b"DEALER"
    sock.sendall(b"\x04" + bytes([len(ready)]) + ready)
    frame = b"\x03" + struct.pack(">Q", frame_bytes) + bytes(frame_bytes)  # MORE, long size
    try:
        for _ in range(frames):
            sock.sendall(frame)
    except OSError:  # the target ended the connection (or stopped reading: TimeoutError)
        pass
    return sock


def never_read(endpoint: str, peers: int, seconds: float) -> None:
    """`peers` connections that hello, then ask for weights every 10 ms and never read."""
    raws = [RawPeer(endpoint, rcvhwm=1, rcvbuf=4096) for _ in range(peers)]
    try:
        for i, raw in enumerate(raws):
            raw.hello(actor_id=f"never-reads-{i}")
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for raw in raws:
                raw.send_message("weights_request", {"have": -1, "conn": 1})
            time.sleep(0.01)
    finally:
        for raw in raws:
            raw.close()


def run_learner(cfg: dict[str, Any]) -> None:
    from serl.transport.server import LearnerServer

    rng = np.random.default_rng(0)
    n_big = max(1, int(cfg["weights_mib"] * 2**20 * 0.96) // (256 * 256 * 4))
    weights = {f"layer{i}": rng.standard_normal((256, 256), np.float32) for i in range(n_big)}
    weights |= {f"bias{i}": rng.standard_normal(256, np.float32) for i in range(40)}
    stop_file = Path(cfg["stop_file"])
    with LearnerServer(STATE_SPEC, CONFIG_HASH) as server:
        ready = Path(cfg["ready_file"])
        ready.with_suffix(".tmp").write_text(json.dumps({"data": server.data_endpoint}))
        os.replace(ready.with_suffix(".tmp"), ready)
        version, last_publish = 0, 0.0
        while not stop_file.exists():
            server.poll(5)
            if time.monotonic() - last_publish >= cfg["publish_every_s"]:
                version += 1
                server.publish_weights(version, weights)
                last_publish = time.monotonic()


if __name__ == "__main__":
    run_learner(json.loads(sys.argv[1]))
