"""Frozen camera backbones: loading, digests, features stored once per frame, and refusals."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from serl.agents.sac import SACAgent, SACConfig
from serl.build import frame_features
from serl.checkpoint import read_checkpoint, save_checkpoint
from serl.data.replay import FrameFeatures, ReplayBuffer, ReplayFileError
from serl.nets.backbones import BackboneError, FrozenBackbone, ResNet
from serl.nets.encoders import EncoderConfig

FRAME = gym.spaces.Box(0, 255, (32, 32, 3), np.uint8)
PIXELS = gym.spaces.Dict(
    {"front": FRAME, "wrist": FRAME, "state": gym.spaces.Box(-1, 1, (4,), np.float32)}
)
ACTION = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)


def resnet_file(tmp_path, depth_blocks: int = 1, seed: int = 0, suffix: str = ".safetensors"):
    """A ResNet state dict in torchvision's names (random weights, with a classifier)."""
    torch.manual_seed(seed)
    state = {k: v.clone() for k, v in ResNet(depth_blocks).state_dict().items()}
    state |= {"fc.weight": torch.randn(10, 512), "fc.bias": torch.zeros(10)}
    path = tmp_path / f"resnet{seed}{suffix}"
    if suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save(state, path)
    return path


def agent_with(tmp_path=None, **encoder) -> SACAgent:
    cfg = SACConfig(
        hidden_dims=(32,), batch_size=8, encoder=EncoderConfig(feature_dim=16, **encoder)
    )
    return SACAgent(cfg, PIXELS, ACTION)


def frames(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3), np.uint8)


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_a_torchvision_named_resnet_loads_from_a_local_file(tmp_path, suffix):
    path = resnet_file(tmp_path, suffix=suffix)
    backbone = FrozenBackbone("resnet10", str(path), pool=2)
    out = backbone(torch.from_numpy(frames(3, 0)))
    assert out.shape == (3, 512 * 4) and torch.isfinite(out).all()
    # The weights are the file's: a second file gives other features and another digest.
    other = FrozenBackbone("resnet10", str(resnet_file(tmp_path, seed=1)), pool=2)
    assert other.digest != backbone.digest


def test_weights_of_another_architecture_or_a_pickle_are_refused_clearly(tmp_path):
    with pytest.raises(BackboneError, match="missing tensors"):
        FrozenBackbone("resnet18", str(resnet_file(tmp_path)), pool=1)  # a ResNet-10 file
    pickled = tmp_path / "evil.pth"
    torch.save({"conv1.weight": torch.zeros(1), "note": object()}, pickled)
    with pytest.raises(BackboneError, match="cannot read backbone weights"):
        FrozenBackbone("resnet10", str(pickled), pool=1)
    with pytest.raises(BackboneError, match="does not exist"):
        FrozenBackbone("resnet10", str(tmp_path / "none.safetensors"), pool=1)
    with pytest.raises(BackboneError, match="needs --backbone-weights"):
        FrozenBackbone("resnet18", None, pool=1)


def test_efficientnet_lite0_comes_from_its_wheel_with_imagenet_weights():
    backbone = FrozenBackbone("efficientnet-lite0", None, pool=2)
    again = FrozenBackbone("efficientnet-lite0", None, pool=2)
    assert backbone.digest == again.digest  # the same file, the same digest
    # 128x128 -> a 320-channel 4x4 map, pooled to 2x2.
    out = backbone(torch.from_numpy(np.zeros((1, 128, 128, 3), np.uint8)))
    assert out.shape == (1, 320 * 4)
    # ImageNet weights, not a fresh init: the stem's batch-norm statistics are trained.
    stem_var = backbone.__dict__["net"].net._bn0.running_var
    assert not torch.allclose(stem_var, torch.ones_like(stem_var))


def test_the_backbone_stays_out_of_published_weights_but_its_digest_is_checked():
    agent = agent_with(backbone="conv")
    state = agent.policy_state()
    backbone_keys = [key for key in state if ".backbone." in key]
    assert backbone_keys and all(key.endswith(".digest_bytes") for key in backbone_keys)
    assert sum(t.numel() for t in state.values()) < 100_000
    other = agent_with(backbone="conv", backbone_pool=1)  # another digest
    with pytest.raises(BackboneError, match="backbone"):
        other.policy.load_state_dict(state)
    agent_with(backbone="conv").policy.load_state_dict(state)  # the same backbone loads


def test_the_target_encoder_shares_the_frozen_network_and_trains_its_own_head():
    agent = agent_with(backbone="conv")
    online, target = agent.encoder.cameras["front"], agent.target_encoder.cameras["front"]
    assert target.backbone.__dict__["net"] is online.backbone.__dict__["net"]
    assert target.project[0].weight is not online.project[0].weight
    torch.testing.assert_close(target.project[0].weight, online.project[0].weight)


def test_the_buffer_stores_the_backbones_features_of_every_frame_exactly_once():
    agent = agent_with(backbone="conv")
    specs = frame_features(agent)
    calls = []

    def counting(spec: FrameFeatures) -> FrameFeatures:
        def encode(x: np.ndarray) -> np.ndarray:
            calls.append(len(x))
            return spec.encode(x)

        return FrameFeatures(spec.key, spec.dim, encode)

    buffer = ReplayBuffer(PIXELS, 2, 64, frame_features={k: counting(s) for k, s in specs.items()})
    n = 10  # one episode of 10 transitions: 11 frames per camera
    state = np.zeros((n + 1, 4), np.float32)
    obs = {"front": frames(n + 1, 1), "wrist": frames(n + 1, 2), "state": state}
    for t in range(n):
        buffer.add(
            {k: v[t] for k, v in obs.items()}, np.zeros(2), 0.0,
            {k: v[t + 1] for k, v in obs.items()}, False, t == n - 1,
            source="online", episode_id=0, t=t,
        )  # fmt: skip
    assert sum(calls) == 2 * (n + 1)  # each stored frame once, per camera

    batch = buffer.gather(np.arange(n))
    key = specs["front"].key
    assert set(batch.obs) == {"state", key, specs["wrist"].key}  # features instead of frames
    with torch.no_grad():
        want = agent.encoder.cameras["front"].backbone(torch.from_numpy(obs["front"]))
    torch.testing.assert_close(batch.obs[key], want[:n], atol=2e-3, rtol=2e-3)  # float16
    torch.testing.assert_close(batch.next_obs[key], want[1:], atol=2e-3, rtol=2e-3)
    # The encoder gives the same features from stored features as from the frames.
    from_frames = agent.encoder({k: torch.from_numpy(v[:n]) for k, v in obs.items()})
    from_store = agent.encoder(batch.obs)
    torch.testing.assert_close(from_store, from_frames.float(), atol=5e-3, rtol=5e-3)


def test_a_saved_buffer_loads_only_under_the_backbone_that_made_its_features(tmp_path):
    agent = agent_with(backbone="conv")
    buffer = ReplayBuffer(PIXELS, 2, 16, frame_features=frame_features(agent))
    obs = {"front": frames(1, 0)[0], "wrist": frames(1, 1)[0], "state": np.zeros(4, np.float32)}
    buffer.add(obs, np.zeros(2), 1.0, obs, True, False, source="online", episode_id=0, t=0)
    path = tmp_path / "replay.npz"
    buffer.save(path)
    same = ReplayBuffer.load(path, PIXELS, 2, frame_features=frame_features(agent))
    key = frame_features(agent)["front"].key
    torch.testing.assert_close(same.gather([0]).obs[key], buffer.gather([0]).obs[key])
    other = frame_features(agent_with(backbone="conv", backbone_pool=1))
    with pytest.raises(ReplayFileError, match="never mixed"):
        ReplayBuffer.load(path, PIXELS, 2, frame_features=other)
    with pytest.raises(ReplayFileError, match="never mixed"):
        ReplayBuffer.load(path, PIXELS, 2)  # a DrQ run cannot take it either


def _batch_from(buffer: ReplayBuffer, seed: int):
    return buffer.sample(8, np.random.default_rng(seed))


@pytest.mark.parametrize("encoder", [{}, {"backbone": "conv"}], ids=["drq", "frozen-backbone"])
def test_resume_from_a_checkpoint_file_continues_identically(tmp_path, encoder):
    """Agent and buffer saved to disk and loaded into fresh objects update exactly as the
    originals (DrQ: encoder, target encoder and augmentation RNG; frozen: heads and features)."""
    agent = agent_with(**encoder)
    buffer = ReplayBuffer(PIXELS, 2, 64, frame_features=frame_features(agent))
    rng = np.random.default_rng(0)
    for t in range(20):
        s0, s1 = rng.random(4, np.float32), rng.random(4, np.float32)
        o = {"front": frames(1, t)[0], "wrist": frames(1, 100 + t)[0], "state": s0}
        n = {"front": frames(1, t + 1)[0], "wrist": frames(1, 101 + t)[0], "state": s1}
        buffer.add(o, rng.uniform(-1, 1, 2), rng.random(), n, False, False,
                   source="online", episode_id=0, t=t)  # fmt: skip
    agent.update(_batch_from(buffer, 1))
    save_checkpoint(tmp_path / "ckpt.safetensors", agent.state_dict(), config={}, config_hash="x")
    buffer.save(tmp_path / "replay.npz")

    clone = agent_with(**encoder)
    clone.load_state_dict(read_checkpoint(tmp_path / "ckpt.safetensors")[1])
    loaded = ReplayBuffer.load(
        tmp_path / "replay.npz", PIXELS, 2, frame_features=frame_features(clone)
    )
    for seed in (2, 3):
        assert agent.update(_batch_from(buffer, seed)) == clone.update(_batch_from(loaded, seed))
    obs = {"front": frames(1, 7)[0], "wrist": frames(1, 8)[0], "state": np.zeros(4, np.float32)}
    np.testing.assert_array_equal(
        agent.act(obs, deterministic=False), clone.act(obs, deterministic=False)
    )
