"""The Franka Emika Panda arm, its parallel-jaw hand and a table, written as MJCF from
published parameters (no asset files are copied in, DESIGN §7).

Sources of the numbers
----------------------
* Kinematics: Franka's published modified Denavit-Hartenberg table (Craig's convention), in
  the Franka Control Interface documentation, "Robot and interface specifications"
  (frankaemika.github.io/docs/control_parameters.html). With Craig's convention the frame of
  joint i sits at ``Trans_x(a) Rot_x(alpha)`` then ``Trans_z(d)`` from frame i-1, the joint
  rotating about the new z axis, which is exactly an MJCF body with ``pos`` and ``quat``.
* Joint position limits and joint torque limits: the same page (Panda, not FR3).
* Link masses: the dynamic identification of Gaz, Cognetti, Oliva, Robuffo Giordano and
  De Luca, "Dynamic Identification of the Franka Emika Panda Robot With Retrieval of Feasible
  Parameters Using Penalty-Based Optimization", IEEE RA-L 4(4), 2019. Inertias are computed by
  MuJoCo from the (capsule) geometry carrying those masses, which is coarse but physical.
* Hand: the Franka Hand datasheet: 0.73 kg, 80 mm maximum stroke (40 mm per finger), 70 N
  continuous grasping force; the flange-to-fingertip offset (the default TCP) is 0.1034 m and
  the hand is mounted rotated by -45 degrees about the flange z axis.
* Rotor inertia: 0.1 kg m^2 of armature per joint, the reflected motor inertia commonly used
  for the Panda in MuJoCo; it also keeps explicit torque control stable at 500 Hz.

Geometry is simple capsules and boxes. Arm links are visual only (they carry mass and inertia
but no contacts, which keeps the simulation fast); the hand and fingers collide.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# (a [m], d [m], alpha [rad]) per joint, Franka's modified DH table; theta is the joint angle.
PANDA_DH: tuple[tuple[float, float, float], ...] = (
    (0.0, 0.333, 0.0),
    (0.0, 0.0, -math.pi / 2),
    (0.0, 0.316, math.pi / 2),
    (0.0825, 0.0, math.pi / 2),
    (-0.0825, 0.384, -math.pi / 2),
    (0.0, 0.0, math.pi / 2),
    (0.088, 0.0, math.pi / 2),
)
FLANGE_D_M = 0.107
"""Flange offset along joint 7's z axis (the DH table's last row)."""
TCP_FROM_FLANGE_M = 0.1034
"""Default Franka TCP: fingertip centre, along the flange z axis."""
JOINT_LOWER_RAD = np.array([-2.8973, -1.7628, -2.8973, -3.0718, -2.8973, -0.0175, -2.8973])
JOINT_UPPER_RAD = np.array([2.8973, 1.7628, 2.8973, -0.0698, 2.8973, 3.7525, 2.8973])
TORQUE_LIMIT_NM = np.array([87.0, 87.0, 87.0, 87.0, 12.0, 12.0, 12.0])
LINK_MASS_KG = (0.629769, 4.970684, 0.646926, 3.228604, 3.587895, 1.225946, 1.666555, 0.735522)
"""link0 .. link7 (Gaz et al. 2019, Table of identified parameters)."""
HAND_MASS_KG = 0.73
FINGER_MASS_KG = 0.015
FINGER_STROKE_M = 0.04
"""Travel of each finger; the hand opens to 2 x 0.04 = 0.08 m."""
GRASP_FORCE_N = 70.0
ARMATURE_KGM2 = 0.1
JOINT_DAMPING_NMS = 1.0
"""Viscous joint friction; small, it is mostly a handle for the dynamics parameters."""
HOME_QPOS = np.array([0.0, -0.3, 0.0, -2.2, 0.0, 1.9, math.pi / 4])
"""A ready pose with the hand pointing down above the table, about 0.45 m in front of the base."""

ARM_JOINTS = tuple(f"joint{i}" for i in range(1, 8))
ARM_ACTUATORS = ARM_JOINTS
GRIPPER_ACTUATOR = "gripper"
FINGER_JOINTS = ("finger_left", "finger_right")
TCP_SITE = "tcp"
ARM_BODIES = tuple(f"link{i}" for i in range(0, 8)) + ("hand",)

_LINK_RADIUS_M = (0.06, 0.06, 0.06, 0.055, 0.055, 0.05, 0.045, 0.04)


@dataclass(frozen=True)
class SceneOptions:
    """Model-wide settings that the tasks choose."""

    timestep_s: float = 0.002
    """Physics step; 500 Hz keeps the stiff torque loop and finger contacts stable."""
    render_width: int = 128
    """Largest offscreen image width any camera will be rendered at."""
    render_height: int = 128
    """Largest offscreen image height."""
    render_samples: int = 0
    """Multisample anti-aliasing of offscreen images; MuJoCo's default 4 costs ~1.7x on a CPU
    (llvmpipe) and matters little to a 128x128 policy input."""
    render_slices: int = 12
    """Tessellation of capsules and cylinders (MuJoCo's default 28 costs ~1.6x on a CPU)."""


def _fmt(values: np.ndarray | tuple[float, ...] | list[float]) -> str:
    return " ".join(f"{float(v):.6g}" for v in values)


def _rot_x_quat(alpha: float) -> np.ndarray:
    return np.array([math.cos(alpha / 2), math.sin(alpha / 2), 0.0, 0.0])


def _child_offset(index: int) -> np.ndarray:
    """Position of joint `index`'s frame in its parent's: Trans_x(a) Rot_x(alpha) Trans_z(d)."""
    a, d, alpha = PANDA_DH[index]
    return np.array([a, -d * math.sin(alpha), d * math.cos(alpha)])


def _link_geoms(index: int, next_offset: np.ndarray, mass: float, radius: float) -> str:
    """A motor housing along the joint axis plus a capsule to the next joint, sharing `mass`."""
    housing = (
        f'<geom class="link" type="cylinder" size="{radius:.4g} {radius:.4g}" '
        f'mass="{mass * 0.4:.6g}"/>'
    )
    length = float(np.linalg.norm(next_offset))
    if length < 1e-6:
        return housing.replace(f'mass="{mass * 0.4:.6g}"', f'mass="{mass:.6g}"')
    strut = (
        f'<geom class="link" type="capsule" fromto="0 0 0 {_fmt(next_offset)}" '
        f'size="{radius * 0.8:.4g}" mass="{mass * 0.6:.6g}"/>'
    )
    return housing + strut


def arm_xml(wrist_camera: bool = True, hand_xml: str = "") -> str:
    """The Panda from link0 to the fingertips, as nested MJCF bodies; the base sits at the origin.

    `hand_xml` is inserted into the hand body (whose +z axis points from the flange to the
    fingertips; the TCP is at z = TCP_FROM_FLANGE_M), e.g. a tool held in the hand."""
    offsets = [_child_offset(i) for i in range(7)] + [np.array([0.0, 0.0, FLANGE_D_M])]
    # link0 (fixed base) reaches up to joint 1.
    xml = [
        '<body name="link0" childclass="panda">',
        f'<geom class="link" type="capsule" fromto="0 0 0.02 {_fmt(offsets[0])}" '
        f'size="{_LINK_RADIUS_M[0]}" mass="{LINK_MASS_KG[0]}"/>',
    ]
    for i in range(7):
        a, d, alpha = PANDA_DH[i]
        pos = offsets[i]
        xml.append(f'<body name="link{i + 1}" pos="{_fmt(pos)}" quat="{_fmt(_rot_x_quat(alpha))}">')
        xml.append(
            f'<joint name="joint{i + 1}" range="{JOINT_LOWER_RAD[i]} {JOINT_UPPER_RAD[i]}"/>'
        )
        xml.append(_link_geoms(i + 1, offsets[i + 1], LINK_MASS_KG[i + 1], _LINK_RADIUS_M[i + 1]))
    xml.append(_hand_xml(wrist_camera, hand_xml))
    xml.append("</body>" * 8)
    return "\n".join(xml)


def _hand_xml(wrist_camera: bool, extra: str) -> str:
    # Hand frame: flange rotated by -45 deg about z; fingers slide along the hand's y axis.
    quat = _fmt([math.cos(-math.pi / 8), 0.0, 0.0, math.sin(-math.pi / 8)])
    finger_z = 0.0584  # finger base below the flange (Franka Hand drawing)
    pad_half = (0.009, 0.006, 0.021)  # x (depth), y (thickness), z (length) in metres
    pad_z = TCP_FROM_FLANGE_M - pad_half[2] + 0.003 - finger_z
    camera = ""
    if wrist_camera:
        # Behind the hand (-x), looking down past the fingertips, like the wrist RealSense of
        # SERL's Franka setup: image up = forward (+x of the hand), fingers at the image top.
        camera = '<camera name="wrist" pos="-0.08 0 0.03" xyaxes="0 1 0 0.905 0 -0.426" fovy="70"/>'
    return f"""
<body name="hand" pos="0 0 {FLANGE_D_M}" quat="{quat}">
  <geom class="hand" type="box" size="0.03 0.095 0.03" pos="0 0 0.028" mass="{HAND_MASS_KG}"/>
  <site name="{TCP_SITE}" pos="0 0 {TCP_FROM_FLANGE_M}" size="0.006" rgba="1 0.3 0.3 0.6"
        group="3"/>
  {camera}
  {extra}
  <body name="finger_left_body" pos="0 0 {finger_z}">
    <joint name="finger_left" class="finger" axis="0 1 0"/>
    <geom class="pad" type="box" pos="0 {pad_half[1]:.4g} {pad_z:.4g}"
          size="{_fmt(pad_half)}" mass="{FINGER_MASS_KG}"/>
  </body>
  <body name="finger_right_body" pos="0 0 {finger_z}">
    <joint name="finger_right" class="finger" axis="0 -1 0"/>
    <geom class="pad" type="box" pos="0 {-pad_half[1]:.4g} {pad_z:.4g}"
          size="{_fmt(pad_half)}" mass="{FINGER_MASS_KG}"/>
  </body>
</body>"""


def _defaults() -> str:
    return f"""
<default>
  <default class="panda">
    <joint type="hinge" axis="0 0 1" armature="{ARMATURE_KGM2}" damping="{JOINT_DAMPING_NMS}"
           limited="true"/>
    <default class="link">
      <geom contype="0" conaffinity="0" group="1" rgba="0.92 0.92 0.95 1"/>
    </default>
    <default class="hand">
      <geom contype="1" conaffinity="1" group="1" rgba="0.25 0.25 0.28 1" condim="3"/>
    </default>
    <default class="finger">
      <joint type="slide" range="0 {FINGER_STROKE_M}" armature="0.01" damping="5"/>
    </default>
    <default class="pad">
      <geom contype="1" conaffinity="1" group="1" condim="4" friction="1.5 0.01 0.0001"
            rgba="0.15 0.15 0.15 1" solref="0.004 1"/>
    </default>
  </default>
</default>"""


def _actuators() -> str:
    motors = "\n".join(
        f'<motor name="{name}" joint="{name}" ctrlrange="{-lim} {lim}"/>'
        for name, lim in zip(ARM_ACTUATORS, TORQUE_LIMIT_NM, strict=True)
    )
    # One position servo drives the mean finger opening; the equality keeps the two fingers
    # symmetric, as the Franka Hand's mechanical coupling does.
    kp = 2000.0
    return f"""
<tendon>
  <fixed name="finger_split">
    <joint joint="finger_left" coef="0.5"/>
    <joint joint="finger_right" coef="0.5"/>
  </fixed>
</tendon>
<equality>
  <joint joint1="finger_left" joint2="finger_right" polycoef="0 1 0 0 0" solref="0.005 1"/>
</equality>
<actuator>
{motors}
<general name="{GRIPPER_ACTUATOR}" tendon="finger_split" ctrlrange="0 {FINGER_STROKE_M}"
         forcerange="{-2 * GRASP_FORCE_N} {2 * GRASP_FORCE_N}" gainprm="{kp}"
         biasprm="0 {-kp} -40" biastype="affine" dyntype="none"/>
</actuator>"""


def scene_xml(
    task_xml: str = "",
    options: SceneOptions = SceneOptions(),
    name: str = "panda",
    hand_xml: str = "",
) -> str:
    """A complete MJCF model: table, Panda, cameras and the task's own bodies.

    Cameras: "front" (observations: close on the workspace, the hand at the top) and
    "overview" (videos: from the front left, aimed at (0.25, 0, 0.45), framing the whole arm
    even stretched straight up, 1.03 m, and the table's workspace).

    The table top is the plane z = 0 and the robot base stands on it at the origin, facing +x.
    `task_xml` is inserted into the worldbody (objects, targets, fixtures), `hand_xml` into the
    hand body (see `arm_xml`).
    """
    return f"""
<mujoco model="{name}">
  <compiler angle="radian" autolimits="true" inertiafromgeom="true"/>
  <option timestep="{options.timestep_s}" integrator="implicitfast" cone="elliptic"
          impratio="10"/>
  <visual>
    <global offwidth="{options.render_width}" offheight="{options.render_height}"/>
    <quality shadowsize="0" offsamples="{options.render_samples}"
             numslices="{options.render_slices}" numstacks="{max(2, options.render_slices // 2)}"/>
    <headlight ambient="0.4 0.4 0.4" diffuse="0.5 0.5 0.5"/>
  </visual>
  <asset>
    <texture name="grid" type="2d" builtin="checker" rgb1="0.55 0.45 0.35"
             rgb2="0.5 0.4 0.3" width="64" height="64"/>
    <material name="table" texture="grid" texrepeat="8 8"/>
  </asset>
  {_defaults()}
  <worldbody>
    <light name="top" pos="0.5 0 1.5" dir="0 0 -1" castshadow="false" diffuse="0.6 0.6 0.6"/>
    <geom name="table" type="box" pos="0.4 0 -0.02" size="0.6 0.75 0.02" material="table"
          friction="1 0.005 0.0001"/>
    <camera name="front" pos="1.2 0 0.7" xyaxes="0 1 0 -0.591 0 0.806" fovy="50"/>
    <camera name="overview" pos="1.6 1.2 1.05" xyaxes="-0.664 0.747 0 -0.236 -0.209 0.949"
            fovy="50"/>
    {arm_xml(hand_xml=hand_xml)}
    {task_xml}
  </worldbody>
  <contact>
    <exclude body1="finger_left_body" body2="finger_right_body"/>
  </contact>
  {_actuators()}
</mujoco>"""
