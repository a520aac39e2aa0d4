"""End to end: SAC learns PandaReach from the classifier's reward, never the task's own.

The agent sees the state vector (fast to learn from); the classifier sees the wrist camera,
which this test's env returns from `render()` (view "render"), at 64x64. The classifier is
trained on frames of scripted-expert and random episodes, then `train_local
--reward.checkpoint` replaces the env's reward and termination with its decision (0 on
success, -1 otherwise). The learned policy is then run on the task itself, with the task's own
termination, and its true success is counted.

Labels have a margin, as a careful human labeller's would: a frame is positive with the TCP
within 3.5 cm of the target, negative beyond 6 cm, and the frames in between (which a 64x64
wrist view cannot place on either side of the task's 5 cm radius) are left out. Labelled at
exactly 5 cm, the calibrated threshold swung with the machine: validation recall 0.01-0.84
across seeds, and on one machine the agent never saw a success (issue 15). With the margin,
recall is 0.99-1.0 at precision >= 0.98 on seeds 0-3. The learned policy is judged on the task
rather than by the classifier: an episode ends at the first frame the classifier calls a
success, at the edge of its positive region, so the classifier-ended episodes measure where
that edge is, while the task measures whether the agent learned to reach.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from serl.agents.sac import SACConfig
from serl.checkpoint_eval import evaluate_policy, load_policy
from serl.envs import make_env
from serl.local import LocalTrainConfig, train_local
from serl.rewards.config import ClassifierRewardConfig
from serl.rewards.dataset import concatenate
from serl.rewards.model import ClassifierConfig, save_classifier
from serl.rewards.record import record
from serl.rewards.train import RewardTrainConfig, train_classifier
from sim.experts import make_expert
from sim.rendering import CameraRenderer
from sim.tasks import PandaReachEnv

ENV_ID = "serl-test/ReachWristRender-v0"
SIZE = 64
POSITIVE_WITHIN_M = 0.035
NEGATIVE_BEYOND_M = 0.06


class ReachWristRender(PandaReachEnv):
    """PandaReach in state mode whose `render()` is the wrist camera at 64x64."""

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        if self._display_renderer is None:
            self._display_renderer = CameraRenderer(self.model, SIZE, SIZE)
        return self._display_renderer.render(self.data, "wrist")


def labelled_frames(episodes: int, seed: int):
    """Frames of expert, sloppy and almost random episodes, labelled by distance with a margin."""
    env = make_env(ENV_ID, render_mode="rgb_array", terminate_on_success=False,
                   max_episode_steps=15)  # fmt: skip
    expert, rng = make_expert(env.unwrapped), np.random.default_rng(seed)
    sets, distances = [], []

    def within_positive_radius(info) -> bool:  # called once per recorded frame
        distances.append(env.unwrapped.distance())
        return distances[-1] <= POSITIVE_WITHIN_M

    for episode in range(episodes):
        noise = (0.3, 1.0, 3.0)[episode % 3]  # expert, sloppy expert, almost random

        def act(obs, noise=noise):
            return np.clip(expert(obs) + rng.normal(0, noise, 3), -1, 1).astype(np.float32)

        sets.append(record(env, act, within_positive_radius, episodes=1, views=("render",),
                           size=SIZE, seed=seed + episode))  # fmt: skip
    env.close()
    distances = np.array(distances)
    clear = (distances <= POSITIVE_WITHIN_M) | (distances > NEGATIVE_BEYOND_M)
    return concatenate(sets).subset(np.flatnonzero(clear))


@pytest.mark.slow
@pytest.mark.timeout(1800)  # about 5 min on a quiet 2-core machine; budgets are in env steps
def test_sac_learns_reach_from_the_classifier_reward_alone(tmp_path):
    if ENV_ID not in gym.registry:
        gym.register(ENV_ID, entry_point=ReachWristRender)
    data = labelled_frames(90, seed=0)
    cfg = RewardTrainConfig(
        classifier=ClassifierConfig(views=("render",), image_size=SIZE),
        epochs=10,
        target_precision=0.98,
        progress=False,
    )
    trained = train_classifier(data, cfg)
    # The premise of the RL part: the classifier finds the successes it is calibrated for.
    assert trained.metrics["precision"] >= 0.95 and trained.metrics["recall"] >= 0.9, (
        trained.metrics
    )
    checkpoint = save_classifier(tmp_path / "classifier.safetensors", trained.model, trained.rule)

    result = train_local(
        LocalTrainConfig(
            env=ENV_ID,
            # RLPD-style update-to-data ratio 4 on narrower networks: as cheap per env step as
            # SAC's default 256x256 at UTD 1 on a CPU. Success on the task after 4,500 steps
            # was 1.0, 0.85 and 0.25 for seeds 0-2 (seed 2 had not learned yet); after 7,000
            # steps seed 2 gave 1.0 (probe of 2026-12-05 with this recipe, all three seeds set).
            agent_cfg=SACConfig(
                init_temperature=0.1, utd=4, hidden_dims=(128, 128), batch_size=128
            ),
            steps=7000,
            random_steps=500,
            start_training=500,
            eval_every=7000,
            eval_episodes=20,
            run_dir=tmp_path / "run",
            progress=False,
            reward=ClassifierRewardConfig(checkpoint, success_reward=0.0, failure_reward=-1.0),
        )
    )
    # On the task itself: its own reward, termination and success, no classifier.
    on_task = evaluate_policy(load_policy(result.checkpoint), episodes=20, seed=20_000)
    assert on_task["eval/success_rate"] >= 0.7, (on_task, result.final_eval)
