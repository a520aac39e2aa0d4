"""The env wrapper whose reward and termination are the reward classifier's decision.

At each step the wrapper reads the classifier's views (observation keys, or `env.render()`
for the view "render"), computes P(success), and decides with the checkpoint's rule
(P >= threshold for k consecutive frames). A human can overrule it: `override` is called after
every step and returns True (success), False (failure) or None (keep the classifier's call);
the teleop layer binds it to a key or a button.

* reward: `success_reward` on success, else `failure_reward` (1 / 0 by default, HIL-SERL's
  convention). With SAC and no demonstrations, 0 / -1 is easier to learn from: with 1 / 0 the
  entropy bonus collected by staying alive can outweigh the single success reward, so the
  agent learns to avoid the terminating success.
* terminated: the decision. The env's own termination is dropped (in simulation it is the
  ground truth the classifier replaces) unless `keep_env_termination` (e.g. a real robot's
  safety stop). Truncation passes through.
* info: ``classifier_prob`` and ``classifier_success``; ``success`` is set to the decision
  only where the env does not report one (a simulated task keeps its ground truth, so that
  evaluation measures the real success rate).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym

from serl.envs import env_factory_parameters, make_env
from serl.rewards.calibrate import ConsecutiveRule
from serl.rewards.config import ClassifierRewardConfig
from serl.rewards.model import LoadedClassifier, load_classifier
from serl.rewards.record import RENDER_VIEW, read_frames

Override = Callable[[], "bool | None"]


class ClassifierReward(gym.Wrapper):
    def __init__(
        self,
        env: gym.Env,
        classifier: LoadedClassifier | str | Path,
        *,
        override: Override | None = None,
        success_reward: float = 1.0,
        failure_reward: float = 0.0,
        keep_env_termination: bool = False,
    ) -> None:
        super().__init__(env)
        if not isinstance(classifier, LoadedClassifier):
            classifier = load_classifier(classifier)
        self.classifier = classifier
        self.override = override
        self.success_reward, self.failure_reward = success_reward, failure_reward
        self.keep_env_termination = keep_env_termination
        self._rule = ConsecutiveRule(classifier.rule.consecutive)

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        self._rule.reset()
        return self.env.reset(**kwargs)

    def probability(self, obs: Any) -> float:
        cfg = self.classifier.cfg
        frames = read_frames(self.env, obs, cfg.views, cfg.image_size)
        return float(self.classifier.model.probabilities(frames)[0])

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        obs, _, env_terminated, truncated, info = self.env.step(action)
        prob = self.probability(obs)
        success = self._rule.update(prob >= self.classifier.rule.threshold)
        if self.override is not None and (human := self.override()) is not None:
            success = bool(human)
        info = {**info, "classifier_prob": prob, "classifier_success": success}
        info.setdefault("success", success)
        reward = self.success_reward if success else self.failure_reward
        terminated = success or (self.keep_env_termination and env_terminated)
        return obs, reward, bool(terminated), bool(truncated and not terminated), info


def make_classified_env(
    env_id: str, cfg: ClassifierRewardConfig, *, override: Override | None = None, **kwargs: Any
) -> gym.Env:
    """`make_env(env_id)` wrapped by the classifier of `cfg.checkpoint` (rendering if needed).

    An env factory with a `task_classifier` parameter applies a classifier its own config names
    (`robot:` task files); it is made with ``task_classifier=False``, so that `cfg.checkpoint`
    replaces that classifier rather than deciding on top of it.
    """
    if cfg.checkpoint is None:
        return make_env(env_id, **kwargs)
    classifier = load_classifier(cfg.checkpoint)
    if RENDER_VIEW in classifier.cfg.views:
        kwargs.setdefault("render_mode", "rgb_array")
    if "task_classifier" in env_factory_parameters(env_id):
        kwargs["task_classifier"] = False
    return ClassifierReward(
        make_env(env_id, **kwargs),
        classifier,
        override=override,
        success_reward=cfg.success_reward,
        failure_reward=cfg.failure_reward,
        keep_env_termination=cfg.keep_env_termination,
    )
