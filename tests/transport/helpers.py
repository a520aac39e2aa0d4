"""Shared pieces of the transport tests: specs, chunk builders, loop helpers, processes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from serl.transport.protocol import TransitionSpec, chunk_arrays
from serl.transport.server import LearnerServer, PollResult

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG_HASH = "3fa2c1d0e5b7a9f1"

STATE_SPEC = TransitionSpec(obs={"state": ("float32", (17,))}, action=("float32", (6,)))
IMAGE_SPEC = TransitionSpec(
    obs={
        "wrist": ("uint8", (128, 128, 3)),
        "front": ("uint8", (128, 128, 3)),
        "state": ("float32", (7,)),
    },
    action=("float32", (7,)),
)

# Client timings short enough for tests, long enough for a loaded 2-core machine.
FAST_CLIENT: dict[str, Any] = {
    "heartbeat_s": 0.2,
    "silence_timeout_s": 1.5,
    "backoff_initial_s": 0.05,
    "backoff_max_s": 0.5,
    "weights_stale_s": 0.3,
}


def state_chunk(seq_value: float, n: int = 8) -> dict[str, np.ndarray]:
    """A state chunk whose obs are all `seq_value` (so the receiver can tell chunks apart)."""
    return chunk_arrays(
        obs={"state": np.full((n, 17), seq_value, np.float32)},
        next_obs={"state": np.full((n, 17), seq_value + 0.5, np.float32)},
        action=np.zeros((n, 6), np.float32),
        reward=np.arange(n, dtype=np.float32),
        terminated=np.zeros(n, bool),
        truncated=np.zeros(n, bool),
        episode_id=np.full(n, 7, np.int64),
        t=np.arange(n, dtype=np.int64),
    )


def image_chunk(n: int = 4, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return chunk_arrays(
        obs={
            "wrist": rng.integers(0, 256, (n, 128, 128, 3), dtype=np.uint8),
            "front": rng.integers(0, 256, (n, 128, 128, 3), dtype=np.uint8),
            "state": rng.standard_normal((n, 7)).astype(np.float32),
        },
        action=rng.uniform(-1, 1, (n, 7)).astype(np.float32),
        reward=rng.standard_normal(n).astype(np.float32),
        terminated=np.zeros(n, bool),
        truncated=np.eye(1, n, n - 1, dtype=bool)[0],
    )


def pump(
    server: LearnerServer,
    until: Callable[[PollResult], bool],
    timeout_s: float = 5.0,
    into: PollResult | None = None,
) -> PollResult:
    """Poll the server, accumulating results, until `until(total)` or the timeout."""
    total = into if into is not None else PollResult()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = server.poll(20)
        total.chunks += got.chunks
        total.episode_stats += got.episode_stats
        total.new_actors += got.new_actors
        if until(total):
            return total
    return total


def pump_for(server: LearnerServer, seconds: float) -> PollResult:
    return pump(server, lambda _: False, seconds)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(role: str, config: dict[str, Any]) -> subprocess.Popen:
    """Start `python -m tests.transport.procs ROLE CONFIG_JSON` from the repo root."""
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    return subprocess.Popen(
        [sys.executable, "-m", "tests.transport.procs", role, json.dumps(config)],
        cwd=REPO_ROOT,
        env=env,
    )


def wait_for_file(path: Path, timeout_s: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists():
            return json.loads(path.read_text())
        time.sleep(0.02)
    raise TimeoutError(f"{path} did not appear within {timeout_s} s")


class RawPeer:
    """A bare DEALER speaking the wire format by hand (or not at all), for fault injection."""

    def __init__(self, endpoint: str, **sockopts: Any) -> None:
        import zmq

        self._zmq = zmq
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.linger = 0
        for name, value in sockopts.items():
            setattr(self.sock, name, value)
        self.sock.connect(endpoint)

    def send(self, frames: list) -> None:
        self.sock.send_multipart(frames, copy=True)

    def send_message(self, kind: str, fields: dict, arrays: dict | None = None) -> None:
        from serl.transport.codec import encode

        self.send(encode(kind, fields, arrays))

    def hello(self, spec: TransitionSpec = STATE_SPEC, actor_id: str = "raw", **extra: Any) -> None:
        from serl.transport.protocol import Handshake

        fields = Handshake(CONFIG_HASH, spec, actor_id=actor_id).to_fields()
        defaults = {"conn": 1, "weights_version": -1, "first_seq": 0}
        self.send_message("hello", fields | defaults | extra)

    def recv(self, server: LearnerServer | None = None, timeout_s: float = 3.0):
        """The next message for this peer (polling `server` meanwhile), or None."""
        from serl.transport.codec import decode

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if server is not None:
                server.poll(5)
            if self.sock.poll(5):
                return decode(self.sock.recv_multipart())
        return None

    def close(self) -> None:
        self.sock.close(linger=0)
        self.ctx.term()


class Serving:
    """Polls a server from a background thread (for tests whose main thread blocks)."""

    def __init__(self, server: LearnerServer) -> None:
        import threading

        self.server = server
        self.total = PollResult()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            got = self.server.poll(10)
            self.total.chunks += got.chunks
            self.total.episode_stats += got.episode_stats
            self.total.new_actors += got.new_actors

    def __enter__(self) -> Serving:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def file_creating_pickle(path: Path, proto: bool = False) -> bytes:
    """Pickle bytes, written by hand, whose unpickling would run open(path, "w").

    If `path` ever exists, something unpickled what a peer sent. `proto` prefixes the
    protocol-4 opcode (b"\\x80\\x04") that modern pickles start with.
    """
    body = b"cbuiltins\nopen\n(V" + str(path).encode() + b"\nVw\ntR."
    return (b"\x80\x04" if proto else b"") + body
