import gymnasium as gym
import numpy as np
import pytest
import torch

from serl.checkpoint import CheckpointError, save_checkpoint
from serl.nets.encoders import EncoderConfig
from serl.rewards.dataset import FrameSet, balance_warning
from serl.rewards.model import (
    ClassifierConfig,
    DecisionRule,
    LoadedClassifier,
    RewardClassifier,
    load_classifier,
    save_classifier,
)
from serl.rewards.wrapper import ClassifierReward

TINY = ClassifierConfig(
    views=("cam",), image_size=16, encoder=EncoderConfig(num_filters=4, feature_dim=4), hidden_dim=8
)


def frames(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    return {"cam": np.random.default_rng(seed).integers(0, 256, (n, 16, 16, 3), dtype=np.uint8)}


def test_save_then_load_gives_the_same_probabilities_and_rule(tmp_path):
    torch.manual_seed(0)
    model = RewardClassifier(TINY)
    path = save_classifier(tmp_path / "c.safetensors", model, DecisionRule(0.7, 3))
    loaded = load_classifier(path)
    assert loaded.rule == DecisionRule(0.7, 3)
    assert loaded.cfg == TINY
    np.testing.assert_array_equal(
        loaded.model.probabilities(frames(5)), model.probabilities(frames(5))
    )


def test_corrupt_file_is_a_clear_checkpoint_error(tmp_path):
    path = save_classifier(tmp_path / "c.safetensors", RewardClassifier(TINY), DecisionRule(0.5))
    raw = bytearray(path.read_bytes())
    raw[-10] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="corrupt"):
        load_classifier(path)


def test_agent_checkpoint_is_refused_as_not_a_classifier(tmp_path):
    path = tmp_path / "agent.safetensors"
    save_checkpoint(path, {"w": torch.zeros(2)}, config={}, config_hash="x", metadata={})
    with pytest.raises(CheckpointError, match="not a reward-classifier"):
        load_classifier(path)


def test_split_keeps_each_episode_on_one_side():
    labels = np.tile([False, False, True], 20)
    data = FrameSet(frames(60), labels, np.repeat(np.arange(20), 3))
    train, val = data.split(0.25, seed=0)
    assert not set(train.episodes) & set(val.episodes)
    assert len(train) + len(val) == 60 and val.labels.any()


def test_unbalanced_classes_warn_and_balanced_do_not():
    assert "unbalanced" in balance_warning(10, 100)
    assert "no positive" in balance_warning(0, 100)
    assert balance_warning(40, 60) is None


class CameraEnv(gym.Env):
    observation_space = gym.spaces.Dict({"cam": gym.spaces.Box(0, 255, (16, 16, 3), np.uint8)})
    action_space = gym.spaces.Box(-1, 1, (1,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self._obs(), {}

    def _obs(self):
        return {"cam": self.np_random.integers(0, 256, (16, 16, 3), dtype=np.uint8)}

    def step(self, action):
        return self._obs(), -5.0, False, False, {}


def loaded(threshold: float) -> LoadedClassifier:
    torch.manual_seed(0)
    return LoadedClassifier(RewardClassifier(TINY).eval(), DecisionRule(threshold), {})


def test_wrapper_reward_and_termination_are_the_classifier_decision():
    env = ClassifierReward(CameraEnv(), loaded(0.0))
    env.reset(seed=0)
    threshold = float(np.median([env.probability(env.step(np.zeros(1))[0]) for _ in range(20)]))
    env = ClassifierReward(CameraEnv(), loaded(threshold), failure_reward=-1.0, success_reward=0.0)
    env.reset(seed=0)
    decisions = []
    for _ in range(40):
        _, reward, terminated, _, info = env.step(np.zeros(1))
        decision = info["classifier_prob"] >= threshold
        assert reward == (0.0 if decision else -1.0)
        assert terminated == decision == info["classifier_success"] == info["success"]
        decisions.append(decision)
    assert 0 < sum(decisions) < 40


@pytest.mark.parametrize("human", [True, False])
def test_human_override_wins_over_the_classifier(human):
    env = ClassifierReward(CameraEnv(), loaded(0.5), override=lambda: human)
    env.reset(seed=0)
    for _ in range(5):
        _, reward, terminated, _, info = env.step(np.zeros(1))
        assert reward == float(human) and terminated == human and info["success"] == human
