"""Learner speed: updates per second at batch 256 with 256x256 networks.

* `sac_updates_per_s` vs `sb3_sac_updates_per_s`: our SAC (2 critics) and Stable-Baselines3's
  SAC with the same networks, batch, threads and device, each sampling from its own replay
  buffer of random transitions. Rounds alternate between the two so that a noisy machine
  slows both alike; the figure is the median over rounds.
* `rlpd_critic_updates_per_s`: 10 LayerNorm critics, G = 20 critic steps per update call.
* `drq_updates_per_s`: two 128x128x3 uint8 cameras plus a 7-D proprioception vector;
  `drq_64_updates_per_s` the same at 64x64 (`sim:<Task>Pixels64-v0`).
* `frozen_<backbone>_updates_per_s` (efficientnet-lite0, conv): the same two cameras through a
  frozen backbone whose features the buffer stored once per frame, so an update trains only
  the heads and MLPs; `frozen_<backbone>_ratio_vs_state` divides by `sac_updates_per_s` measured
  in the same rounds (the issue's target: >= 0.5). `frozen_<backbone>_ms_per_frame` is what
  storing a frame costs (its encoding) and `frozen_<backbone>_bytes_per_transition` the buffer's
  memory per transition, frames included.
* `image_bytes_per_transition`: a 10k-transition buffer of two 128x128x3 cameras in 100-step
  episodes; frames stored once means about 1.01x one observation's frame bytes.
The observation is 17-D and the action 6-D (HalfCheetah's sizes) for the state benchmarks.

`--smoke` (`SIZES["smoke"]`) runs every measurement above, SB3 included, for a few seconds
each, with DrQ at batch 16 and a 1,000-transition camera buffer: what CI runs to catch a
broken benchmark or SB3 API drift. Its speed figures are not measurements.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from serl.agents.sac import SACAgent, SACConfig
from serl.build import frame_features
from serl.data.replay import ReplayBuffer
from serl.data.samplers import UniformSampler
from serl.nets.encoders import EncoderConfig

OBS_DIM, ACTION_DIM, BATCH = 17, 6, 256
STATE_SPACE = gym.spaces.Box(-np.inf, np.inf, (OBS_DIM,), np.float32)
ACTION_SPACE = gym.spaces.Box(-1.0, 1.0, (ACTION_DIM,), np.float32)
SB3_FILL = 2_000
"""Random transitions in SB3's own replay buffer before its updates are timed."""


@dataclass(frozen=True)
class Size:
    seconds: float
    """Length of one SAC timing round (RLPD is timed for twice as long)."""
    rounds: int
    """Alternating ours / SB3 rounds; the medians are reported."""
    drq_batch: int
    """Batch of the timed DrQ updates."""
    drq_calls: int
    """Timed DrQ update calls (each takes seconds on a CPU at batch 256)."""
    drq_buffer: int
    """Transitions in the DrQ replay buffer."""
    camera_buffer: int
    """Transitions in the buffer whose bytes per transition are reported."""
    frozen_buffer: int
    """Transitions in each frozen-backbone buffer (each frame is encoded when stored)."""


SIZES = {
    "full": Size(5.0, 5, BATCH, 5, 5_000, 10_000, 1_000),
    "quick": Size(2.0, 3, BATCH, 2, 1_000, 10_000, 300),
    "smoke": Size(0.3, 2, 16, 1, 200, 1_000, 20),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="seconds-long run of every measurement, for CI (figures are not measurements)",
    )


def image_space(size: int = 128) -> gym.spaces.Dict:
    frame = gym.spaces.Box(0, 255, (size, size, 3), np.uint8)
    proprio = gym.spaces.Box(-np.inf, np.inf, (7,), np.float32)
    return gym.spaces.Dict({"front": frame, "wrist": frame, "state": proprio})


def random_obs(space: gym.Space, rng: np.random.Generator, n: int) -> dict | np.ndarray:
    def one(box: gym.spaces.Box) -> np.ndarray:
        if box.dtype == np.uint8:
            return rng.integers(0, 256, (n, *box.shape), dtype=np.uint8)
        return rng.standard_normal((n, *box.shape)).astype(np.float32)

    if isinstance(space, gym.spaces.Dict):
        return {k: one(s) for k, s in space.spaces.items()}
    return one(space)


FROZEN_BACKBONES = ("efficientnet-lite0", "conv")


def filled_buffer(
    space: gym.Space,
    transitions: int,
    episode_length: int = 100,
    frame_features: dict | None = None,
) -> ReplayBuffer:
    """`transitions` random transitions in episodes of `episode_length`, added chunk-wise."""
    rng = np.random.default_rng(0)
    episode_length = min(episode_length, transitions)
    episodes = transitions // episode_length
    buffer = ReplayBuffer(space, ACTION_DIM, transitions + episodes, frame_features=frame_features)
    for episode in range(episodes):
        frames = random_obs(space, rng, episode_length + 1)

        def cut(a: np.ndarray, start: int) -> np.ndarray:
            return a[start : start + episode_length]

        obs = (
            {k: cut(v, 0) for k, v in frames.items()}
            if isinstance(frames, dict)
            else cut(frames, 0)
        )
        nxt = (
            {k: cut(v, 1) for k, v in frames.items()}
            if isinstance(frames, dict)
            else cut(frames, 1)
        )
        done = np.zeros(episode_length, bool)
        done[-1] = True
        buffer.add_many(
            obs=obs,
            action=rng.uniform(-1, 1, (episode_length, ACTION_DIM)).astype(np.float32),
            reward=rng.standard_normal(episode_length).astype(np.float32),
            next_obs=nxt,
            terminated=np.zeros(episode_length, bool),
            truncated=done,
            episode_id=np.full(episode_length, episode),
            t=np.arange(episode_length),
            source="online",
        )
    return buffer


def rate(step: Callable[[], object], seconds: float, warmup: int = 3) -> float:
    """Calls of `step` per second over about `seconds`, after `warmup` calls."""
    for _ in range(warmup):
        step()
    calls, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        step()
        calls += 1
    return calls / elapsed


def timed_calls(step: Callable[[], object], calls: int, warmup: int = 1) -> float:
    """Calls per second over exactly `calls` calls (for steps that take seconds each)."""
    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(calls):
        step()
    return calls / (time.perf_counter() - start)


def ours_sac_step(device: str) -> Callable[[], object]:
    agent = SACAgent(SACConfig(), STATE_SPACE, ACTION_SPACE, device=device)
    sampler = UniformSampler(filled_buffer(STATE_SPACE, 20_000), BATCH, seed=0)
    return lambda: agent.update(sampler.sample())


def sb3_sac_step(device: str) -> Callable[[], object]:
    from stable_baselines3 import SAC

    class RandomEnv(gym.Env):
        observation_space, action_space = STATE_SPACE, ACTION_SPACE

        def reset(self, *, seed=None, options=None):
            return np.zeros(OBS_DIM, np.float32), {}

        def step(self, action):
            return np.random.standard_normal(OBS_DIM).astype(np.float32), 0.0, False, False, {}

    model = SAC(
        "MlpPolicy",
        RandomEnv(),
        batch_size=BATCH,
        learning_starts=SB3_FILL,  # filling the buffer trains nothing: only `train` is timed
        policy_kwargs={"net_arch": [256, 256]},
        device=device,
        seed=0,
    )
    model.learn(SB3_FILL)  # fills SB3's own replay buffer
    return lambda: model.train(gradient_steps=1, batch_size=BATCH)


def run(quick: bool, device: str, smoke: bool = False) -> dict[str, float | bool]:
    size = SIZES["smoke" if smoke else "quick" if quick else "full"]
    seconds = size.seconds
    ours_step, sb3_step = ours_sac_step(device), sb3_sac_step(device)
    ours, sb3 = [], []
    for _ in range(size.rounds):
        ours.append(rate(ours_step, seconds))
        sb3.append(rate(sb3_step, seconds))
    sac, peer = statistics.median(ours), statistics.median(sb3)

    rlpd_cfg = SACConfig.rlpd()
    rlpd = SACAgent(rlpd_cfg, STATE_SPACE, ACTION_SPACE, device=device)
    rlpd_sampler = UniformSampler(filled_buffer(STATE_SPACE, 20_000), BATCH * rlpd_cfg.utd, seed=0)
    rlpd_calls = rate(lambda: rlpd.update(rlpd_sampler.sample()), seconds * 2, warmup=1)

    pixels = image_space()
    drq = SACAgent(SACConfig(batch_size=size.drq_batch), pixels, ACTION_SPACE, device=device)
    drq_buffer = filled_buffer(pixels, size.drq_buffer)
    drq_sampler = UniformSampler(drq_buffer, size.drq_batch, seed=0)
    drq_rate = timed_calls(lambda: drq.update(drq_sampler.sample()), size.drq_calls)
    small = image_space(64)
    drq_64 = SACAgent(SACConfig(batch_size=size.drq_batch), small, ACTION_SPACE, device=device)
    small_sampler = UniformSampler(filled_buffer(small, size.drq_buffer), size.drq_batch, seed=0)
    drq_64_rate = timed_calls(lambda: drq_64.update(small_sampler.sample()), size.drq_calls)

    frozen = {}
    for backbone in FROZEN_BACKBONES:
        cfg = SACConfig(encoder=EncoderConfig(backbone=backbone))
        agent = SACAgent(cfg, pixels, ACTION_SPACE, device=device)
        features = frame_features(agent)
        start = time.perf_counter()
        buffer = filled_buffer(pixels, size.frozen_buffer, frame_features=features)
        frames = 2 * buffer.capacity  # every slot holds one frame per camera
        ms_per_frame = (time.perf_counter() - start) / frames * 1e3
        sampler = UniformSampler(buffer, BATCH, seed=0)
        rates, state_rates = [], []
        for _ in range(size.rounds):  # alternating with state SAC: a busy machine slows both
            rates.append(rate(lambda a=agent, s=sampler: a.update(s.sample()), seconds))
            state_rates.append(rate(ours_step, seconds))
        frozen[f"frozen_{backbone}_updates_per_s"] = statistics.median(rates)
        frozen[f"frozen_{backbone}_ratio_vs_state"] = statistics.median(
            r / s for r, s in zip(rates, state_rates, strict=True)
        )
        frozen[f"frozen_{backbone}_ms_per_frame"] = ms_per_frame
        frozen[f"frozen_{backbone}_bytes_per_transition"] = buffer.nbytes / buffer.capacity

    cameras = gym.spaces.Dict({k: pixels.spaces[k] for k in ("front", "wrist")})
    camera_buffer = filled_buffer(cameras, size.camera_buffer)
    # Every slot of the buffer is in use: frame storage divided by complete transitions.
    frame_bytes = camera_buffer.observation_nbytes_per_slot * camera_buffer.capacity
    frame_bytes /= len(camera_buffer)
    one_obs_frames = 2 * 128 * 128 * 3
    return {
        **({"smoke": True} if smoke else {}),
        "sac_updates_per_s": sac,
        "sb3_sac_updates_per_s": peer,
        "ratio_vs_sb3": sac / peer,
        "rlpd_critic_updates_per_s": rlpd_calls * rlpd_cfg.utd,
        "drq_updates_per_s": drq_rate,
        "drq_64_updates_per_s": drq_64_rate,
        **frozen,
        "image_bytes_per_transition": frame_bytes,
        "image_bytes_ratio_to_one_obs": frame_bytes / one_obs_frames,
        "drq_batch": float(size.drq_batch),
    }
