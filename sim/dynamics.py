"""Dynamics parameters of the sim tasks: read, set, randomise and search over them.

Parameters are plain floats keyed by name (table below), so a setting is a JSON-able dict
that can tag transitions (`dyn_params`, DESIGN §3) and an uncertainty set is a box of ranges.
Model parameters are applied by editing the compiled `MjModel` arrays in place; a copy of
the nominal arrays is kept, so scales are always relative to the model as built (setting
``friction=2`` twice gives 2, not 4). Noise parameters are read by the env at every step.

======================  ==========  =========================================================
name                    nominal     meaning
======================  ==========  =========================================================
``friction``            1.0         scale of every geom's sliding friction coefficient
``object_mass``         1.0         scale of the task objects' masses and inertias
``link_mass``           1.0         scale of the arm links' and hand's masses and inertias
``joint_damping``       1.0         scale of the arm joints' viscous damping
``actuator_gain``       1.0         scale of the arm motors' torque per unit command
``gravity``             -9.81       z component of gravity, m/s^2
``obs_noise``           0.0         std of Gaussian noise on state observations (their units)
``action_noise``        0.0         std of Gaussian noise on actions, in [-1, 1] units
======================  ==========  =========================================================

The controller is model-based on the simulated model (its gravity, Coriolis and inertia terms
come from MuJoCo), like a robot with a well-identified model: ``link_mass`` then mainly
changes what happens at the torque limits and in contact, while ``actuator_gain`` (a motor
constant error) and ``joint_damping`` (unmodelled friction) show in free motion.

Uncertainty sets (`UNCERTAINTY_SETS`) are named boxes of ranges for domain randomisation
(`DomainRandomization`) and for the worst-case searches of robust learners (IWOCS, DR-RPO):
`UncertaintySet` samples, clips and lists the corners of its box. Pick a set that changes the
task: Reach has no object, so `friction`, `mass` and `friction-mass` barely touch it, while
`actuation-wide` (the default of `serl iwocs`) does.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np


@dataclass(frozen=True)
class ParamSpec:
    nominal: float
    """Value in the model as built."""
    unit: str
    """"scale" for multipliers of the nominal arrays, else the physical unit."""
    doc: str
    """What the parameter changes."""


PARAMETERS: dict[str, ParamSpec] = {
    "friction": ParamSpec(1.0, "scale", "sliding friction coefficient of every geom"),
    "object_mass": ParamSpec(1.0, "scale", "mass and inertia of the task's objects"),
    "link_mass": ParamSpec(1.0, "scale", "mass and inertia of the arm links and hand"),
    "joint_damping": ParamSpec(1.0, "scale", "viscous damping of the arm joints"),
    "actuator_gain": ParamSpec(1.0, "scale", "torque per unit command of the arm motors"),
    "gravity": ParamSpec(-9.81, "m/s^2", "z component of gravity"),
    "obs_noise": ParamSpec(0.0, "std", "Gaussian noise on state observations"),
    "action_noise": ParamSpec(0.0, "std", "Gaussian noise on actions in [-1, 1] units"),
}
NOMINAL: dict[str, float] = {name: spec.nominal for name, spec in PARAMETERS.items()}


def check_params(params: Mapping[str, float]) -> dict[str, float]:
    """Validate names and values; returns the params as a dict of floats."""
    unknown = sorted(set(params) - set(PARAMETERS))
    if unknown:
        raise KeyError(f"unknown dynamics parameter(s) {unknown}; known: {sorted(PARAMETERS)}")
    out = {}
    for name, value in params.items():
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"dynamics parameter {name}={value} is not finite")
        if PARAMETERS[name].unit in ("scale", "std") and value < 0:
            raise ValueError(f"dynamics parameter {name}={value} must be >= 0")
        out[name] = value
    return out


class ModelParams:
    """Edits a compiled model's arrays in place from a parameter dict (see the module table).

    Args:
        model: the model to edit; its arrays as passed in are the nominal values.
        object_bodies: names of the bodies scaled by ``object_mass``.
        arm_bodies: names of the bodies scaled by ``link_mass``.
        arm_joints: names of the joints scaled by ``joint_damping``.
        arm_actuators: names of the actuators scaled by ``actuator_gain``.
    """

    def __init__(
        self,
        model: mujoco.MjModel,
        *,
        object_bodies: Iterable[str],
        arm_bodies: Iterable[str],
        arm_joints: Iterable[str],
        arm_actuators: Iterable[str],
    ) -> None:
        self.model = model
        self._objects = np.array([model.body(b).id for b in object_bodies], dtype=int)
        self._links = np.array([model.body(b).id for b in arm_bodies], dtype=int)
        self._dofs = np.array([model.joint(j).dofadr[0] for j in arm_joints], dtype=int)
        self._acts = np.array([model.actuator(a).id for a in arm_actuators], dtype=int)
        self._nominal_friction = model.geom_friction[:, 0].copy()
        self._nominal_mass = model.body_mass.copy()
        self._nominal_inertia = model.body_inertia.copy()
        self._nominal_damping = model.dof_damping.copy()
        self._nominal_gain = model.actuator_gainprm[:, 0].copy()
        self._nominal_gravity = model.opt.gravity.copy()
        self._scratch = mujoco.MjData(model)
        self.values: dict[str, float] = dict(NOMINAL)
        self.values["gravity"] = float(self._nominal_gravity[2])

    def get(self) -> dict[str, float]:
        return dict(self.values)

    def set(self, params: Mapping[str, float]) -> None:
        """Apply the given parameters; the others keep their current values."""
        params = check_params(params)
        self.values.update(params)
        self._apply()

    def reset(self) -> None:
        """Back to the nominal model and zero noise."""
        self.values = dict(NOMINAL)
        self.values["gravity"] = float(self._nominal_gravity[2])
        self._apply()

    def _apply(self) -> None:
        m, v = self.model, self.values
        m.geom_friction[:, 0] = self._nominal_friction * v["friction"]
        m.body_mass[:] = self._nominal_mass
        m.body_inertia[:] = self._nominal_inertia
        for ids, scale in ((self._objects, v["object_mass"]), (self._links, v["link_mass"])):
            m.body_mass[ids] = self._nominal_mass[ids] * scale
            m.body_inertia[ids] = self._nominal_inertia[ids] * scale
        m.dof_damping[:] = self._nominal_damping
        m.dof_damping[self._dofs] = self._nominal_damping[self._dofs] * v["joint_damping"]
        m.actuator_gainprm[:, 0] = self._nominal_gain
        m.actuator_gainprm[self._acts, 0] = self._nominal_gain[self._acts] * v["actuator_gain"]
        m.opt.gravity[:] = (self._nominal_gravity[0], self._nominal_gravity[1], v["gravity"])
        # Derived constants (subtree masses, inverse weights used to soften constraints) follow
        # the new masses; a scratch MjData keeps the env's own state untouched.
        mujoco.mj_setConst(m, self._scratch)


@dataclass(frozen=True)
class UncertaintySet:
    """A box of parameter ranges: ``{name: (low, high)}``; parameters not named stay as set."""

    bounds: Mapping[str, tuple[float, float]]

    def __post_init__(self) -> None:
        check_params({k: lo for k, (lo, _) in self.bounds.items()})
        check_params({k: hi for k, (_, hi) in self.bounds.items()})
        for name, (lo, hi) in self.bounds.items():
            if lo > hi:
                raise ValueError(f"uncertainty range of {name} is empty: low {lo} > high {hi}")

    @property
    def names(self) -> list[str]:
        return sorted(self.bounds)

    def sample(self, rng: np.random.Generator) -> dict[str, float]:
        """Uniform in the box, names in sorted order (so a seeded rng gives the same draw)."""
        return {k: float(rng.uniform(*self.bounds[k])) for k in self.names}

    def center(self) -> dict[str, float]:
        return {k: 0.5 * (lo + hi) for k, (lo, hi) in sorted(self.bounds.items())}

    def clip(self, params: Mapping[str, float]) -> dict[str, float]:
        """Project a setting onto the box (names outside the set pass through)."""
        out = dict(params)
        for k, (lo, hi) in self.bounds.items():
            if k in out:
                out[k] = float(np.clip(out[k], lo, hi))
        return out

    def contains(self, params: Mapping[str, float]) -> bool:
        return all(lo <= params.get(k, lo) <= hi for k, (lo, hi) in self.bounds.items())

    def corners(self) -> list[dict[str, float]]:
        """The 2^d vertices of the box (the candidates of a worst-case search)."""
        names = self.names
        return [
            dict(zip(names, values, strict=True))
            for values in itertools.product(*(self.bounds[k] for k in names))
        ]


UNCERTAINTY_SETS: dict[str, UncertaintySet] = {
    "friction": UncertaintySet({"friction": (0.5, 1.5)}),
    "mass": UncertaintySet({"object_mass": (0.5, 2.0), "link_mass": (0.8, 1.2)}),
    "friction-mass": UncertaintySet(
        {"friction": (0.5, 1.5), "object_mass": (0.5, 2.0), "link_mass": (0.8, 1.2)}
    ),
    "actuation": UncertaintySet({"actuator_gain": (0.8, 1.2), "joint_damping": (0.5, 3.0)}),
    # A motor-constant error of -60..+40 % and up to 30x unmodelled joint friction: wide enough
    # to change free-space motion. A proportional reaching controller on Reach (4 seeded
    # episodes, discount 0.99) returns -5.6 to -35 at this box's corners, -4.7 to -5.4 at those
    # of `actuation`, and -5.03 to -5.04 at those of `friction-mass` (Reach has no object).
    "actuation-wide": UncertaintySet({"actuator_gain": (0.4, 1.4), "joint_damping": (1.0, 30.0)}),
    "noise": UncertaintySet({"obs_noise": (0.0, 0.01), "action_noise": (0.0, 0.1)}),
    "full": UncertaintySet(
        {
            "friction": (0.5, 1.5),
            "object_mass": (0.5, 2.0),
            "link_mass": (0.8, 1.2),
            "joint_damping": (0.5, 3.0),
            "actuator_gain": (0.8, 1.2),
            "gravity": (-10.3, -9.3),
            "obs_noise": (0.0, 0.01),
            "action_noise": (0.0, 0.1),
        }
    ),
}


def uncertainty_set(
    spec: str | UncertaintySet | Mapping[str, tuple[float, float]],
) -> UncertaintySet:
    """A named set (see `UNCERTAINTY_SETS`), a set, or a ``{name: (low, high)}`` mapping."""
    if isinstance(spec, UncertaintySet):
        return spec
    if isinstance(spec, str):
        if spec not in UNCERTAINTY_SETS:
            raise KeyError(
                f"unknown uncertainty set {spec!r}; named sets: {sorted(UNCERTAINTY_SETS)}"
            )
        return UNCERTAINTY_SETS[spec]
    return UncertaintySet({k: (float(lo), float(hi)) for k, (lo, hi) in spec.items()})


class DomainRandomization(gym.Wrapper):
    """Draws new dynamics parameters from an uncertainty set at every reset.

    The draw is made by the env itself, with its seeded `np_random`, after `reset(seed=...)`
    has seeded it (the wrapper passes ``options={"randomize": set}``), so a seeded reset gives
    the same parameters and the same episode. The parameters in force are in the reset info
    under ``"params"``.
    """

    def __init__(
        self, env: gym.Env, uncertainty: str | UncertaintySet | Mapping[str, tuple[float, float]]
    ) -> None:
        super().__init__(env)
        if not hasattr(env.unwrapped, "set_params"):
            raise TypeError(
                f"{env.unwrapped} has no set_params; DomainRandomization needs a sim task"
            )
        self.uncertainty = uncertainty_set(uncertainty)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        options = {**(options or {}), "randomize": self.uncertainty}
        return self.env.reset(seed=seed, options=options)
