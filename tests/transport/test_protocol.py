"""Handshake comparison and chunk validation against the transition spec."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from serl.transport.codec import WireError
from serl.transport.protocol import (
    ChunkRejected,
    Handshake,
    HandshakeRefused,
    TransitionSpec,
    check_handshake,
)
from tests.transport.helpers import CONFIG_HASH, IMAGE_SPEC, STATE_SPEC, image_chunk, state_chunk


def _image_spec(wrist_shape: tuple[int, ...]) -> TransitionSpec:
    obs = dict(IMAGE_SPEC.obs) | {"wrist": ("uint8", wrist_shape)}
    return TransitionSpec(obs=obs, action=IMAGE_SPEC.action)


def test_matching_handshake_is_accepted() -> None:
    learner = Handshake(CONFIG_HASH, IMAGE_SPEC)
    actor = Handshake(CONFIG_HASH, _image_spec((128, 128, 3)), actor_id="a", incarnation=2)
    check_handshake(learner, actor)


def test_handshake_mismatch_names_config_hash_and_observation_shape() -> None:
    learner = Handshake("3fa2c1d0e5b7a9f1ffee", IMAGE_SPEC)
    actor = Handshake("91bc77aa00112233ffee", _image_spec((64, 64, 3)), actor_id="robot-0")
    with pytest.raises(HandshakeRefused) as info:
        check_handshake(learner, actor)
    text = str(info.value)
    assert "config hash differs: learner 3fa2c1d0e5b7.. actor 91bc77aa0011.." in text
    assert "observation 'wrist' shape (128, 128, 3) vs (64, 64, 3)" in text
    assert "'robot-0'" in text


def test_handshake_mismatch_names_missing_keys_action_and_protocol() -> None:
    actor_spec = TransitionSpec(
        obs={"wrist": ("uint8", (128, 128, 3)), "depth": ("uint16", (64, 64))},
        action=("float64", (6,)),
    )
    learner = Handshake(CONFIG_HASH, IMAGE_SPEC)
    actor = Handshake(CONFIG_HASH, actor_spec, protocol_version=99)
    with pytest.raises(HandshakeRefused) as info:
        check_handshake(learner, actor)
    text = str(info.value)
    assert "protocol version differs: learner 1 actor 99" in text
    assert "observation 'front' missing on the actor" in text
    assert "observation 'depth' missing on the learner" in text
    assert "action dtype float32 vs float64" in text
    assert "action shape (7,) vs (6,)" in text


def test_handshake_survives_the_wire_form() -> None:
    actor = Handshake(CONFIG_HASH, IMAGE_SPEC, actor_id="a", incarnation=3)
    assert Handshake.from_fields(actor.to_fields()) == actor


@pytest.mark.parametrize(
    "spec",
    [
        None,
        {"obs": {}, "action": ["float32", [6]], "extras": {}},
        {"obs": {"x": ["object", [3]]}, "action": ["float32", [6]], "extras": {}},
        {"obs": {"x": ["float32", [-3]]}, "action": ["float32", [6]], "extras": {}},
        {"obs": {"a/b": ["float32", [3]]}, "action": ["float32", [6]], "extras": {}},
        {
            "obs": {"x": ["float32", [3]]},
            "action": ["float32", [6]],
            "extras": {"reward": ["float32", []]},
        },
    ],
)
def test_malformed_spec_from_a_peer_is_a_wire_error(spec: object) -> None:
    fields = Handshake(CONFIG_HASH, STATE_SPEC).to_fields() | {"spec": spec}
    with pytest.raises(WireError):
        Handshake.from_fields(fields)


def test_spec_from_gymnasium_spaces() -> None:
    obs_space = gym.spaces.Dict(
        {
            "wrist": gym.spaces.Box(0, 255, (128, 128, 3), np.uint8),
            "state": gym.spaces.Box(-1, 1, (7,), np.float32),
        }
    )
    spec = TransitionSpec.from_spaces(obs_space, gym.spaces.Box(-1, 1, (7,), np.float32))
    assert spec.obs == {"wrist": ("uint8", (128, 128, 3)), "state": ("float32", (7,))}
    assert spec.action == ("float32", (7,))
    box = TransitionSpec.from_spaces(gym.spaces.Box(-1, 1, (3,)), gym.spaces.Box(-1, 1, (1,)))
    assert box.obs == {"state": ("float32", (3,))}


def test_valid_chunks_pass_and_report_their_length() -> None:
    assert STATE_SPEC.validate_chunk(state_chunk(1.0, n=8)) == 8
    assert IMAGE_SPEC.validate_chunk(image_chunk(n=3)) == 3


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_are_rejected(bad: float) -> None:
    chunk = state_chunk(1.0)
    chunk["obs/state"][3, 2] = bad
    with pytest.raises(ChunkRejected, match="non_finite.*obs/state"):
        STATE_SPEC.validate_chunk(chunk)
    chunk = state_chunk(1.0)
    chunk["reward"][0] = bad
    with pytest.raises(ChunkRejected, match="non_finite.*reward"):
        STATE_SPEC.validate_chunk(chunk)


def test_chunks_that_do_not_fit_the_spec_are_rejected() -> None:
    chunk = state_chunk(1.0)
    chunk["obs/state"] = chunk["obs/state"][:, :10]
    with pytest.raises(ChunkRejected, match="bad_shape"):
        STATE_SPEC.validate_chunk(chunk)
    chunk = state_chunk(1.0)
    chunk["action"] = chunk["action"].astype(np.float64)
    with pytest.raises(ChunkRejected, match="bad_dtype"):
        STATE_SPEC.validate_chunk(chunk)
    chunk = state_chunk(1.0)
    chunk["terminated"] = chunk["terminated"][:3]
    with pytest.raises(ChunkRejected, match="bad_shape"):
        STATE_SPEC.validate_chunk(chunk)
    chunk = state_chunk(1.0)
    del chunk["reward"]
    with pytest.raises(ChunkRejected, match="missing_array"):
        STATE_SPEC.validate_chunk(chunk)
    chunk = state_chunk(1.0) | {"secret": np.zeros(8, np.uint8)}
    with pytest.raises(ChunkRejected, match="unknown_array"):
        STATE_SPEC.validate_chunk(chunk)
