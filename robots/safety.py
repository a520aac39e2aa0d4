"""The safety layer: pure functions on poses, and the filter every motion command goes through.

Quaternions are (w, x, y, z), unit length; rotation vectors are axis * angle (rad) in the
world (base) frame, and a rotation vector r applied to an orientation q gives
``exp(r) * q`` (left product), the convention of `sim.controller`.

Rotation differences are computed on quaternions, never by subtracting Euler angles: the
relative rotation ``q_to * conj(q_from)`` is put on the hemisphere w >= 0 (q and -q are the
same rotation) and its angle ``2 atan2(|v|, w)`` is then in [0, pi]. So a yaw from
pi - 0.05 to -pi + 0.05 is a 0.1 rad step, not a 6.18 rad one, and a per-step rotation
limit is right across +-pi.

`SafetyFilter.check` applies, in order: reject non-finite input, and a quaternion whose norm
overflows to Inf (the arm holds); clamp the
position target into the workspace box; cap the translation and the rotation from the
measured pose at ``min(max_step, max_speed * dt)``, dt being the time since the previous
accepted command (the per-step and the velocity limits); clip the gripper command to
[-1, 1]. Clamping keeps the direction of the step, so the arm still moves the way it was
asked, only less far.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from robots.config import SafetyConfig

_EPS = 1e-12


# ----------------------------------------------------------------------------- quaternions
def quat_normalize(quat: np.ndarray) -> np.ndarray:
    """Unit quaternion with w >= 0 (the same rotation as `quat`)."""
    quat = np.asarray(quat, dtype=float)
    norm = float(np.linalg.norm(quat))
    if not norm > _EPS:
        raise ValueError(f"quaternion {quat} has zero length")
    quat = quat / norm
    return quat if quat[0] >= 0 else -quat


def quat_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product a * b of (w, x, y, z) quaternions."""
    aw, ax, ay, az = a
    bw, bx, by, bz = b
    return np.array(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ]
    )


def quat_conj(quat: np.ndarray) -> np.ndarray:
    return np.array([quat[0], -quat[1], -quat[2], -quat[3]], dtype=float)


def quat_from_rotvec(rotvec: np.ndarray) -> np.ndarray:
    """The unit quaternion of a rotation vector (axis * angle)."""
    rotvec = np.asarray(rotvec, dtype=float)
    angle = float(np.linalg.norm(rotvec))
    if angle < _EPS:
        return np.array([1.0, 0.0, 0.0, 0.0])
    axis = rotvec / angle
    return np.concatenate([[math.cos(angle / 2)], math.sin(angle / 2) * axis])


def rotvec_from_quat(quat: np.ndarray) -> np.ndarray:
    """The rotation vector of a quaternion, angle in [0, pi] (shortest representation)."""
    quat = quat_normalize(quat)
    vec_norm = float(np.linalg.norm(quat[1:]))
    if vec_norm < _EPS:
        return np.zeros(3)
    angle = 2.0 * math.atan2(vec_norm, quat[0])
    return quat[1:] / vec_norm * angle


def rotation_difference(q_from: np.ndarray, q_to: np.ndarray) -> np.ndarray:
    """The rotation vector r (world frame, |r| <= pi) with ``q_to = exp(r) * q_from``."""
    return rotvec_from_quat(quat_mul(quat_normalize(q_to), quat_conj(quat_normalize(q_from))))


# ----------------------------------------------------------------------------- limits
def clamp_to_box(pos: np.ndarray, low: np.ndarray, high: np.ndarray) -> tuple[np.ndarray, bool]:
    """`pos` clipped into the box [low, high]; True if it had to move."""
    pos = np.asarray(pos, dtype=float)
    clipped = np.clip(pos, low, high)
    return clipped, bool(np.any(clipped != pos))


def allowed_step(max_step: float, max_speed: float, dt_s: float) -> tuple[float, str]:
    """The largest step this command may take and which limit sets it ('step' or 'speed')."""
    by_speed = max_speed * max(dt_s, 0.0)
    return (max_step, "step") if max_step <= by_speed else (by_speed, "speed")


def limit_translation(
    current: np.ndarray, target: np.ndarray, max_norm: float
) -> tuple[np.ndarray, bool]:
    """`target` moved towards `current` along the line between them so that it is at most
    `max_norm` away; True if it was shortened."""
    current = np.asarray(current, dtype=float)
    delta = np.asarray(target, dtype=float) - current
    norm = float(np.linalg.norm(delta))
    if norm <= max_norm:
        return current + delta, False
    return current + delta * (max_norm / norm), True


def limit_rotation(
    current: np.ndarray, target: np.ndarray, max_angle: float
) -> tuple[np.ndarray, bool]:
    """`target` rotated back towards `current` about the same axis (the shortest way) so that
    the rotation between them is at most `max_angle`; True if it was shortened."""
    rotvec = rotation_difference(current, target)
    angle = float(np.linalg.norm(rotvec))
    if angle <= max_angle:
        return quat_normalize(target), False
    limited = rotvec * (max_angle / angle)
    return quat_normalize(quat_mul(quat_from_rotvec(limited), quat_normalize(current))), True


# ----------------------------------------------------------------------------- the filter
@dataclass
class Decision:
    """What the filter made of one command: the target to send, or why nothing is sent."""

    pos: np.ndarray | None = None
    quat: np.ndarray | None = None
    gripper: float | None = None
    rejected: str | None = None
    """Why the command was refused (the arm holds), e.g. 'nonfinite'; None if accepted."""
    clamped: list[str] = field(default_factory=list)
    """Limits that changed the command: workspace, step_m, speed_mps, step_rad, ..."""

    @property
    def accepted(self) -> bool:
        return self.rejected is None


def all_finite(*values: np.ndarray | float | None) -> bool:
    return all(value is None or bool(np.all(np.isfinite(value))) for value in values)


class SafetyFilter:
    """Checks absolute pose targets against a `SafetyConfig`; see the module docstring.

    Stateful only in the time of the previous accepted command (for the speed limits);
    `forget_timing` after a hold, a reset or an e-stop makes the next command a first one,
    whose dt is `nominal_period_s`.
    """

    def __init__(self, cfg: SafetyConfig, nominal_period_s: float) -> None:
        self.cfg = cfg
        self.nominal_period_s = nominal_period_s
        self.low = np.asarray(cfg.workspace_low_m, dtype=float)
        self.high = np.asarray(cfg.workspace_high_m, dtype=float)
        self._last_time: float | None = None

    def forget_timing(self) -> None:
        self._last_time = None

    def check(
        self,
        current_pos: np.ndarray,
        current_quat: np.ndarray,
        target_pos: np.ndarray,
        target_quat: np.ndarray,
        gripper: float | None,
        now_s: float,
    ) -> Decision:
        """The safe version of a target pose (absolute, base frame) given the measured pose."""
        if not all_finite(target_pos, target_quat, gripper):
            return Decision(rejected="nonfinite")
        norm = float(np.linalg.norm(target_quat))
        if not math.isfinite(norm):  # finite entries whose norm overflows (e.g. 1e308)
            return Decision(rejected="nonfinite")
        if not norm > 1e-6:
            return Decision(rejected="zero_quaternion")
        cfg, decision = self.cfg, Decision()
        dt = self.nominal_period_s if self._last_time is None else now_s - self._last_time
        pos, hit = clamp_to_box(target_pos, self.low, self.high)
        if hit:
            decision.clamped.append("workspace")
        max_m, which = allowed_step(cfg.max_step_m, cfg.max_speed_mps, dt)
        pos, hit = limit_translation(current_pos, pos, max_m)
        if hit:
            decision.clamped.append("step_m" if which == "step" else "speed_mps")
        max_rad, which = allowed_step(cfg.max_step_rad, cfg.max_angular_speed_radps, dt)
        quat, hit = limit_rotation(current_quat, target_quat, max_rad)
        if hit:
            decision.clamped.append("step_rad" if which == "step" else "speed_radps")
        if gripper is not None:
            clipped = float(np.clip(gripper, -1.0, 1.0))
            if clipped != gripper:
                decision.clamped.append("gripper")
            decision.gripper = clipped
        decision.pos, decision.quat = pos, quat
        self._last_time = now_s
        return decision

    def check_joints(self, q: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> str | None:
        """Why a reset pose is refused (wrong size, non-finite, too near a limit), or None."""
        q = np.asarray(q, dtype=float)
        if q.shape != lower.shape:
            return f"reset pose has {q.size} joints, the arm has {lower.size}"
        if not all_finite(q):
            return f"reset pose {q.tolist()} has NaN or Inf entries"
        margin = self.cfg.joint_margin_rad
        bad = np.flatnonzero((q < lower + margin) | (q > upper - margin))
        if bad.size:
            j = int(bad[0])
            return (
                f"reset pose joint {j + 1} = {q[j]:.4f} rad is not inside its limits "
                f"[{lower[j]:.4f}, {upper[j]:.4f}] by the margin {margin} rad"
            )
        return None
