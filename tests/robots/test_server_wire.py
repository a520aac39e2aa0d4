"""The robot server's wire: bad input is counted and dropped, requests cannot change limits,
replies carry what the client API promises, and the client times out naming the endpoint."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import zmq

from robots.client import RobotClient, RobotServerError, RobotTimeoutError
from robots.server import RobotServer
from serl.processes import free_port
from serl.transport.codec import encode

pytestmark = pytest.mark.timeout(60)

Server = Callable[..., RobotServer]
Client = Callable[..., RobotClient]


class RawPeer:
    """A bare DEALER that sends whatever bytes it is given."""

    def __init__(self, endpoint: str) -> None:
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.linger = 0
        self.sock.connect(endpoint)

    def send(self, frames: list) -> None:
        self.sock.send_multipart(frames)

    def close(self) -> None:
        self.sock.close(linger=0)
        self.ctx.term()


def pickle_bytes(path: Path) -> bytes:
    """Pickle opcodes whose unpickling would create `path` (it must never exist)."""
    return b"\x80\x04cbuiltins\nopen\n(V" + str(path).encode() + b"\nVw\ntR."


def wait_for(client: RobotClient, key: str, at_least: int) -> dict[str, int]:
    for _ in range(200):
        counters = client.info()["stats"]
        if counters.get(key, 0) >= at_least:
            return counters
    raise AssertionError(f"{key} never reached {at_least}: {counters}")


def test_random_oversized_and_pickle_input_is_dropped_and_the_server_keeps_serving(
    make_server: Server, make_client: Client, tmp_path: Path
) -> None:
    server = make_server()
    client = make_client(server.endpoint)
    peer = RawPeer(server.endpoint)
    rng = np.random.default_rng(0)
    marker = tmp_path / "unpickled"
    try:
        peer.send([rng.bytes(200)])  # random bytes as a header
        peer.send([pickle_bytes(marker)])  # a pickle as the header
        peer.send(encode("move_to", {"rid": 1}, {"pos": np.zeros(3)})[:1] + [pickle_bytes(marker)])
        peer.send([b"x" * (server.cfg.max_message_bytes + 1)])  # over the cap: never read
        counters = wait_for(client, "dropped:bad_msgpack", 2)
    finally:
        peer.close()
    assert counters["dropped:frame_size_mismatch"] == 1  # pickle bytes where an array goes
    assert not marker.exists()
    state = client.get_state()  # still serving
    assert state["ee_pos"].shape == (3,)
    assert client.move_delta([0.0, 0.0, 0.01]).accepted


def test_requests_cannot_change_the_safety_limits(make_server: Server, make_client: Client) -> None:
    client = make_client(make_server(max_step_m=0.02).endpoint)
    with pytest.raises(RobotServerError, match="unknown_kind"):
        client._call("set_safety", {"max_step_m": 1.0})
    with pytest.raises(RobotServerError, match="bad_fields"):
        client._call("move_delta", {"max_step_m": 1.0}, {"dpos": np.array([0.3, 0.0, 0.0])})
    assert client.info()["safety"]["max_step_m"] == 0.02
    assert client.move_delta([0.2, 0.0, 0.0]).clamped == ("step_m",)
    counters = client.info()["stats"]
    assert counters["refused:unknown_kind"] == 1 and counters["refused:bad_fields"] == 1


def test_state_render_reset_and_profiles_over_the_wire(
    make_server: Server, make_client: Client
) -> None:
    client = make_client(make_server().endpoint)
    state = client.get_state()
    shapes = {k: v.shape for k, v in state.items()}
    assert shapes == {
        "ee_pos": (3,),
        "ee_quat": (4,),
        "ee_vel": (6,),
        "gripper_width": (1,),
        "q": (7,),
        "dq": (7,),
        "timestamp": (),
        "held": (),
        "estopped": (),
    }
    assert np.linalg.norm(state["ee_quat"]) == pytest.approx(1.0)
    frame = client.render("front")
    assert frame.shape == (64, 64, 3) and frame.dtype == np.uint8 and frame.std() > 0
    with pytest.raises(RobotServerError, match="no camera 'top'"):
        client.render("top")
    for _ in range(5):
        client.move_delta([0.0, 0.02, 0.0])
    home = client.reset("home")
    np.testing.assert_allclose(home["q"], client.reset(np.array(home["q"]))["q"], atol=1e-9)
    with pytest.raises(RobotServerError, match="bad_pose"):
        client.reset(np.array([0.0, 5.0, 0.0, -2.2, 0.0, 1.9, 0.8]))
    client.set_compliance("compliant")
    assert client.info()["profile"] == "compliant"
    with pytest.raises(RobotServerError, match="unknown_profile"):
        client.set_compliance("wobbly")


def test_client_timeout_names_the_endpoint() -> None:
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    with RobotClient(endpoint, timeout_s=0.3) as client:
        with pytest.raises(RobotTimeoutError, match=endpoint):
            client.get_state()


def test_curve_server_answers_keyed_clients_only(tmp_path: Path) -> None:
    from robots.config import RobotServerConfig, SimBackendConfig
    from serl.transport.auth import generate_keys, load_client_keys

    keys = generate_keys(tmp_path / "keys", ("actor",))
    cfg = RobotServerConfig(
        endpoint="tcp://127.0.0.1:0", keys_dir=keys, sim=SimBackendConfig(realtime=False)
    )
    with RobotServer(cfg).start() as server:
        curve = load_client_keys(keys, "actor")
        with RobotClient(server.endpoint, timeout_s=10.0, curve=curve) as client:
            assert client.get_state()["ee_pos"].shape == (3,)
        with RobotClient(server.endpoint, timeout_s=0.5) as stranger:
            with pytest.raises(RobotTimeoutError):
                stranger.get_state()
