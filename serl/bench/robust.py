"""`serl bench robust`: worst-case and average return over a grid of dynamics parameters.

Four learners get the same env-step budget on `sim:PandaReach-v0` and are evaluated on a
uniform grid of a 2-D box of actuation parameters (motor torque constant × joint damping):
* `nominal_sac`: SAC on the simulator as built (actuator_gain 1, joint_damping 1);
* `dr_sac`: SAC with both parameters drawn uniformly from the box at every episode;
* `drrpo`: deep DR-RPO (`serl.agents.drrpo`) on the nominal simulator, TV radius 0.1;
* `iwocs`: the IWOCS outer loop (`serl.robust.iwocs`) from the nominal model, the budget
  split evenly over at most `models` models, CMA-ES worst-case search, DR-SAC-free (no
  fallback policy, so it is compared on its own).
Why this box: Reach has no object, so friction and object mass do not change it, and the
named `actuation` set (gain 0.8-1.2) barely does; gain 0.4-1.4 and damping 1-30 move the
scripted expert's return from about −5 to −40. Training runs in this process (act, store,
update; the same agents, buffer and checkpoints as `serl train`), which keeps `--quick`
within minutes on 2 cores; `serl train --agent iwocs|drrpo` is the actor-learner path.

Keys: `<method>_worst_return` and `<method>_mean_return` (each the mean over seeds of that
seed's worst / average grid return), `<method>_worst_std` (std over seeds). Under `--out`:
`robust_grid.png` (every method's return over the grid, seed 0), `robust_summary.png` (worst
and average return per method, one dot per seed) and `units/` (one JSON result per method and
seed: `--jobs N` runs N at once, and a rerun with the same `--out` resumes).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import torch

from serl.agents.drrpo import DRRPOConfig
from serl.agents.sac import SACConfig, action_dim_of
from serl.bench.units import run_units
from serl.build import build_agent
from serl.checkpoint import save_checkpoint
from serl.checkpoint_eval import load_policy
from serl.config import config_hash, config_to_dict
from serl.data.replay import ReplayBuffer
from serl.data.samplers import UniformSampler
from serl.envs import make_env
from serl.robust.evaluate import GridEvaluation, evaluate_on_grid
from serl.robust.iwocs import IWOCSRunConfig, run_iwocs
from serl.robust.search import Bounds
from serl.robust.uncertainty import parse_box
from serl.train import TrainConfig

matplotlib.use("Agg")
logger = logging.getLogger(__name__)

ENV = "sim:PandaReach-v0"
BOX = "actuator_gain=0.4:1.4,joint_damping=1:30"
NOMINAL = {"actuator_gain": 1.0, "joint_damping": 1.0}
METHODS = ("iwocs", "drrpo", "dr_sac", "nominal_sac")


@dataclass(frozen=True)
class Size:
    steps: int
    """Env steps per method and seed (IWOCS: over all its models)."""
    seeds: int
    """Training seeds per method."""
    grid: int
    """Grid points per parameter in the evaluation."""
    eval_episodes: int
    """Seeded evaluation episodes per grid point."""
    models: int
    """IWOCS: most models."""
    search_budget: int
    """IWOCS: CMA-ES evaluations per worst-case search."""
    hidden: tuple[int, ...]
    """Hidden layer widths of every network."""


QUICK = Size(
    steps=2000, seeds=2, grid=3, eval_episodes=2, models=2, search_budget=6, hidden=(64, 64)
)
FULL = Size(
    steps=20_000, seeds=5, grid=5, eval_episodes=5, models=3, search_budget=20, hidden=(256, 256)
)


@dataclass(frozen=True)
class _Trained:
    checkpoint: Path


def train_in_process(
    cfg: TrainConfig, params_fn: Callable[[np.random.Generator], dict[str, float]] | None = None
) -> _Trained:
    """`cfg.steps` env steps of act / store / update in this process; writes a checkpoint.

    Each episode runs under `params_fn(rng)` when given (domain randomisation, through the
    sim env's `reset(options={"params": ...})`), else under `cfg.env_params`.
    """
    env = make_env(cfg.env, params=dict(cfg.env_params) or None)
    agent = build_agent(
        cfg.agent, cfg.agent_cfg, env.observation_space, env.action_space, seed=cfg.seed
    )
    buffer = ReplayBuffer(env.observation_space, action_dim_of(env.action_space), 2 * cfg.steps)
    sampler = UniformSampler(buffer, cfg.agent_cfg.utd * cfg.agent_cfg.batch_size, seed=cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    env.action_space.seed(cfg.seed)

    def reset(seed: int | None = None) -> Any:
        options = {"params": params_fn(rng)} if params_fn is not None else None
        obs, _ = env.reset(seed=seed, options=options)
        return obs

    obs, episode, t = reset(cfg.seed), 0, 0
    for step in range(cfg.steps):
        if step < cfg.random_steps:
            action = env.action_space.sample()
        else:
            action = agent.act(obs, deterministic=False)
        next_obs, reward, terminated, truncated, _ = env.step(action)
        buffer.add(
            obs, action, reward, next_obs, terminated, truncated,
            source="sim", episode_id=episode, t=t,
        )  # fmt: skip
        obs, t = next_obs, t + 1
        if terminated or truncated:
            obs, episode, t = reset(), episode + 1, 0
        if len(buffer) >= cfg.min_buffer:
            agent.update(sampler.sample())
    env.close()
    run_dir = Path(cfg.run_dir or "runs/bench-robust")
    run_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = run_dir / "checkpoint.safetensors"
    config = {"env": cfg.env, "agent": cfg.agent, "agent_cfg": config_to_dict(cfg.agent_cfg)}
    save_checkpoint(
        checkpoint,
        agent.state_dict(),
        config=config,
        config_hash=config_hash(cfg.agent_cfg),
        metadata={"env_steps": cfg.steps, "env_params": dict(cfg.env_params)},
    )
    return _Trained(checkpoint)


def _uniform(bounds: Bounds) -> Callable[[np.random.Generator], dict[str, float]]:
    return lambda rng: {k: float(rng.uniform(lo, hi)) for k, (lo, hi) in sorted(bounds.items())}


def _evaluate(checkpoint: Path, bounds: Bounds, size: Size) -> GridEvaluation:
    policy = load_policy(checkpoint).policy
    return evaluate_on_grid(
        lambda obs: policy.act(obs, deterministic=True),
        ENV,
        bounds,
        size.grid,
        episodes=size.eval_episodes,
        on_reset=getattr(policy, "reset_episode", None),
    )


def run_method(method: str, seed: int, size: Size, bounds: Bounds, out: Path) -> GridEvaluation:
    sac = SACConfig(hidden_dims=size.hidden, batch_size=128)
    base = TrainConfig(
        env=ENV,
        env_params=NOMINAL,
        agent="sac",
        agent_cfg=sac,
        steps=size.steps,
        random_steps=min(500, size.steps // 4),
        min_buffer=min(500, size.steps // 4),
        seed=seed,
        run_dir=out / f"{method}-seed{seed}",
        progress=False,
    )
    if method == "nominal_sac":
        checkpoint = train_in_process(base).checkpoint
    elif method == "dr_sac":
        checkpoint = train_in_process(base, _uniform(bounds)).checkpoint
    elif method == "drrpo":
        drrpo = DRRPOConfig(hidden_dims=size.hidden, batch_size=128, kl_weight=0.05, tv_radius=0.1)
        cfg = dataclasses.replace(base, agent="drrpo", agent_cfg=drrpo)
        checkpoint = train_in_process(cfg).checkpoint
    elif method == "iwocs":
        iwocs = IWOCSRunConfig(
            env=ENV,
            uncertainty=BOX,
            nominal=NOMINAL,
            max_models=size.models,
            epsilon=0.5,
            search="cmaes",
            search_budget=size.search_budget,
            search_episodes=2,
            validity_scales=(1.0, 4.0),
            train=dataclasses.replace(base, steps=size.steps // size.models),
            run_dir=out / f"iwocs-seed{seed}",
            seed=seed,
        )
        registry = run_iwocs(iwocs, train_fn=train_in_process)
        checkpoint = Path(registry[-1].checkpoint)
    else:
        raise ValueError(f"unknown method {method!r}; known: {METHODS}")
    return _evaluate(checkpoint, bounds, size)


def plot_methods(results: dict[str, GridEvaluation], png: Path) -> Path:
    import matplotlib.pyplot as plt

    names = sorted(next(iter(results.values())).bounds)
    low = min(min(r.returns) for r in results.values())
    high = max(max(r.returns) for r in results.values())
    fig, axes = plt.subplots(1, len(results), figsize=(4 * len(results), 3.6), squeeze=False)
    for ax, (method, result) in zip(axes[0], results.items(), strict=True):
        n = round(len(result.points) ** 0.5)
        grid = np.asarray(result.returns).reshape(n, n)
        (lo0, hi0), (lo1, hi1) = result.bounds[names[0]], result.bounds[names[1]]
        image = ax.imshow(
            grid.T, origin="lower", aspect="auto", extent=(lo0, hi0, lo1, hi1),
            vmin=low, vmax=high, cmap="viridis",
        )  # fmt: skip
        ax.set(xlabel=names[0], ylabel=names[1])
        ax.set_title(f"{method}\nworst {result.worst:.1f}, mean {result.mean:.1f}")
    fig.colorbar(image, ax=axes[0].tolist(), label="return")
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=90)
    plt.close(fig)
    return png


def plot_summary(per_seed: dict[str, dict[str, list[float]]], png: Path) -> Path:
    """Worst-case and average grid return of each method: bar = mean over seeds, dot = seed."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.6))
    for i, stats in enumerate(per_seed.values()):
        for offset, (stat, color) in ((-0.2, ("worst", "C3")), (0.2, ("mean", "C0"))):
            values = stats[stat]
            label = stat if i == 0 else None
            ax.bar(i + offset, np.mean(values), 0.38, color=color, alpha=0.6, label=label)
            ax.scatter([i + offset] * len(values), values, color="k", s=10, zorder=3)
    ax.set_xticks(range(len(per_seed)), list(per_seed))
    ax.set_ylabel("return over the grid")
    ax.set_title(f"{ENV}, {BOX}")
    ax.legend()
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return png


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seeds", type=int, help="seeds per method (default: 2 quick, 5 full)")
    parser.add_argument("--out", type=Path, help="run directory; an earlier run's --out resumes it")
    parser.add_argument(
        "--jobs", type=int, default=1, help="method x seed units run at once, one core each"
    )


def run_unit(spec: dict[str, Any]) -> dict[str, Any]:
    """One method and seed, trained and evaluated on the grid (`serl.bench.units`)."""
    size = Size(**{**spec["size"], "hidden": tuple(spec["size"]["hidden"])})
    result = run_method(spec["method"], spec["seed"], size, parse_box(BOX), Path(spec["out"]))
    return dataclasses.asdict(result)


def _grid_result(value: dict[str, Any]) -> GridEvaluation:
    bounds = {k: (float(lo), float(hi)) for k, (lo, hi) in value["bounds"].items()}
    return GridEvaluation(bounds, value["points"], value["returns"])


def run(
    quick: bool,
    device: str,
    seeds: int | None = None,
    out: Path | None = None,
    jobs: int = 1,
    **_: Any,
) -> dict[str, float | str]:
    if device != "cpu":
        logger.warning("bench robust trains on the CPU; --device %s is ignored", device)
    size = QUICK if quick else FULL
    if seeds is not None:
        size = dataclasses.replace(size, seeds=seeds)
    out = out or Path("runs") / time.strftime("bench-robust-%Y%m%d-%H%M%S")
    torch.set_num_threads(1)
    figures: dict[str, float | str] = {
        "env": ENV,
        "box": BOX,
        "env_steps_per_method": size.steps,
        "seeds": size.seeds,
        "grid": f"{size.grid}x{size.grid}",
    }
    start = time.perf_counter()
    specs = [
        {"name": f"{method}-seed{seed}", "method": method, "seed": seed,
         "size": dataclasses.asdict(size), "out": str(out)}
        for method in METHODS for seed in range(size.seeds)
    ]  # fmt: skip
    done = {name: _grid_result(r) for name, r in run_units(__name__, specs, out, jobs).items()}
    first: dict[str, GridEvaluation] = {}
    per_seed: dict[str, dict[str, list[float]]] = {}
    for method in METHODS:
        worst, mean = [], []
        per_seed[method] = {"worst": worst, "mean": mean}
        for seed in range(size.seeds):
            result = done[f"{method}-seed{seed}"]
            worst.append(result.worst)
            mean.append(result.mean)
            first.setdefault(method, result)
            print(f"  {method} seed {seed}: worst {result.worst:.2f}, mean {result.mean:.2f}")
        figures[f"{method}_worst_return"] = float(np.mean(worst))
        figures[f"{method}_mean_return"] = float(np.mean(mean))
        figures[f"{method}_worst_std"] = float(np.std(worst))
    figures["wall_s"] = time.perf_counter() - start
    figures["plot"] = str(plot_methods(first, out / "robust_grid.png"))
    figures["summary_plot"] = str(plot_summary(per_seed, out / "robust_summary.png"))
    return figures
