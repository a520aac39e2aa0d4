"""How well do a frozen backbone's features say where the cube is? A linear probe.

PickCube from cameras needs the cube's position relative to the gripper, which the
proprioceptive state does not hold. This measures, for each backbone and input size, how much
of `cube - tcp` (3 numbers, metres) a ridge regression on the frozen features of the front
and wrist frames recovers on held-out scenes: R² (1 = all of it, 0 = nothing) and the RMSE
in cm. Scenes are PickCube resets (random cube position and yaw) followed by 0-30 random
actions, so the arm is at varied poses, as in training.

    python scripts/probe_backbone_features.py --scenes 400
    python scripts/probe_backbone_features.py --configs efficientnet-lite0:64:2 conv:64:2

A config is BACKBONE:IMAGE_SIZE:POOL (`serl.nets.backbones`; conv = the random control).
Runs on one CPU thread; about a minute per config for 400 scenes.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from serl.envs import make_env
from serl.nets.backbones import FrozenBackbone

DEFAULT_CONFIGS = (
    "efficientnet-lite0:64:1",
    "efficientnet-lite0:64:2",
    "efficientnet-lite0:128:2",
    "efficientnet-lite0:128:4",
    "conv:64:2",
)


def collect(size: int, scenes: int, seed: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Front and wrist frames of `scenes` PickCube scenes and each scene's cube - tcp."""
    env = make_env(f"sim:PandaPickCubePixels{size}-v0")
    rng = np.random.default_rng(seed)
    frames: dict[str, list[np.ndarray]] = {"front": [], "wrist": []}
    targets = []
    try:
        for scene in range(scenes):
            obs, _ = env.reset(seed=seed + scene)
            for _ in range(int(rng.integers(0, 31))):
                obs, *_ = env.step(env.action_space.sample())
            for camera in frames:
                frames[camera].append(obs[camera])
            task = env.unwrapped
            targets.append(task.cube_pos() - task.tcp_pos())
    finally:
        env.close()
    return {k: np.stack(v) for k, v in frames.items()}, np.stack(targets)


def features(backbone: FrozenBackbone, frames: np.ndarray) -> np.ndarray:
    out = []
    with torch.no_grad():
        for i in range(0, len(frames), 64):
            out.append(backbone(torch.as_tensor(frames[i : i + 64])).float().numpy())
    return np.concatenate(out)


def ridge_probe(x: np.ndarray, y: np.ndarray, train: int) -> tuple[float, float]:
    """Held-out R² and RMSE of ridge regression, the penalty picked on a validation split."""
    mean, std = x[:train].mean(0), x[:train].std(0) + 1e-6
    x = (x - mean) / std
    fit, val = int(train * 0.8), slice(int(train * 0.8), train)
    best = None
    for penalty in (1e-1, 1.0, 10.0, 100.0, 1000.0):
        w = _solve(x[:fit], y[:fit], penalty)
        error = float(((x[val] @ w[:-1] + w[-1] - y[val]) ** 2).mean())
        if best is None or error < best[0]:
            best = (error, penalty)
    assert best is not None
    w = _solve(x[:train], y[:train], best[1])
    predicted = x[train:] @ w[:-1] + w[-1]
    residual = ((predicted - y[train:]) ** 2).sum(0)
    total = ((y[train:] - y[train:].mean(0)) ** 2).sum(0)
    r2 = float(1.0 - residual.sum() / total.sum())
    rmse_cm = float(np.sqrt(((predicted - y[train:]) ** 2).sum(1).mean()) * 100)
    return r2, rmse_cm


def _solve(x: np.ndarray, y: np.ndarray, penalty: float) -> np.ndarray:
    """Ridge weights (and a bias, unpenalised) in the dual form: features outnumber scenes."""
    centre_x, centre_y = x.mean(0), y.mean(0)
    xc, yc = x - centre_x, y - centre_y
    alpha = np.linalg.solve(xc @ xc.T + penalty * np.eye(len(x)), yc)
    w = xc.T @ alpha
    return np.vstack([w, centre_y - centre_x @ w])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=400, help="scenes per image size")
    parser.add_argument("--configs", nargs="+", default=list(DEFAULT_CONFIGS))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    train = int(args.scenes * 0.75)
    data: dict[int, tuple[dict[str, np.ndarray], np.ndarray]] = {}
    print(f"{args.scenes} scenes ({train} to fit, {args.scenes - train} held out); cube - tcp")
    print(f"{'backbone':<20} {'image':>5} {'pool':>4} {'features':>8} {'R²':>6} {'RMSE cm':>8}")
    for config in args.configs:
        name, size, pool = config.split(":")
        if int(size) not in data:
            data[int(size)] = collect(int(size), args.scenes, args.seed)
        frames, target = data[int(size)]
        backbone = FrozenBackbone(name, None, int(pool))
        started = time.monotonic()
        x = np.concatenate([features(backbone, frames[camera]) for camera in frames], axis=1)
        r2, rmse = ridge_probe(x, target, train)
        print(
            f"{name:<20} {size:>5} {pool:>4} {x.shape[1]:>8} {r2:>6.2f} {rmse:>8.1f}"
            f"   ({time.monotonic() - started:.0f} s)",
            flush=True,
        )


if __name__ == "__main__":
    main()
