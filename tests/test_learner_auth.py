"""CURVE end to end: a learner process with keys refuses actors without the right key."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from serl.agreement import Agreement, env_spaces, transition_spec
from serl.cli import main
from serl.transport.auth import generate_keys, load_client_keys
from serl.transport.client import ActorClient
from tests.learner_procs import (
    TINY,
    endpoints,
    latest,
    learner_config,
    procs,  # noqa: F401  (fixture)
    records,
    wait_until,
)

pytestmark = pytest.mark.timeout(90)


def _client(ports: tuple[int, int], curve, actor_id: str) -> ActorClient:
    observation_space, action_space = env_spaces("Pendulum-v1")
    return ActorClient(
        f"tcp://127.0.0.1:{ports[0]}",
        f"tcp://127.0.0.1:{ports[1]}",
        transition_spec(observation_space, action_space),
        Agreement("Pendulum-v1", "sac", TINY).hash,
        actor_id,
        curve=curve,
        heartbeat_s=0.2,
        silence_timeout_s=1.0,
    )


def test_with_curve_a_client_without_the_key_or_with_a_wrong_key_is_refused(
    tmp_path: Path,
    procs,  # noqa: F811
) -> None:
    keys = generate_keys(tmp_path / "keys", ("actor",))
    strangers = generate_keys(tmp_path / "strangers", ("actor",))
    stranger_with_our_server_key = load_client_keys(strangers, "actor")
    stranger_with_our_server_key = type(stranger_with_our_server_key)(
        stranger_with_our_server_key.public,
        stranger_with_our_server_key.secret,
        load_client_keys(keys, "actor").server_public,
    )
    run = tmp_path / "run"
    ports = endpoints()
    procs.start("learner", "learner", learner_config(run, ports, keys_dir=keys))
    wait_until(
        lambda: latest(run, "learner/updates") >= 0, 60, "the learner", lambda: procs.log("learner")
    )

    refused = {
        "no keys": _client(ports, None, "nokey"),
        "unauthorized key": _client(ports, stranger_with_our_server_key, "stranger"),
        "wrong server key": _client(ports, load_client_keys(strangers, "actor"), "imposter"),
    }
    try:
        time.sleep(2.0)  # several connection attempts each
        for what, client in refused.items():
            assert not client.connected, what
        failures = ("auth", "protocol", "no_detail")
        failed = sum(latest(run, f"transport/zmq/handshake_failed_{f}", 0) for f in failures)
        assert failed >= 3
        # Nothing of theirs reached the application: no handshake, no message, no drop.
        assert latest(run, "transport/handshakes", 0) == 0
        assert latest(run, "transport/no_session", 0) == 0
        logged = {key for record in records(run) for key in record}
        assert not [key for key in logged if key.startswith("transport/dropped/")]

        good = _client(ports, load_client_keys(keys, "actor"), "robot-0")
        try:
            good.wait_connected(15.0)
            wait_until(lambda: latest(run, "transport/handshakes", 0) == 1, 10, "one handshake")
        finally:
            good.close(timeout_s=0)
    finally:
        for client in refused.values():
            client.close(timeout_s=0)


def test_missing_key_files_fail_closed_with_a_clear_message(tmp_path: Path, capsys) -> None:
    missing = tmp_path / "no-keys"
    run = tmp_path / "run"
    assert main(["learner", "--keys-dir", str(missing), "--run-dir", str(run)]) == 2
    learner_err = capsys.readouterr().err
    assert main(["actor", "--keys-dir", str(missing)]) == 2
    actor_err = capsys.readouterr().err
    assert f"CURVE key file {missing}/server.key_secret is missing" in learner_err
    assert "serl keys generate" in learner_err
    assert f"CURVE key file {missing}/actor.key_secret is missing" in actor_err
    assert not run.exists()  # failed before creating anything


def test_binding_a_public_address_without_keys_or_insecure_is_refused(
    tmp_path: Path, capsys
) -> None:
    run = tmp_path / "run"
    args = ["learner", "--data-endpoint", "tcp://0.0.0.0:0", "--run-dir", str(run)]
    assert main(args) == 2
    assert "refusing to bind tcp://0.0.0.0:0 without CURVE keys" in capsys.readouterr().err
    assert not run.exists()
