"""Learner and actor processes for the transport tests: `python -m tests.transport.procs ROLE JSON`.

server: a minimal learner. Its "buffer" is the list of received (actor, incarnation, seq,
    value) records; it is saved with the cursors, atomically, as one checkpoint every
    `checkpoint_s`, then committed, exactly as a real learner would (and then, with `stall_s`,
    silent that long, as a learner inside a long update). It restores both on start and stops
    (after a last checkpoint) when `stop_file` appears.
actor: sends `n_chunks` chunks whose obs value is the seq (`client`: ActorClient settings
    over the fast test ones), then closes (waiting for the commits) and writes its counters
    to `result_file`; with `wait_for_kill`, it writes its counters once the chunks are queued
    and waits to be killed instead.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from serl.transport.client import ActorClient
from serl.transport.server import LearnerServer
from tests.transport.helpers import CONFIG_HASH, FAST_CLIENT, STATE_SPEC, state_chunk


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def run_server(cfg: dict[str, Any]) -> None:
    state_file = Path(cfg["state_file"])
    received: list[list[Any]] = []
    server = LearnerServer(
        STATE_SPEC, CONFIG_HASH, cfg["data_endpoint"], cfg["weights_endpoint"], durable=True
    )
    if state_file.exists():
        state = json.loads(state_file.read_text())
        received = state["received"]
        server.load_cursors(state["cursors"])
    _write_json(
        Path(cfg["ready_file"]),
        {"data": server.data_endpoint, "weights": server.weights_endpoint, "pid": os.getpid()},
    )
    last_checkpoint = time.monotonic()
    stop_file = Path(cfg["stop_file"])
    while True:
        for chunk in server.poll(20).chunks:
            value = float(chunk.obs["state"][0, 0])
            received.append([chunk.actor_id, chunk.incarnation, chunk.seq, value])
        stopping = stop_file.exists()
        if stopping or time.monotonic() - last_checkpoint > cfg["checkpoint_s"]:
            cursors = server.cursors()
            _write_json(state_file, {"received": received, "cursors": cursors})
            server.commit(cursors)
            time.sleep(cfg.get("stall_s", 0.0))  # a learner inside a long update: silent
            last_checkpoint = time.monotonic()
        if stopping:
            break
    server.close()


def run_actor(cfg: dict[str, Any]) -> None:
    client = ActorClient(
        cfg["data_endpoint"],
        cfg["weights_endpoint"],
        STATE_SPEC,
        CONFIG_HASH,
        cfg["actor_id"],
        cfg.get("incarnation", 0),
        outbox_limit=cfg.get("outbox_limit", 4096),
        spill_dir=cfg.get("spill_dir"),
        **(FAST_CLIENT | cfg.get("client", {})),
    )
    period = 1.0 / cfg["chunks_per_s"]
    start = time.monotonic()
    for seq in range(cfg["n_chunks"]):
        time.sleep(max(0.0, start + seq * period - time.monotonic()))
        client.send_chunk(state_chunk(float(seq)))
    if cfg.get("wait_for_kill"):
        _write_json(Path(cfg["result_file"]), {"counters": client.counters()})
        while True:
            time.sleep(1.0)
    flushed = client.close(timeout_s=cfg.get("close_timeout_s", 20.0))
    _write_json(Path(cfg["result_file"]), {"flushed": flushed, "counters": client.counters()})


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(processName)s %(name)s: %(message)s")
    role, config = sys.argv[1], json.loads(sys.argv[2])
    {"server": run_server, "actor": run_actor}[role](config)
