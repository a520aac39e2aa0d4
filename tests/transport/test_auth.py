"""CURVE: keys on disk, fail-closed loading, and no message through without the right key."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import zmq

from serl.transport.auth import (
    AuthError,
    generate_keys,
    load_client_keys,
    load_server_keys,
)
from serl.transport.client import ActorClient
from serl.transport.server import LearnerServer
from tests.transport.helpers import (
    CONFIG_HASH,
    FAST_CLIENT,
    STATE_SPEC,
    RawPeer,
    pump,
    pump_for,
    state_chunk,
)

pytestmark = pytest.mark.timeout(60)  # every test here may open sockets

MakeClient = Callable[..., ActorClient]


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    return generate_keys(tmp_path / "keys", client_names=("actor", "robot-1"))


@pytest.fixture
def secure_server(keys: Path) -> Iterator[LearnerServer]:
    server = LearnerServer(STATE_SPEC, CONFIG_HASH, curve=load_server_keys(keys))
    yield server
    server.close()


def test_generate_keys_writes_server_client_and_authorized_keys(keys: Path) -> None:
    names = sorted(p.relative_to(keys).as_posix() for p in keys.rglob("*") if p.is_file())
    assert names == [
        "actor.key",
        "actor.key_secret",
        "authorized/actor.key",
        "authorized/robot-1.key",
        "robot-1.key",
        "robot-1.key_secret",
        "server.key",
        "server.key_secret",
    ]
    assert load_client_keys(keys, "robot-1").server_public == load_server_keys(keys).public


def test_secrets_are_owner_only_and_a_readable_secret_is_refused(keys: Path) -> None:
    assert keys.stat().st_mode & 0o777 == 0o700
    for secret in keys.glob("*.key_secret"):
        assert secret.stat().st_mode & 0o777 == 0o600, secret
    (keys / "robot-1.key_secret").chmod(0o644)
    with pytest.raises(AuthError, match=r"robot-1\.key_secret can be read by other users "
                       r"\(mode 0644\).*chmod 600"):  # fmt: skip
        load_client_keys(keys, "robot-1")
    (keys / "server.key_secret").chmod(0o640)
    with pytest.raises(AuthError, match=r"server\.key_secret can be read by other users"):
        load_server_keys(keys)
    (keys / "server.key_secret").chmod(0o600)
    load_server_keys(keys)
    load_client_keys(keys, "actor")


def test_generating_again_keeps_the_keys_unless_forced(keys: Path) -> None:
    before = (keys / "server.key_secret").read_bytes()
    with pytest.raises(AuthError, match=r"server\.key.*already exist.*--force"):
        generate_keys(keys, client_names=("actor",))
    assert (keys / "server.key_secret").read_bytes() == before
    generate_keys(keys, client_names=("actor",), force=True)
    assert (keys / "server.key_secret").read_bytes() != before
    assert (keys / "server.key_secret").stat().st_mode & 0o777 == 0o600


def test_missing_server_secret_fails_closed_naming_the_file(keys: Path) -> None:
    (keys / "server.key_secret").unlink()
    with pytest.raises(AuthError, match=r"server\.key_secret is missing.*serl keys generate"):
        load_server_keys(keys)


def test_no_authorized_actor_key_fails_closed(keys: Path) -> None:
    for path in (keys / "authorized").glob("*.key"):
        path.unlink()
    with pytest.raises(AuthError, match="no authorized actor keys"):
        load_server_keys(keys)


def test_missing_client_files_fail_closed_naming_the_file(keys: Path) -> None:
    with pytest.raises(AuthError, match=r"nobody\.key_secret is missing"):
        load_client_keys(keys, "nobody")
    (keys / "server.key").unlink()
    with pytest.raises(AuthError, match=r"server\.key is missing"):
        load_client_keys(keys, "actor")


def test_a_missing_actor_key_names_the_key_names_the_folder_holds(tmp_path: Path) -> None:
    keys = generate_keys(tmp_path / "keys", ("robot-0", "robot-1"))
    with pytest.raises(AuthError, match=r"actor\.key_secret is missing.*--key-name robot-0"):
        load_client_keys(keys)  # the default name, "actor", with keys made for robots


def test_a_public_key_file_is_not_a_secret(keys: Path) -> None:
    (keys / "actor.key_secret").write_text((keys / "actor.key").read_text())
    (keys / "actor.key_secret").chmod(0o600)
    with pytest.raises(AuthError, match="holds no secret key"):
        load_client_keys(keys, "actor")


@pytest.mark.timeout(10)
def test_binding_all_interfaces_is_allowed_with_keys(keys: Path) -> None:
    server = LearnerServer(
        STATE_SPEC, CONFIG_HASH, "tcp://0.0.0.0:0", "tcp://0.0.0.0:0", curve=load_server_keys(keys)
    )
    server.close()


@pytest.mark.timeout(15)
def test_client_with_the_right_key_gets_chunks_and_weights_through(
    keys: Path, secure_server: LearnerServer, make_client: MakeClient
) -> None:
    client = make_client(secure_server, curve=load_client_keys(keys, "actor"))
    for seq in range(3):
        client.send_chunk(state_chunk(float(seq)))
    got = pump(secure_server, lambda total: len(total.chunks) == 3)
    assert [c.seq for c in got.chunks] == [0, 1, 2]
    secure_server.publish_weights(1, {"w": np.ones(4, np.float32)})
    pump(secure_server, lambda _: client.latest_weights() is not None)
    assert client.latest_weights().version == 1


@pytest.mark.timeout(20)
def test_without_a_key_or_with_a_wrong_key_nothing_reaches_poll(
    tmp_path: Path, keys: Path, secure_server: LearnerServer, make_client: MakeClient
) -> None:
    rogue = generate_keys(tmp_path / "rogue", client_names=("actor",))
    server_public = load_server_keys(keys).public
    rogue_keys = load_client_keys(rogue, "actor")
    # A refused peer's queue can vanish with its connection (libzmq drops the pipe when the
    # server answers the handshake with an ERROR), after which a blocking send would wait
    # forever: the peers give up on a send after 0.5 s, which is what being refused looks like.
    no_keys = RawPeer(secure_server.data_endpoint, sndtimeo=500)
    wrong_client_key = RawPeer(
        secure_server.data_endpoint,
        sndtimeo=500,
        curve_secretkey=rogue_keys.secret,
        curve_publickey=rogue_keys.public,
        curve_serverkey=server_public,
    )
    wrong_server_key = make_client(secure_server, actor_id="mitm", curve=rogue_keys)
    sub_ctx = zmq.Context()
    keyless_sub = sub_ctx.socket(zmq.SUB)
    keyless_sub.setsockopt(zmq.SUBSCRIBE, b"")
    keyless_sub.connect(secure_server.weights_endpoint)
    try:
        for peer in (no_keys, wrong_client_key):
            with contextlib.suppress(zmq.Again):
                peer.hello()
                peer.send_message("chunk", {"seq": 0, "conn": 1}, state_chunk(0.0))
        got = pump_for(secure_server, 1.0)
        secure_server.publish_weights(1, {"w": np.ones(4, np.float32)})
        got.chunks += pump_for(secure_server, 0.3).chunks
        assert got.chunks == [] and got.new_actors == [] and got.episode_stats == []
        assert secure_server.stats["handshakes"] == 0
        assert secure_server.live_actors() == []
        failed = sum(v for k, v in secure_server.stats.items() if "handshake_failed" in k)
        assert failed >= 3
        assert secure_server._zap is not None and secure_server._zap.denied >= 1
        assert secure_server._zap.allowed == 0
        assert not wrong_server_key.connected
        assert keyless_sub.poll(100) == 0  # weights are not readable without a key either
    finally:
        keyless_sub.close(linger=0)
        sub_ctx.term()
        no_keys.close()
        wrong_client_key.close()


@pytest.mark.timeout(20)
def test_an_actor_id_belongs_to_the_key_that_first_used_it(
    keys: Path, secure_server: LearnerServer, make_client: MakeClient
) -> None:
    client = make_client(secure_server, actor_id="robot-0", curve=load_client_keys(keys, "actor"))
    client.send_chunk(state_chunk(0.0))
    pump(secure_server, lambda total: len(total.chunks) == 1)
    other = load_client_keys(keys, "robot-1")  # an authorized key, but not robot-0's
    impostor = RawPeer(
        secure_server.data_endpoint,
        curve_secretkey=other.secret,
        curve_publickey=other.public,
        curve_serverkey=other.server_public,
    )
    try:
        impostor.hello(actor_id="robot-0", incarnation=0)
        refused = impostor.recv(secure_server)
        assert refused is not None and refused.kind == "refused"
        assert "belongs to another CURVE key" in refused.fields["reason"]
        impostor.hello(actor_id="robot-1")  # its own name is fine
        assert impostor.recv(secure_server).kind == "welcome"
    finally:
        impostor.close()
    client.send_chunk(state_chunk(1.0))
    got = pump(secure_server, lambda total: len(total.chunks) == 1)
    assert [c.actor_id for c in got.chunks] == ["robot-0"]


@pytest.mark.timeout(20)
def test_an_actor_ids_key_survives_a_learner_restart(keys: Path) -> None:
    """The tie is saved with the cursors (`owners()`): a restarted learner does not let the
    first key to say hello take over a name another key held before the restart."""
    first = LearnerServer(STATE_SPEC, CONFIG_HASH, curve=load_server_keys(keys))
    owner = load_client_keys(keys, "actor")
    client = ActorClient(
        first.data_endpoint, first.weights_endpoint, STATE_SPEC, CONFIG_HASH, "robot-0", 0,
        curve=owner, **FAST_CLIENT,
    )  # fmt: skip
    try:
        assert pump(first, lambda total: bool(total.new_actors), 5.0).new_actors
        saved = first.owners()
    finally:
        client.close(timeout_s=0.0)
        first.close()
    assert saved == {"robot-0": owner.public.decode()}

    restarted = LearnerServer(STATE_SPEC, CONFIG_HASH, curve=load_server_keys(keys))
    restarted.load_owners(saved)
    other = load_client_keys(keys, "robot-1")
    impostor = RawPeer(
        restarted.data_endpoint,
        curve_secretkey=other.secret,
        curve_publickey=other.public,
        curve_serverkey=other.server_public,
    )
    try:
        impostor.hello(actor_id="robot-0", incarnation=1)
        refused = impostor.recv(restarted)
        assert refused is not None and refused.kind == "refused"
        assert "belongs to another CURVE key" in refused.fields["reason"]
    finally:
        impostor.close()
        restarted.close()


def test_saved_key_ties_that_are_not_keys_are_refused_on_load() -> None:
    server = LearnerServer(STATE_SPEC, CONFIG_HASH)
    try:
        with pytest.raises(ValueError, match="not a Z85 CURVE public key"):
            server.load_owners({"robot-0": "short"})
    finally:
        server.close()
