"""`serl bench hybrid`: hybrid offline-online learners on a sim-to-"real" dynamics gap.

Setup, per seed (everything in one process, one update per env step, small networks so the
quick size runs on a 2-core CPU):

* "real" env: `--env` with changed dynamics `--real-params` (default Pendulum-v1 with the
  pendulum mass × 1.5; a gymnasium MuJoCo task with `--env HalfCheetah-v5 --real-params
  friction=0.5,mass=1.5`; a `sim:` Panda task with e.g. `--env sim:PandaReach-v0
  --real-params actuator_gain=0.5`). "sim" env: the same id with its nominal dynamics.
  Parameters go to `sim:` envs as `params=`, scale a MuJoCo model's friction and masses, and
  are set as `env.unwrapped` attributes otherwise.
* sim-only SAC: trained `steps` env steps in the simulator only.
* the "real" dataset: `dataset_steps` transitions in the real env by the sim-only policy with
  Gaussian action noise 0.3 (a "medium" dataset: a policy that fits the wrong dynamics).
* offline-only: FamO2O's offline phase (IQL with a universal policy) on the real dataset for
  `offline_updates` gradient steps, no env steps.
* H2O: the real dataset as prior data plus `steps` online env steps in the NOMINAL simulator,
  one update per step (same env and gradient steps as sim-only SAC).
* Offline-to-online in the real env from the same dataset, `steps` real env steps each:
  FamO2O (the offline-only agent fine-tuned online), MOORL (one meta-epoch of K inner steps
  every K env steps, so its gradient steps equal the others'), and SAC+RLPD (symmetric
  50/50 sampling, LayerNorm critic ensemble; its G critic steps per env step are reported).

Every learner is evaluated with deterministic actions over `eval_episodes` episodes of the
real env; the keys are the means over seeds (`*_std` over seeds beside them). Beside the
returns: H2O's mean importance weight on sim rows and its (s, a, s') discriminator accuracy,
and FamO2O's mean balance-model β, each averaged over the last tenth of training. Each seed is
one unit of `serl.bench.units`: `--jobs N` runs N seeds at once, each seed's result is kept
under `--out`, and a rerun with the same `--out` resumes.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from serl.agents.famo2o import FamO2OAgent, FamO2OConfig
from serl.agents.h2o import H2OAgent, H2OConfig
from serl.agents.moorl import MOORLAgent, MOORLConfig
from serl.agents.sac import SACAgent, SACConfig
from serl.bench.units import run_units
from serl.data.replay import ReplayBuffer
from serl.data.samplers import SymmetricSampler, UniformSampler
from serl.envs import make_env

logger = logging.getLogger(__name__)

HIDDEN = (64, 64)
"""Network widths of every learner here (CPU-sized)."""
BATCH = 128
"""Rows per critic minibatch (H2O: per source; RLPD/MOORL: half prior, half online)."""
DATA_NOISE = 0.3
"""Action-noise std of the behaviour policy that records the real dataset."""
SIZES = {
    True: {"seeds": 2, "steps": 1500, "warmup": 300, "dataset_steps": 2000,
           "offline_updates": 1000, "eval_episodes": 3},
    False: {"seeds": 5, "steps": 15000, "warmup": 1000, "dataset_steps": 10000,
            "offline_updates": 10000, "eval_episodes": 10},
}  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--env", default="Pendulum-v1", help="env id of both sim and real")
    parser.add_argument(
        "--real-params",
        default="m=1.5",
        help="real-env dynamics as name=value,... (sim: params, else env.unwrapped attributes)",
    )
    parser.add_argument("--seeds", type=int, default=0, help="seeds (0: the size's default)")
    parser.add_argument("--plot", type=Path, help="PNG of the returns (default: <out>/hybrid.png)")
    parser.add_argument(
        "--out", type=Path, help="directory of per-seed results; an earlier run's --out resumes it"
    )
    parser.add_argument("--jobs", type=int, default=1, help="seeds run at once, one core each")


def parse_params(text: str) -> dict[str, float]:
    """'m=1.5,l=1.2' -> {'m': 1.5, 'l': 1.2}."""
    params = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--real-params item {item!r} is not name=value (e.g. m=1.5)")
        params[name] = float(value)
    return params


MUJOCO_SCALES = ("friction", "mass")
"""Parameters of gymnasium MuJoCo envs (HalfCheetah-v5, ...): scales of every geom's sliding
friction and of every body's mass and inertia, as the dynamics gaps of the H2O paper."""


def scale_mujoco_model(env: gym.Env, friction: float = 1.0, mass: float = 1.0) -> None:
    """Scale the sliding friction and the masses/inertias of `env`'s MuJoCo model in place."""
    import mujoco

    model = env.unwrapped.model
    model.geom_friction[:, 0] *= friction
    model.body_mass[:] *= mass
    model.body_inertia[:] *= mass
    mujoco.mj_setConst(model, mujoco.MjData(model))  # derived constants follow the masses


def make_dynamics_env(env_id: str, params: dict[str, float]) -> gym.Env:
    """`env_id` with dynamics `params`: `params=` for sim: envs, friction/mass scales for
    gymnasium MuJoCo envs, and attributes of `env.unwrapped` otherwise (Pendulum's `m`)."""
    if env_id.startswith("sim:"):
        return make_env(env_id, params=params) if params else make_env(env_id)
    env = make_env(env_id)
    scales = {k: v for k, v in params.items() if k in MUJOCO_SCALES}
    if scales and hasattr(env.unwrapped, "model"):
        scale_mujoco_model(env, **scales)
        params = {k: v for k, v in params.items() if k not in scales}
    for name, value in params.items():
        if not hasattr(env.unwrapped, name):
            raise ValueError(
                f"{env_id} has no dynamics attribute {name!r} for --real-params "
                f"(MuJoCo envs take {', '.join(MUJOCO_SCALES)})"
            )
        setattr(env.unwrapped, name, value)
    return env


Policy = Callable[[np.ndarray], np.ndarray]


def evaluate(env: gym.Env, agent: Any, episodes: int, seed: int) -> float:
    returns = []
    for i in range(episodes):
        obs, _ = env.reset(seed=10_000 + seed * 100 + i)
        total, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(agent.act(obs, deterministic=True))
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    return float(np.mean(returns))


def rollout(
    env: gym.Env,
    buffer: ReplayBuffer,
    steps: int,
    policy: Policy,
    rng: np.random.Generator,
    *,
    source: str = "online",
    on_step: Callable[[int], None] | None = None,
) -> None:
    """`steps` env steps with `policy` into `buffer`; `on_step(step)` after each one."""
    obs, _ = env.reset(seed=int(rng.integers(2**31)))
    episode, t = int(rng.integers(2**20)), 0
    for step in range(steps):
        action = np.asarray(policy(obs), np.float32)
        next_obs, reward, terminated, truncated, _ = env.step(action)
        buffer.add(obs, action, float(reward), next_obs, terminated, truncated,
                   source=source, episode_id=episode, t=t)  # fmt: skip
        obs, t = next_obs, t + 1
        if terminated or truncated:
            obs, _ = env.reset(seed=int(rng.integers(2**31)))
            episode, t = episode + 1, 0
        if on_step is not None:
            on_step(step)


def _buffer(env: gym.Env, capacity: int) -> ReplayBuffer:
    return ReplayBuffer(env.observation_space, int(env.action_space.shape[0]), capacity)


def _online(
    agent: Any,
    env: gym.Env,
    steps: int,
    warmup: int,
    rng: np.random.Generator,
    sampler_for: Callable[[ReplayBuffer], Any],
    *,
    update_every: int = 1,
    metrics: dict[str, float] | None = None,
) -> ReplayBuffer:
    """Act `steps` steps (random for `warmup`), one update every `update_every` steps;
    `metrics` receives the mean of each update metric over the last tenth of the steps."""
    buffer = _buffer(env, steps + steps // 10 + 10)
    sampler = sampler_for(buffer)
    tail: list[dict[str, float]] = []

    def policy(obs: np.ndarray) -> np.ndarray:
        if len(buffer) < warmup:
            return rng.uniform(-1, 1, env.action_space.shape)
        return agent.act(obs, deterministic=False)

    def learn(step: int) -> None:
        if len(buffer) >= warmup and (step + 1) % update_every == 0:
            info = agent.update(sampler.sample())
            if step >= steps - steps // 10:
                tail.append(info)

    rollout(env, buffer, steps, policy, rng, on_step=learn)
    if metrics is not None and tail:
        metrics.update({k: float(np.mean([i[k] for i in tail if k in i])) for k in tail[-1]})
    return buffer


def run_seed(
    env_id: str, real_params: dict[str, float], seed: int, size: dict[str, int], device: str
) -> dict[str, float]:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    sim_env, real_env = make_dynamics_env(env_id, {}), make_dynamics_env(env_id, real_params)
    obs_space, act_space = sim_env.observation_space, sim_env.action_space
    steps, warmup = size["steps"], size["warmup"]
    sac_cfg = SACConfig(hidden_dims=HIDDEN, batch_size=BATCH)
    out: dict[str, float] = {}

    # sim-only SAC, then the real dataset recorded by its noisy policy
    sim_sac = SACAgent(sac_cfg, obs_space, act_space, seed=seed, device=device)
    _online(sim_sac, sim_env, steps, warmup, rng, lambda b: UniformSampler(b, BATCH, seed))
    out["sim_only_real_return"] = evaluate(real_env, sim_sac, size["eval_episodes"], seed)

    def behaviour(obs: np.ndarray) -> np.ndarray:
        action = sim_sac.act(obs, deterministic=True) + rng.normal(0, DATA_NOISE, act_space.shape)
        return np.clip(action, -1, 1)

    real_data = _buffer(real_env, size["dataset_steps"] + size["dataset_steps"] // 10 + 10)
    rollout(real_env, real_data, size["dataset_steps"], behaviour, rng, source="offline")

    def symmetric(rows: int) -> Callable[[ReplayBuffer], SymmetricSampler]:
        return lambda online: SymmetricSampler(online, real_data, rows, seed)

    # offline-only: FamO2O's offline phase (IQL) on the real dataset
    famo2o = FamO2OAgent(
        FamO2OConfig(hidden_dims=HIDDEN, batch_size=2 * BATCH), obs_space, act_space, seed=seed,
        device=device,
    )  # fmt: skip
    offline_sampler = UniformSampler(real_data, 2 * BATCH, seed)
    for _ in range(size["offline_updates"]):
        batch = offline_sampler.sample()
        batch.prior = torch.ones_like(batch.reward)
        famo2o.update(batch)
    out["offline_only_real_return"] = evaluate(real_env, famo2o, size["eval_episodes"], seed)

    # H2O: real dataset + nominal simulator, same env and gradient steps as sim-only SAC
    h2o_cfg = H2OConfig(hidden_dims=HIDDEN, discriminator_hidden_dims=HIDDEN,
                        batch_size=4 * BATCH, critic_rows_per_source=BATCH)  # fmt: skip
    h2o = H2OAgent(h2o_cfg, obs_space, act_space, seed=seed, device=device)
    h2o_metrics: dict[str, float] = {}
    _online(h2o, sim_env, steps, warmup, rng, symmetric(h2o_cfg.batch_size), metrics=h2o_metrics)
    out["h2o_real_return"] = evaluate(real_env, h2o, size["eval_episodes"], seed)
    out["h2o_importance_weight_mean"] = h2o_metrics["h2o/importance_weight_mean"]
    out["h2o_discriminator_accuracy"] = h2o_metrics["h2o/discriminator_sas_accuracy"]

    # offline-to-online in the real env from the same dataset
    famo2o_metrics: dict[str, float] = {}
    _online(famo2o, real_env, steps, warmup, rng, symmetric(2 * BATCH), metrics=famo2o_metrics)
    out["famo2o_return"] = evaluate(real_env, famo2o, size["eval_episodes"], seed)
    out["famo2o_beta_mean"] = famo2o_metrics["famo2o/beta_mean"]

    moorl_cfg = MOORLConfig(sac=replace(sac_cfg, batch_size=BATCH))
    moorl = MOORLAgent(moorl_cfg, obs_space, act_space, seed=seed, device=device)
    _online(moorl, real_env, steps, warmup, rng, symmetric(moorl_cfg.batch_size),
            update_every=moorl_cfg.inner_steps)  # fmt: skip
    out["moorl_return"] = evaluate(real_env, moorl, size["eval_episodes"], seed)

    rlpd_cfg = SACConfig.rlpd(hidden_dims=HIDDEN, batch_size=BATCH, num_qs=4, utd=2)
    rlpd = SACAgent(rlpd_cfg, obs_space, act_space, seed=seed, device=device)
    _online(rlpd, real_env, steps, warmup, rng, symmetric(rlpd_cfg.utd * BATCH))
    out["rlpd_return"] = evaluate(real_env, rlpd, size["eval_episodes"], seed)
    out["dataset_return_per_step"] = float(np.mean(_rewards(real_data)))
    sim_env.close()
    real_env.close()
    return out


def run_unit(spec: dict[str, Any]) -> dict[str, float]:
    """One seed of every learner (`serl.bench.units`)."""
    params = parse_params(spec["real_params"])
    return run_seed(spec["env"], params, spec["seed"], spec["size"], spec["device"])


def _rewards(buffer: ReplayBuffer) -> np.ndarray:
    arrays = buffer.state_arrays()
    return arrays["reward"][arrays["valid"]]


def plot_returns(per_seed: list[dict[str, float]], path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in per_seed[0] if k.endswith("return")]
    fig, ax = plt.subplots(figsize=(8, 3.5))
    for i, key in enumerate(keys):
        values = [r[key] for r in per_seed]
        ax.bar(i, np.mean(values), color="C0" if "real_return" in key else "C1", alpha=0.6)
        ax.scatter([i] * len(values), values, color="k", s=12, zorder=3)
    ax.set_xticks(range(len(keys)), [k.removesuffix("_return") for k in keys], rotation=20)
    ax.set_ylabel("real-env return")
    ax.set_title(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def run(
    quick: bool,
    device: str,
    env: str = "Pendulum-v1",
    real_params: str = "m=1.5",
    seeds: int = 0,
    plot: Path | None = None,
    out: Path | None = None,
    jobs: int = 1,
    **_: Any,
) -> dict[str, float | str]:
    size = dict(SIZES[quick])
    size["seeds"] = seeds or size["seeds"]
    parse_params(real_params)  # a malformed --real-params fails here, before any unit starts
    out = out or Path("runs") / time.strftime("bench-hybrid-%Y%m%d-%H%M%S")
    start = time.perf_counter()
    specs = [
        {"name": f"seed{seed}", "env": env, "real_params": real_params, "seed": seed,
         "size": size, "device": device}
        for seed in range(size["seeds"])
    ]  # fmt: skip
    done = run_units(__name__, specs, out, jobs)
    per_seed = [done[spec["name"]] for spec in specs]
    for seed, result in enumerate(per_seed):
        print(f"seed {seed}: " + ", ".join(f"{k} {v:.1f}" for k, v in result.items()))
    figures: dict[str, float | str] = {
        "env": env,
        "real_params": real_params,
        "seeds": size["seeds"],
        "env_steps": size["steps"],
        "dataset_transitions": size["dataset_steps"],
        "offline_updates": size["offline_updates"],
    }
    for key in per_seed[0]:
        values = np.array([r[key] for r in per_seed])
        figures[key] = float(values.mean())
        figures[f"{key}_std"] = float(values.std())
    figures["wall_s"] = time.perf_counter() - start
    plot = plot or out / "hybrid.png"
    figures["plot"] = str(plot_returns(per_seed, plot, f"{env}, real: {real_params}"))
    return figures
