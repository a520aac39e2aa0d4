"""Offline datasets from the scripted experts: ``python -m sim.collect``.

Quality levels (the usual offline-RL ladder, as in D4RL's expert / medium / random):

* ``expert``: the scripted expert (`sim.experts`);
* ``noisy``: the expert's action plus Gaussian noise of std `noise_std` (0.3 by default,
  in [-1, 1] action units), clipped to [-1, 1];
* ``random``: uniform random actions.

File layout (one ``.npz``, written atomically, readable with ``np.load(allow_pickle=False)``;
nothing in it needs pickle). Episodes are concatenated; episode i has ``T_i`` transitions and
``T_i + 1`` observations (its last observation is stored once, never shared with the next
episode):

==========================  =============================  ====================================
key                         shape                          meaning
==========================  =============================  ====================================
``obs``                     (sum(T_i + 1), ...)            state observations (Box envs), or
``obs/<key>``               (sum(T_i + 1), ...)            one entry per Dict key (``front``,
                                                           ``wrist`` uint8 images, ``state``)
``action``                  (sum(T_i), action_dim)         float32 actions actually sent
``reward``                  (sum(T_i),)                    float32
``terminated``              (sum(T_i),)                    bool (success, for SERL-style tasks)
``truncated``               (sum(T_i),)                    bool (time limit)
``success``                 (sum(T_i),)                    bool, ``info["success"]`` after the step
``episode_lengths``         (E,)                           int64 ``T_i``
``episode_seeds``           (E,)                           int64 seed of each episode's reset
``meta``                    ()                             JSON string: env id, env kwargs,
                                                           quality, noise_std, seed, version
==========================  =============================  ====================================

Transition t of episode i uses observation row ``o_i + t`` and next observation ``o_i + t + 1``
with ``o_i = sum_{j<i} (T_j + 1)``; `load_dataset` returns them split per episode.
"""

from __future__ import annotations

import argparse
import glob
import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import gymnasium as gym
import numpy as np
from tqdm import tqdm

from sim.experts import Expert, make_expert

logger = logging.getLogger(__name__)

Quality = Literal["expert", "noisy", "random"]
FORMAT_VERSION = 1


@dataclass
class Episode:
    obs: np.ndarray | dict[str, np.ndarray]
    """T + 1 observations (a Dict env gives a dict of arrays)."""
    action: np.ndarray
    reward: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    success: np.ndarray
    seed: int

    def __len__(self) -> int:
        return len(self.action)


def _policy(
    env: gym.Env, quality: Quality, noise_std: float, rng: np.random.Generator
) -> tuple[Expert, Callable[[Any], np.ndarray]]:
    expert = make_expert(env)
    low, high = env.action_space.low, env.action_space.high

    def act(obs: Any) -> np.ndarray:
        if quality == "random":
            return rng.uniform(low, high).astype(np.float32)
        action = expert(obs)
        if quality == "noisy":
            action = action + rng.normal(0.0, noise_std, size=action.shape)
        return np.clip(action, low, high).astype(np.float32)

    return expert, act


def rollout_episodes(
    env: gym.Env,
    episodes: int,
    *,
    quality: Quality = "expert",
    noise_std: float = 0.3,
    seed: int = 0,
    progress: bool = False,
) -> Iterator[Episode]:
    """Run `episodes` seeded episodes (reset seeds ``seed, seed + 1, ...``) at `quality`."""
    if quality not in ("expert", "noisy", "random"):
        raise ValueError(f"quality={quality!r}; use 'expert', 'noisy' or 'random'")
    rng = np.random.default_rng(seed)
    expert, act = _policy(env, quality, noise_std, rng)
    for i in tqdm(range(episodes), disable=not progress, unit="episode"):
        obs, _ = env.reset(seed=seed + i)
        expert.reset()
        observations, rows = [obs], []
        done = False
        while not done:
            action = act(obs)
            obs, reward, terminated, truncated, info = env.step(action)
            observations.append(obs)
            rows.append((action, reward, terminated, truncated, bool(info.get("success", False))))
            done = terminated or truncated
        action, reward, terminated, truncated, success = zip(*rows, strict=True)
        yield Episode(
            obs=_stack(observations),
            action=np.asarray(action, dtype=np.float32),
            reward=np.asarray(reward, dtype=np.float32),
            terminated=np.asarray(terminated, dtype=bool),
            truncated=np.asarray(truncated, dtype=bool),
            success=np.asarray(success, dtype=bool),
            seed=seed + i,
        )


def _stack(observations: list[Any]) -> np.ndarray | dict[str, np.ndarray]:
    if isinstance(observations[0], dict):
        return {k: np.stack([o[k] for o in observations]) for k in observations[0]}
    return np.stack(observations)


def save_dataset(path: str | Path, episodes: list[Episode], meta: dict[str, Any]) -> Path:
    """Write episodes in the layout of the module docstring (temp file + os.replace)."""
    if not episodes:
        raise ValueError("no episodes to save")
    path = Path(path)
    arrays: dict[str, np.ndarray] = {}
    first = episodes[0].obs
    if isinstance(first, dict):
        for key in first:
            arrays[f"obs/{key}"] = np.concatenate([e.obs[key] for e in episodes])  # type: ignore[index]
    else:
        arrays["obs"] = np.concatenate([e.obs for e in episodes])  # type: ignore[misc]
    for field in ("action", "reward", "terminated", "truncated", "success"):
        arrays[field] = np.concatenate([getattr(e, field) for e in episodes])
    arrays["episode_lengths"] = np.array([len(e) for e in episodes], dtype=np.int64)
    arrays["episode_seeds"] = np.array([e.seed for e in episodes], dtype=np.int64)
    arrays["meta"] = np.array(
        json.dumps({"format_version": FORMAT_VERSION, **meta}, sort_keys=True)
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f"{glob.escape(path.name)}*.tmp"):  # a killed save's
        stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez_compressed(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_dataset(path: str | Path) -> tuple[list[Episode], dict[str, Any]]:
    """Read a dataset written by `save_dataset`: its episodes and its metadata."""
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    meta = json.loads(str(arrays.pop("meta")))
    lengths = arrays["episode_lengths"]
    obs_keys = [k for k in arrays if k == "obs" or k.startswith("obs/")]
    episodes, o, t = [], 0, 0
    for i, length in enumerate(lengths):
        length = int(length)
        if obs_keys == ["obs"]:
            obs: Any = arrays["obs"][o : o + length + 1]
        else:
            obs = {k[len("obs/") :]: arrays[k][o : o + length + 1] for k in obs_keys}
        episodes.append(
            Episode(
                obs=obs,
                **{
                    f: arrays[f][t : t + length]
                    for f in ("action", "reward", "terminated", "truncated", "success")
                },
                seed=int(arrays["episode_seeds"][i]),
            )  # fmt: skip
        )
        o, t = o + length + 1, t + length
    return episodes, meta


def collect(
    env_id: str,
    episodes: int,
    path: str | Path,
    *,
    quality: Quality = "expert",
    noise_std: float = 0.3,
    seed: int = 0,
    env_kwargs: dict[str, Any] | None = None,
    progress: bool = False,
    make: Callable[..., gym.Env] | None = None,
) -> Path:
    """Roll out `episodes` of a sim task at `quality` and save them to `path` (.npz)."""
    from sim.registration import make as make_task

    name = env_id.removeprefix("sim:")
    env_kwargs = dict(env_kwargs or {})
    env = (make or make_task)(name, **env_kwargs)
    try:
        eps = list(rollout_episodes(
            env, episodes, quality=quality, noise_std=noise_std, seed=seed, progress=progress
        ))  # fmt: skip
    finally:
        env.close()
    meta = {
        "env_id": f"sim:{name}",
        "env_kwargs": env_kwargs,
        "quality": quality,
        "noise_std": noise_std if quality == "noisy" else 0.0,
        "seed": seed,
        "episodes": episodes,
        "success_rate": float(np.mean([e.success[-1] for e in eps])),
    }
    logger.info(
        "%s: %d %s episodes, %d transitions, success rate %.2f -> %s",
        meta["env_id"], episodes, quality, sum(len(e) for e in eps), meta["success_rate"], path,
    )  # fmt: skip
    return save_dataset(path, eps, meta)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sim.collect", description="Write an offline dataset of a sim task (.npz)."
    )
    parser.add_argument("--env", default="PandaPickCube-v0", help="task id (sim: prefix optional)")
    parser.add_argument("--episodes", type=int, default=100, help="episodes to record")
    parser.add_argument("--quality", choices=["expert", "noisy", "random"], default="expert")
    parser.add_argument("--noise-std", type=float, default=0.3, help="action noise for 'noisy'")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first episode")
    parser.add_argument("--obs-mode", choices=["state", "pixels"], default="state")
    parser.add_argument("--image-size", type=int, default=128, help="camera size for pixels")
    parser.add_argument("--out", type=Path, required=True, help="output .npz path")
    opts = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    env_kwargs: dict[str, Any] = {"obs_mode": opts.obs_mode}
    if opts.obs_mode == "pixels":
        env_kwargs["image_size"] = opts.image_size
    collect(
        opts.env, opts.episodes, opts.out, quality=opts.quality, noise_std=opts.noise_std,
        seed=opts.seed, env_kwargs=env_kwargs, progress=True,
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
