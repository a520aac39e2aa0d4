"""`serl eval-robust` (and `serl iwocs`): robust evaluation and the IWOCS outer loop."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from serl.cli import command


@command("eval-robust", "a checkpoint's return over a grid of dynamics parameters (worst, mean)")
def _eval_robust(args: list[str]) -> int:
    from serl.checkpoint_eval import load_policy
    from serl.robust.evaluate import evaluate_on_grid, plot_grid, summary_text, write_grid_csv
    from serl.robust.uncertainty import uncertainty_bounds

    parser = argparse.ArgumentParser(prog="serl eval-robust", description=_eval_robust.__doc__)
    parser.add_argument("checkpoint", type=Path, help="a .safetensors checkpoint")
    parser.add_argument("--env", help="env id (default: the checkpoint's)")
    parser.add_argument(
        "--uncertainty",
        default="actuation-wide",
        help="a named set of the env's package (actuation-wide, friction-mass, ...) or an "
        "explicit box name=low:high,name=low:high (default actuation-wide, the default box of "
        "serl iwocs; friction and object mass do not change Reach)",
    )
    parser.add_argument("--grid", type=int, default=5, help="points per parameter (default 5)")
    parser.add_argument("--episodes", type=int, default=3, help="episodes per point (default 3)")
    parser.add_argument("--seed", type=int, default=10_000, help="seed of the first episode")
    parser.add_argument("--png", type=Path, help="heat map path (default: beside the checkpoint)")
    parser.add_argument(
        "--csv", type=Path, help="every point's return (default: robust_grid.csv beside the PNG)"
    )
    parser.add_argument("--json", type=Path, help="also write every point's return as JSON")
    parser.add_argument(
        "--all-rows", action="store_true", help="also print every grid point (the CSV's rows)"
    )
    opts = parser.parse_args(args)
    loaded = load_policy(opts.checkpoint, env=opts.env)
    bounds = uncertainty_bounds(loaded.env, opts.uncertainty)
    result = evaluate_on_grid(
        lambda obs: loaded.policy.act(obs, deterministic=True),
        loaded.env,
        bounds,
        opts.grid,
        episodes=opts.episodes,
        seed=opts.seed,
        on_reset=getattr(loaded.policy, "reset_episode", None),
    )
    print(
        f"{loaded.agent} policy on {loaded.env}, {len(result.points)} parameter settings "
        f"({opts.grid} per parameter, {opts.episodes} episode(s) each):"
    )
    if opts.all_rows:
        print("  " + "  ".join(f"{n:>12}" for n in result.names) + f"  {'return':>10}")
        for params, ret in zip(result.points, result.returns, strict=True):
            print("  " + "  ".join(f"{params[n]:>12.4g}" for n in result.names) + f"  {ret:>10.4g}")
    print(summary_text(result))
    png = opts.png or opts.checkpoint.with_name("robust_grid.png")
    plot_grid(result, png, title=f"{loaded.agent} on {loaded.env}")
    print(f"heat map: {png}")
    csv_path = write_grid_csv(result, opts.csv or png.with_suffix(".csv"))
    print(f"every point: {csv_path}")
    if opts.json:
        opts.json.write_text(
            json.dumps(
                {
                    "worst_return": result.worst,
                    "mean_return": result.mean,
                    "best_return": result.best,
                    "sensitivity": {e.name: e.sensitivity for e in result.effects()},
                    "points": [
                        {**p, "return": r}
                        for p, r in zip(result.points, result.returns, strict=True)
                    ],
                },
                indent=2,
            )
        )
        print(f"wrote {opts.json}")
    return 0


@command("iwocs", "IWOCS: solve models, search the worst one, repeat (one train run per model)")
def _iwocs(args: list[str]) -> int:
    import tyro

    from serl.robust.iwocs import REGISTRY_NAME, IWOCSRunConfig, run_iwocs

    cfg = tyro.cli(IWOCSRunConfig, args=args, prog="serl iwocs", description=_iwocs.__doc__)
    registry = run_iwocs(cfg)
    print(f"\nIWOCS on {cfg.env} over {cfg.uncertainty}: {len(registry)} model(s)")
    for i, record in enumerate(registry):
        found = "" if record.search_value is None else f"; worst found V={record.search_value:.2f}"
        print(f"  model {i}: {record.params} (validity scale {record.validity_scale}){found}")
    print(f"registry:   {cfg.run_dir / REGISTRY_NAME}")
    print(f"checkpoint: {registry[-1].checkpoint} (holds every model; try serl eval-robust)")
    return 0
