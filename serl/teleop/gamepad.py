"""Gamepad teleoperation (Xbox / PlayStation layout) through the ``inputs`` package.

``inputs`` (imported when a gamepad is opened) reads the Linux evdev device without an X
server: ``inputs.devices.gamepads[i].read()`` blocks until events arrive and returns them, each
with ``ev_type`` ("Absolute", "Key", "Sync"), ``code`` (e.g. "ABS_X", "BTN_SOUTH") and
``state``. A thread applies them to the newest stick and button state, so `read` never blocks.

Mapping (`AXES`, `BUTTONS`): left stick x/y -> y/x translation, right stick y -> z, right
stick x -> yaw, d-pad -> roll/pitch; right bumper closes the gripper, left bumper opens it;
A toggles intervention, Y marks success, B marks failure, X starts the next episode of a
recording, Back (Select) discards the episode in progress, Start quits. A stick moved beyond
`deadzone` also counts as intervening (touching the controls takes over, as HIL-SERL).
"""

from __future__ import annotations

import importlib
import logging
import threading
from typing import Any

import numpy as np

from serl.teleop.device import (
    TWIST_GRIPPER_DIM,
    DeviceUnavailableError,
    TeleopCommand,
    TeleopDevice,
)

logger = logging.getLogger(__name__)

STICK_FULL_SCALE = 32768.0
"""evdev range of an analog stick (signed 16 bit)."""
AXES: dict[str, tuple[int, float, float]] = {
    "ABS_Y": (0, -1.0, STICK_FULL_SCALE),  # stick up (negative) -> +x (away from the base)
    "ABS_X": (1, -1.0, STICK_FULL_SCALE),  # stick left (negative) -> +y
    "ABS_RY": (2, -1.0, STICK_FULL_SCALE),  # right stick up -> +z
    "ABS_HAT0X": (3, 1.0, 1.0),
    "ABS_HAT0Y": (4, -1.0, 1.0),
    "ABS_RX": (5, -1.0, STICK_FULL_SCALE),
}
"""evdev axis code -> (entry of the device command, sign, full-scale value)."""
BUTTONS = {
    "BTN_TR": "close", "BTN_TL": "open", "BTN_SOUTH": "toggle",
    "BTN_NORTH": "success", "BTN_EAST": "failure", "BTN_START": "quit",
    "BTN_WEST": "start", "BTN_SELECT": "discard",
}  # fmt: skip
"""evdev button code -> action (pressed: state 1)."""


class GamepadDevice(TeleopDevice):
    """Gamepad teleoperation (module doc); `index` picks among connected gamepads."""

    name = "gamepad"
    episode_keys = {
        "start": "X", "success": "Y", "failure": "B", "discard": "Back", "quit": "Start"
    }  # fmt: skip

    def __init__(self, *, index: int = 0, deadzone: float = 0.1, gain: float = 1.0) -> None:
        try:
            inputs = importlib.import_module("inputs")
        except ImportError as exc:
            raise DeviceUnavailableError(
                f"the gamepad needs the `inputs` package ({exc}); `pip install inputs`"
            ) from exc
        pads = list(inputs.devices.gamepads)
        if index >= len(pads):
            raise DeviceUnavailableError(
                f"gamepad index {index}: {len(pads)} gamepad(s) connected; plug one in or check "
                "read access to /dev/input/event*"
            )
        self.pad = pads[index]
        self.deadzone, self.gain = float(deadzone), float(gain)
        self._axes = np.zeros(6, np.float32)
        self._lock = threading.Lock()
        self._events: list[str] = []
        self.gripper = -1.0
        self.intervening = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="gamepad", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                events = self.pad.read()
            except Exception:  # unplugged: keep the last state, log, retry
                logger.exception("gamepad read failed")
                self._stop.wait(0.5)
                continue
            for event in events:
                self.apply(event.ev_type, event.code, event.state)

    def apply(self, ev_type: str, code: str, state: int) -> None:
        """Apply one evdev event (public so the mapping is testable without hardware)."""
        with self._lock:
            if ev_type == "Absolute" and code in AXES:
                entry, sign, scale = AXES[code]
                self._axes[entry] = sign * float(state) / scale
            elif ev_type == "Key" and code in BUTTONS and state == 1:
                self._events.append(BUTTONS[code])

    def read(self, obs: Any = None) -> TeleopCommand:
        with self._lock:
            axes, events = self._axes.copy(), self._events
            self._events = []
        success: bool | None = None
        quit_ = start = discard = False
        for event in events:
            if event in ("close", "open"):
                self.gripper = 1.0 if event == "close" else -1.0
            elif event == "toggle":
                self.intervening = not self.intervening
            elif event in ("success", "failure"):
                success = event == "success"
            elif event == "quit":
                quit_ = True
            elif event == "start":
                start = True
            elif event == "discard":
                discard = True
        axes = np.where(np.abs(axes) < self.deadzone, 0.0, axes) * self.gain
        action = np.zeros(TWIST_GRIPPER_DIM, np.float32)
        action[:6] = np.clip(axes, -1.0, 1.0)
        action[6] = self.gripper
        moving = bool(np.any(axes))
        return TeleopCommand(action, self.intervening or moving, success, quit_, start, discard)

    def close(self) -> None:
        # `pad.read()` blocks until the next event; the daemon thread ends with the process.
        self._stop.set()
