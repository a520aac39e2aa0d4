"""Humans in the loop: teleoperation devices, interventions and demonstration recording.

* `device`: the `TeleopDevice` interface every input device shares and its `TeleopCommand`.
* `keyboard`, `spacemouse`, `gamepad`: hardware devices (device libraries imported lazily).
* `scripted`: a device driven by a callable or a sequence (tests, scripted experts).
* `intervention`: the human overriding a policy, as the actor's hook or as an env wrapper.
* `recorder`: teleoperated episodes with success marks into a dataset (`serl record-demos`).
"""

from serl.teleop.device import TeleopCommand, TeleopDevice, make_device, to_env_action
from serl.teleop.intervention import Intervention, InterventionWrapper
from serl.teleop.scripted import ScriptedDevice

__all__ = [
    "Intervention",
    "InterventionWrapper",
    "ScriptedDevice",
    "TeleopCommand",
    "TeleopDevice",
    "make_device",
    "to_env_action",
]
