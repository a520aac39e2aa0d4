"""Boxes of dynamics parameters, named by the package that owns the env prefix.

`serl` never imports `sim`: a named set (`friction-mass`) is looked up through the
`serl.uncertainty` entry-point group, keyed by env prefix (`sim = "sim.dynamics:uncertainty_set"`
in pyproject; the function takes the name and returns an object with `bounds`). An explicit
box `friction=0.5:1.5,object_mass=0.5:2` works for any env that takes `params=`.
"""

from __future__ import annotations

from importlib.metadata import entry_points

from serl.robust.search import Bounds


def parse_box(spec: str) -> dict[str, tuple[float, float]]:
    """`name=low:high,name=low:high` -> {name: (low, high)}."""
    box: dict[str, tuple[float, float]] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, sep, rng = part.partition("=")
        low, colon, high = rng.partition(":")
        try:
            if not (sep and colon):
                raise ValueError
            box[name.strip()] = (float(low), float(high))
        except ValueError:
            raise ValueError(
                f"bad uncertainty range {part!r}; write name=low:high, e.g. friction=0.5:1.5"
            ) from None
    return box


def uncertainty_bounds(env_id: str, spec: str) -> Bounds:
    """The box of `spec` for `env_id`: a set name of the env's package, or an explicit box."""
    if "=" in spec:
        return parse_box(spec)
    prefix, sep, _ = env_id.partition(":")
    providers = {ep.name: ep for ep in entry_points(group="serl.uncertainty")}
    if not sep or prefix not in providers:
        raise ValueError(
            f"env {env_id!r} has no named uncertainty sets (providers: {sorted(providers)}); "
            "give the box explicitly, e.g. --uncertainty friction=0.5:1.5,mass=0.8:1.2"
        )
    found = providers[prefix].load()(spec)  # raises KeyError naming the known sets
    return {name: (float(lo), float(hi)) for name, (lo, hi) in found.bounds.items()}
