import json
import os

import gymnasium as gym
import numpy as np
import pytest
import torch
from safetensors.torch import load

from serl.agents.sac import SACAgent, SACConfig
from serl.checkpoint import (
    CheckpointError,
    _digest,
    flatten_state,
    load_into,
    read_checkpoint,
    save_checkpoint,
    unflatten_state,
)
from serl.config import config_hash, config_to_dict
from tests.agents.test_sac import random_batch

STATE = gym.spaces.Box(-np.inf, np.inf, (5,), np.float32)
ACTION = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
CFG = SACConfig.rlpd(hidden_dims=(16, 16), utd=2, batch_size=8, num_qs=4)


def make_agent(cfg: SACConfig = CFG, seed: int = 0) -> SACAgent:
    return SACAgent(cfg, STATE, ACTION, seed=seed)


def save(agent: SACAgent, path) -> None:
    save_checkpoint(path, agent.state_dict(), config=config_to_dict(agent.cfg),
                    config_hash=config_hash(agent.cfg))  # fmt: skip


def flat_params(agent: SACAgent) -> list[torch.Tensor]:
    _, tensors = flatten_state(agent.state_dict())
    return [tensors[k] for k in sorted(tensors)]


def test_state_tree_round_trips_through_skeleton_and_tensors():
    tree = {"a": torch.arange(3), "opt": {0: {"step": torch.tensor(2.0)}, 1: {}},
            "groups": [{"betas": (0.9, 0.999), "lr": 3e-4, "name": None}],
            "arr": np.arange(4, dtype=np.int64)}  # fmt: skip
    skeleton, tensors = flatten_state(tree)
    back = unflatten_state(skeleton, tensors)
    assert torch.equal(back["a"], tree["a"]) and back["opt"][1] == {}
    assert list(back["opt"]) == [0, 1]  # int keys stay ints
    assert back["groups"][0]["betas"] == (0.9, 0.999)
    np.testing.assert_array_equal(back["arr"], tree["arr"])


@pytest.mark.parametrize(
    "cfg", [CFG, SACConfig(hidden_dims=(16,), critic_dropout=0.1, utd=2, batch_size=8)]
)
def test_save_load_then_update_gives_identical_parameters(tmp_path, cfg):
    """Also with critic dropout, whose masks come from the checkpointed generator."""
    agent = make_agent(cfg)
    for i in range(3):
        agent.update(random_batch(16, seed=i))
    save(agent, tmp_path / "ckpt.safetensors")
    resumed = make_agent(cfg, seed=123)  # different init and RNG, all overwritten by the load
    load_into(tmp_path / "ckpt.safetensors", resumed, config_hash=config_hash(cfg))
    torch.manual_seed(99)  # the global RNG differs between the two processes' histories
    for i in range(3, 6):
        assert agent.update(random_batch(16, seed=i)) == resumed.update(random_batch(16, seed=i))
    for a, b in zip(flat_params(agent), flat_params(resumed), strict=True):
        assert torch.equal(a, b)
    assert resumed.critic_steps == agent.critic_steps == 6 * cfg.utd


def test_crash_during_write_leaves_the_previous_checkpoint_valid(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.safetensors"
    agent = make_agent()
    save(agent, path)
    good = path.read_bytes()
    agent.update(random_batch(16))

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        save(agent, path)
    assert path.read_bytes() == good
    assert list(tmp_path.iterdir()) == [path]  # no temp file left behind
    read_checkpoint(path)


def test_a_save_deletes_the_temp_file_of_an_earlier_killed_save(tmp_path):
    path = tmp_path / "ckpt.safetensors"
    leftover = tmp_path / ".ckpt.safetensors.k1ll.tmp"
    leftover.write_bytes(bytes(1 << 20))  # a save killed before its os.replace
    other = tmp_path / ".other.safetensors.k1ll.tmp"  # another file's write: not ours
    other.write_bytes(b"x")
    save_checkpoint(path, {"w": torch.ones(3)}, config={}, config_hash="h")
    assert not leftover.exists() and other.exists()
    assert path.exists()


@pytest.mark.parametrize("damage", ["truncate", "flip_tensor_byte", "garbage"])
def test_corrupt_checkpoint_gives_a_clear_error_and_the_agent_is_untouched(tmp_path, damage):
    path = tmp_path / "ckpt.safetensors"
    save(make_agent(), path)
    raw = bytearray(path.read_bytes())
    if damage == "truncate":
        raw = raw[: len(raw) // 2]
    elif damage == "flip_tensor_byte":
        raw[-10] ^= 0xFF
    else:
        raw = bytearray(os.urandom(200))
    path.write_bytes(bytes(raw))
    agent = make_agent(seed=5)
    before = flat_params(agent)
    with pytest.raises(CheckpointError, match="corrupt"):
        load_into(path, agent)
    assert all(torch.equal(a, b) for a, b in zip(before, flat_params(agent), strict=True))


def test_checkpoint_of_another_config_is_refused_naming_the_tensor(tmp_path):
    path = tmp_path / "ckpt.safetensors"
    save(make_agent(SACConfig.rlpd(hidden_dims=(32, 16), utd=2, batch_size=8, num_qs=4)), path)
    agent = make_agent()
    before = flat_params(agent)
    with pytest.raises(CheckpointError, match=r"tensor 'policy/head.trunk.net.0.weight' has shape"):
        load_into(path, agent)
    with pytest.raises(CheckpointError, match="written with config"):
        load_into(path, agent, config_hash=config_hash(CFG))
    assert all(torch.equal(a, b) for a, b in zip(before, flat_params(agent), strict=True))


def test_missing_file_is_named(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        read_checkpoint(tmp_path / "nope.safetensors")


def test_checkpoint_holds_config_and_metadata(tmp_path):
    path = tmp_path / "ckpt.safetensors"
    save_checkpoint(path, {"w": torch.ones(2)}, config={"num_qs": 10}, config_hash="abc",
                    metadata={"env_steps": 7})  # fmt: skip
    header, state = read_checkpoint(path)
    assert header["config"] == {"num_qs": 10} and header["metadata"] == {"env_steps": 7}
    assert torch.equal(state["w"], torch.ones(2))


def rewrite_header(path, edit, raw_skeleton: str | None = None) -> None:
    """Apply `edit` to the serl header of a checkpoint and write the file back, as an attacker
    or a bit flip would; the tensors are untouched. `raw_skeleton` replaces the skeleton with
    JSON text too deep for Python's json to build as an object."""
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    meta = json.loads(raw[8 : 8 + n])
    header = json.loads(meta["__metadata__"]["serl"])
    edit(header, load(raw))
    text = json.dumps(header)
    if raw_skeleton is not None:
        text = text.replace(json.dumps(header["skeleton"]), raw_skeleton)
    meta["__metadata__"]["serl"] = text
    head = json.dumps(meta).encode()
    head += b" " * (-len(head) % 8)
    path.write_bytes(len(head).to_bytes(8, "little") + head + raw[8 + n :])


def test_a_changed_counter_in_the_metadata_fails_the_checksum(tmp_path):
    path = tmp_path / "ckpt.safetensors"
    save_checkpoint(path, {"w": torch.ones(2)}, config={}, config_hash="abc",
                    metadata={"env_steps": 123456, "cursors": {"actor-0": 17}})  # fmt: skip
    rewrite_header(path, lambda h, _: h["metadata"].update(env_steps=323456))
    with pytest.raises(CheckpointError, match="do not match the checksum"):
        read_checkpoint(path)


@pytest.mark.parametrize(
    "skeleton",
    [
        {"__dict__": [["w", {"__tensor__": "no/such/tensor"}]]},  # was a KeyError
        {"__dict__": 5},  # was a TypeError
        {"__tuple__": None},
    ],
    ids=["missing-tensor", "not-a-list", "bad-tuple"],
)
def test_a_crafted_skeleton_with_a_valid_checksum_is_a_checkpoint_error(tmp_path, skeleton):
    path = tmp_path / "ckpt.safetensors"
    save_checkpoint(path, {"w": torch.ones(2)}, config={}, config_hash="abc")

    def craft(header, tensors):  # resealed, as an attacker who knows the format would
        header["skeleton"] = skeleton
        header["sha256"] = _digest(tensors, header)

    rewrite_header(path, craft)
    with pytest.raises(CheckpointError, match="does not rebuild"):
        read_checkpoint(path)


def test_a_skeleton_nested_too_deep_is_a_checkpoint_error(tmp_path):
    path = tmp_path / "ckpt.safetensors"
    save_checkpoint(path, {"w": torch.ones(2)}, config={}, config_hash="abc")
    rewrite_header(path, lambda h, _: None, raw_skeleton="[" * 100_000 + "]" * 100_000)
    with pytest.raises(CheckpointError, match="not a readable"):  # was a RecursionError
        read_checkpoint(path)


def test_an_emptied_critic_is_refused_before_the_policy_is_touched(tmp_path):
    path = tmp_path / "ckpt.safetensors"
    save(make_agent(), path)

    def empty_critic(header, tensors):
        entries = header["skeleton"]["__dict__"]
        header["skeleton"]["__dict__"] = [
            [k, {"__dict__": []} if k == "critic" else v] for k, v in entries
        ]
        header["sha256"] = _digest(tensors, header)

    rewrite_header(path, empty_critic)
    agent = make_agent(seed=5)
    before = flat_params(agent)
    with pytest.raises(CheckpointError, match="missing .* under 'critic'"):
        load_into(path, agent)
    assert all(torch.equal(a, b) for a, b in zip(before, flat_params(agent), strict=True))


def test_a_load_that_fails_part_way_puts_the_previous_state_back(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.safetensors"
    save(make_agent(seed=1), path)
    agent = make_agent(seed=5)
    before = flat_params(agent)
    real_load = SACAgent.load_state_dict
    calls = []

    def load_then_fail(self, state):
        calls.append(1)
        if len(calls) == 1:  # the checkpoint's state: load it, then fail as a bug would
            real_load(self, state)
            raise RuntimeError("simulated failure after the weights were copied")
        real_load(self, state)  # the rollback

    monkeypatch.setattr(SACAgent, "load_state_dict", load_then_fail)
    with pytest.raises(CheckpointError, match="nothing was loaded"):
        load_into(path, agent)
    assert all(torch.equal(a, b) for a, b in zip(before, flat_params(agent), strict=True))
