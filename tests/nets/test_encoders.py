import gymnasium as gym
import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from serl.nets.encoders import EncoderConfig, ObservationEncoder
from serl.nets.weights import load_encoder_weights


def _pixels(size=32, stack=None):
    shape = (size, size, 3) if stack is None else (stack, size, size, 3)
    frame = gym.spaces.Box(0, 255, shape, np.uint8)
    return gym.spaces.Dict(
        {"front": frame, "wrist": frame, "state": gym.spaces.Box(-1, 1, (7,), np.float32)}
    )


@pytest.mark.parametrize("kind", ["drq", "resnet"])
def test_mixed_observation_gives_camera_features_plus_proprio(kind):
    encoder = ObservationEncoder(_pixels(), EncoderConfig(kind=kind, feature_dim=20))
    obs = {
        k: torch.as_tensor(np.stack([s.sample() for _ in range(3)])) for k, s in _pixels().items()
    }
    features = encoder(obs)
    assert features.shape == (3, 2 * 20 + 7) == (3, encoder.out_dim)
    torch.testing.assert_close(features[:, -7:], obs["state"])


def test_frame_stack_folds_frames_into_channels():
    encoder = ObservationEncoder(_pixels(stack=3), EncoderConfig(feature_dim=10))
    assert encoder.cameras["front"].trunk.net[0].in_channels == 9


def test_state_dict_observation_is_flattened_without_weights():
    space = gym.spaces.Dict({"b": gym.spaces.Box(-1, 1, (2,)), "a": gym.spaces.Box(-1, 1, (3,))})
    encoder = ObservationEncoder(space)
    out = encoder({"a": torch.ones(1, 3), "b": torch.zeros(1, 2)})
    assert list(encoder.parameters()) == []
    assert out.tolist() == [[1, 1, 1, 0, 0]]  # sorted keys


def test_bare_image_space_is_refused_with_a_fix():
    with pytest.raises(ValueError, match="inside a gymnasium Dict"):
        ObservationEncoder(gym.spaces.Box(0, 255, (32, 32, 3), np.uint8))


def test_pretrained_weights_load_and_wrong_shapes_are_named(tmp_path):
    source = ObservationEncoder(_pixels(), EncoderConfig(feature_dim=8))
    path = tmp_path / "enc.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    target = ObservationEncoder(_pixels(), EncoderConfig(feature_dim=8))
    load_encoder_weights(target, path)
    for k, v in source.state_dict().items():
        assert torch.equal(target.state_dict()[k], v)
    other = ObservationEncoder(_pixels(), EncoderConfig(feature_dim=16))
    with pytest.raises(ValueError, match="has shape"):
        load_encoder_weights(other, path)
    with pytest.raises(FileNotFoundError, match="never downloads"):
        load_encoder_weights(other, tmp_path / "missing.safetensors")
