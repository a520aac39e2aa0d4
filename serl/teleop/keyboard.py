"""Keyboard teleoperation in the terminal: no X server, works over ssh on the robot PC.

The terminal is put in cbreak mode (termios: key presses arrive at once, unechoed; Ctrl-C
still interrupts) and restored on close; each `read` drains the pending bytes with
``select`` + ``os.read``, so it never blocks. A terminal reports key presses, not releases, so a
motion key keeps its axis at ±`gain` for `hold_s` after its last press; holding a key
refreshes it through the terminal's auto-repeat (a press shorter than `hold_s` moves one or
two control steps; the first auto-repeat gap, ~0.3 s, shows as a short pause).

Keys (`KEYMAP`)::

    w / s   +x / -x        u / o   +roll / -roll      c   close gripper    space  toggle
    a / d   +y / -y        i / k   +pitch / -pitch    v   open gripper            intervention
    r / f   +z / -z        j / l   +yaw / -yaw        y   mark success     n   mark failure
    enter   start the next episode                    x   discard episode  q   quit

`keymap(action_dim)` is the part of it a recording of a task uses: a reach task's 3-D action
takes neither rotation nor gripper keys, and `serl record-demos` ignores the intervention
toggle (the person always drives there).
"""

from __future__ import annotations

import logging
import os
import select
import sys
import termios
import time
import tty
from collections.abc import Callable
from typing import Any

import numpy as np

from serl.teleop.device import TWIST_GRIPPER_DIM, TeleopCommand, TeleopDevice, command_entries

logger = logging.getLogger(__name__)

MOTION_KEYS: dict[str, tuple[int, float]] = {
    "w": (0, 1.0), "s": (0, -1.0),
    "a": (1, 1.0), "d": (1, -1.0),
    "r": (2, 1.0), "f": (2, -1.0),
    "u": (3, 1.0), "o": (3, -1.0),
    "i": (4, 1.0), "k": (4, -1.0),
    "j": (5, 1.0), "l": (5, -1.0),
}  # fmt: skip
"""Key -> (entry of the device command, sign)."""
KEYMAP: dict[str, str] = {
    **{key: f"{'+' if sign > 0 else '-'}{'x y z roll pitch yaw'.split()[axis]}"
       for key, (axis, sign) in MOTION_KEYS.items()},
    "c": "close gripper", "v": "open gripper", " ": "toggle intervention",
    "enter": "start the next episode", "y": "mark success (keep)",
    "n": "mark failure (keep)", "x": "discard the episode", "q": "quit",
}  # fmt: skip
"""Every key and what it does."""
_GRIPPER = TWIST_GRIPPER_DIM - 1
_ENTER = "\n\r"
"""What ENTER sends: a terminal in cbreak mode translates it to \\n, a pipe may carry \\r."""


def keymap(action_dim: int) -> dict[str, str]:
    """The keys of `KEYMAP` a recording of an env with actions of size `action_dim` uses: the
    motion keys of the axes its action takes, the gripper keys only when it takes the gripper,
    and the episode keys (never the intervention toggle: while recording the person drives)."""
    entries = command_entries(action_dim)
    used = {key for key, (axis, _) in MOTION_KEYS.items() if axis in entries}
    if _GRIPPER in entries:
        used |= {"c", "v"}
    used |= {"enter", "y", "n", "x", "q"}
    return {key: what for key, what in KEYMAP.items() if key in used}


class KeyboardDevice(TeleopDevice):
    """Terminal keyboard teleoperation (module doc); `fd` defaults to stdin."""

    name = "keyboard"
    episode_keys = {"start": "ENTER", "success": "y", "failure": "n", "discard": "x", "quit": "q"}

    def __init__(
        self,
        fd: int | None = None,
        *,
        gain: float = 1.0,
        hold_s: float = 0.15,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.fd = sys.stdin.fileno() if fd is None else fd
        self.gain, self.hold_s, self.clock = float(gain), float(hold_s), clock
        self._pressed_at: dict[str, float] = {}
        self.gripper = -1.0
        self.intervening = False
        self._saved_mode: list[Any] | None = None
        if os.isatty(self.fd):
            self._saved_mode = termios.tcgetattr(self.fd)
            tty.setcbreak(self.fd)
        else:
            logger.info("keyboard fd %d is not a terminal; reading its bytes as keys", self.fd)

    def _pending(self) -> bytes:
        data = b""
        while select.select([self.fd], [], [], 0)[0]:
            chunk = os.read(self.fd, 1024)
            if not chunk:  # end of input (a closed pipe)
                break
            data += chunk
        return data

    def read(self, obs: Any = None) -> TeleopCommand:
        now = self.clock()
        success: bool | None = None
        quit_ = start = discard = False
        for key in self._pending().decode("ascii", errors="ignore").lower():
            if key in MOTION_KEYS:
                self._pressed_at[key] = now
            elif key == "c":
                self.gripper = 1.0
            elif key == "v":
                self.gripper = -1.0
            elif key == " ":
                self.intervening = not self.intervening
            elif key in "yn":
                success = key == "y"
            elif key == "x":
                discard = True
            elif key in _ENTER:
                start = True
            elif key == "q":
                quit_ = True
        action = np.zeros(TWIST_GRIPPER_DIM, np.float32)
        for key, pressed in self._pressed_at.items():
            if now - pressed <= self.hold_s:
                axis, sign = MOTION_KEYS[key]
                action[axis] += sign * self.gain
        action[_GRIPPER] = self.gripper
        return TeleopCommand(
            np.clip(action, -1.0, 1.0), self.intervening, success, quit_, start, discard
        )

    def reset(self) -> None:
        self._pressed_at.clear()

    def close(self) -> None:
        if self._saved_mode is not None:
            termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved_mode)
            self._saved_mode = None
