"""`serl robot-server`: registered with the `serl` command through the `serl.commands` entry
point (pyproject.toml), so `serl` itself never imports `robots`."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import sys
from pathlib import Path

import tyro

from serl.cli import command


@command("robot-server", "on the robot PC: own the arm and serve it safely over ZeroMQ")
def _robot_server(args: list[str]) -> int:
    from robots.backends.base import BackendError, MissingDriverError
    from robots.config import (
        ConfigError,
        RobotServerConfig,
        config_to_json,
        load_server_config,
    )
    from robots.server import RobotServer
    from serl.processes import StopSignal

    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", type=Path)
    known, rest = pre.parse_known_args(args)
    try:
        default = load_server_config(known.config) if known.config else RobotServerConfig()
        description = (
            "The robot server: owns the arm through a backend and serves state, motion, "
            "gripper, reset and compliance calls over ZeroMQ, enforcing the safety limits.\n\n"
            "Also takes --config FILE.json (any subset of these fields); flags override it. "
            "The safety limits can be changed only here, never over the wire."
        )
        cfg = tyro.cli(
            RobotServerConfig,
            default=default,
            args=rest,
            prog="serl robot-server",
            description=description,
        )
        cfg = dataclasses.replace(cfg)  # re-run the validation on the merged config
        server = RobotServer(cfg)
    except (ConfigError, MissingDriverError, BackendError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"robot server ({cfg.backend}) listening on {server.endpoint}", flush=True)
    print("safety: " + json.dumps(config_to_json(cfg)["safety"]), flush=True)
    print(f"release an e-stop from this PC with: kill -USR1 {os.getpid()}", flush=True)
    signal.signal(signal.SIGUSR1, lambda signum, frame: server.release_estop_locally())
    with StopSignal() as stop:
        try:
            server.serve(lambda: stop.stop_requested)
        finally:
            counters = dict(server.stats)
            server.close()
    print(f"robot server stopped; counters: {json.dumps(counters, sort_keys=True)}")
    return 0
