"""Forward kinematics of the Franka Panda / FR3: joint angles -> TCP position in the base frame.

The server checks a client-supplied reset pose against the workspace box before any motion
(a joint motion to it would otherwise carry the arm wherever those angles put it). The
kinematics are Franka's published Denavit-Hartenberg parameters (Craig's modified convention;
Franka Control Interface documentation, "Robot and interface specifications"), with the
flange 0.107 m along joint 7's axis and the Franka Hand's TCP 0.1034 m beyond it. They agree
with the MuJoCo Panda of `sim/` to 1e-15 m (tests/robots/test_kinematics.py).
"""

from __future__ import annotations

import numpy as np

A_M = (0.0, 0.0, 0.0, 0.0825, -0.0825, 0.0, 0.088, 0.0)
D_M = (0.333, 0.0, 0.316, 0.0, 0.384, 0.0, 0.0, 0.107)
ALPHA_RAD = (0.0, -np.pi / 2, np.pi / 2, np.pi / 2, -np.pi / 2, np.pi / 2, np.pi / 2, 0.0)
"""Joints 1-7 and the flange (a fixed frame, theta 0)."""
HAND_TCP_M = 0.1034
"""Flange to the TCP between the Franka Hand's fingertips, along the flange z axis."""


def _modified_dh(a: float, d: float, alpha: float, theta: float) -> np.ndarray:
    ca, sa, ct, st = np.cos(alpha), np.sin(alpha), np.cos(theta), np.sin(theta)
    return np.array(
        [
            [ct, -st, 0.0, a],
            [st * ca, ct * ca, -sa, -d * sa],
            [st * sa, ct * sa, ca, d * ca],
            [0.0, 0.0, 0.0, 1.0],
        ]
    )


def panda_tcp_position(q: np.ndarray, tcp_m: float = HAND_TCP_M) -> np.ndarray:
    """TCP position (3,) in the base frame for the 7 joint angles `q` (rad)."""
    q = np.asarray(q, dtype=float)
    if q.shape != (7,):
        raise ValueError(f"a Panda has 7 joints; got q of shape {q.shape}")
    pose = np.eye(4)
    for a, d, alpha, theta in zip(A_M, D_M, ALPHA_RAD, (*q, 0.0), strict=True):
        pose = pose @ _modified_dh(a, d, alpha, theta)
    return pose[:3, 3] + tcp_m * pose[:3, 2]
