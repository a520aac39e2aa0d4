"""3Dconnexion SpaceMouse teleoperation (SERL's and HIL-SERL's device), read on its own thread.

Backends, tried in order and imported only when a SpaceMouse is opened:

* ``pyspacemouse`` (``pyspacemouse.open()`` then ``pyspacemouse.read()`` -> a state with
  ``x, y, z, roll, pitch, yaw`` in [-1, 1] and ``buttons``);
* ``hidapi`` (``import hid``): the raw HID reports. Report 1 carries translation (and, on
  newer devices with 13-byte reports, rotation) as little-endian int16 triples, report 2 the
  rotation of older devices, report 3 the button bit mask; axes are scaled by
  `RAW_FULL_SCALE` and flipped by `axis_signs` into the robot's base frame.

A thread keeps the newest state (HID reports queue up in the OS otherwise, and an old one
would move the robot late). Any motion beyond `deadzone` or a pressed button counts as
intervening (HIL-SERL: touching the SpaceMouse takes over). Left button closes the gripper,
right button opens it; the gripper command persists between presses.
"""

from __future__ import annotations

import importlib
import logging
import threading
import time
from typing import Any

import numpy as np

from serl.teleop.device import (
    TWIST_GRIPPER_DIM,
    DeviceUnavailableError,
    TeleopCommand,
    TeleopDevice,
)

logger = logging.getLogger(__name__)

VENDOR_IDS: tuple[int, ...] = (0x046D, 0x256F)
"""USB vendor ids of 3Dconnexion devices (Logitech-era and current)."""
RAW_FULL_SCALE = 350.0
"""Raw HID axis value at full deflection (3Dconnexion devices report about ±350)."""


def parse_hid_report(report: bytes | list[int], axes: np.ndarray) -> int | None:
    """Update `axes` (6,) in place from one raw HID report; returns the button mask or None."""
    data = bytes(report)
    if len(data) < 7:
        return None
    values = np.frombuffer(data[1:], dtype="<i2", count=(len(data) - 1) // 2)
    if data[0] == 1:
        axes[:3] = values[:3] / RAW_FULL_SCALE
        if len(values) >= 6:  # newer devices: all six axes in one report
            axes[3:] = values[3:6] / RAW_FULL_SCALE
    elif data[0] == 2:
        axes[3:] = values[:3] / RAW_FULL_SCALE
    elif data[0] == 3:
        return int.from_bytes(data[1:3], "little")
    return None


class SpaceMouseDevice(TeleopDevice):
    """SpaceMouse teleoperation (module doc)."""

    name = "spacemouse"

    def __init__(
        self,
        *,
        deadzone: float = 0.05,
        gain: float = 1.0,
        axis_signs: tuple[float, ...] = (1.0, -1.0, -1.0, -1.0, -1.0, 1.0),
        backend: str | None = None,
    ) -> None:
        self.deadzone, self.gain = float(deadzone), float(gain)
        self.signs = np.asarray(axis_signs, dtype=np.float32)
        self._axes = np.zeros(6, np.float32)
        self._buttons = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.gripper = -1.0
        self._apply_signs = False
        self._reader = self._open(backend)
        self._thread = threading.Thread(target=self._loop, name="spacemouse", daemon=True)
        self._thread.start()

    def _open(self, backend: str | None) -> Any:
        errors = []
        for name in [backend] if backend else ["pyspacemouse", "hid"]:
            try:
                module = importlib.import_module(name)
            except ImportError as exc:
                errors.append(f"{name}: {exc}")
                continue
            if name == "pyspacemouse":
                if module.open():
                    return self._read_pyspacemouse(module)
                errors.append("pyspacemouse: open() found no SpaceMouse")
            else:
                for info in module.enumerate():
                    if info["vendor_id"] in VENDOR_IDS:
                        dev = module.device()
                        dev.open(info["vendor_id"], info["product_id"])
                        dev.set_nonblocking(True)
                        logger.info("SpaceMouse %s via hidapi", info.get("product_string"))
                        return self._read_hid(dev)
                errors.append("hidapi: no 3Dconnexion device (vendor 046d/256f) found")
        raise DeviceUnavailableError(
            "no SpaceMouse: " + "; ".join(errors) + ". Install `pip install pyspacemouse` or "
            "`pip install hidapi` (serl-suite[robots]), plug it in, and allow access to its "
            "/dev/hidraw* node (a udev rule for vendor 256f)"
        )

    def _read_pyspacemouse(self, module: Any) -> Any:
        def read() -> None:
            state = module.read()
            raw = [state.x, state.y, state.z, state.roll, state.pitch, state.yaw]
            with self._lock:
                # pyspacemouse already maps its axes to a right-handed frame
                self._axes[:] = raw
                self._buttons = sum(int(b) << i for i, b in enumerate(state.buttons))
            time.sleep(0.002)

        return read

    def _read_hid(self, dev: Any) -> Any:
        self._apply_signs = True  # raw HID axes are the device's own frame

        def read() -> None:
            report = dev.read(64)
            if not report:
                time.sleep(0.002)
                return
            with self._lock:
                buttons = parse_hid_report(report, self._axes)
                if buttons is not None:
                    self._buttons = buttons

        return read

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._reader()
            except Exception:  # a USB hiccup must not end teleoperation silently
                logger.exception("SpaceMouse read failed; retrying")
                time.sleep(0.1)

    def read(self, obs: Any = None) -> TeleopCommand:
        with self._lock:
            axes, buttons = self._axes.copy(), self._buttons
        if self._apply_signs:
            axes = axes * self.signs
        axes = np.where(np.abs(axes) < self.deadzone, 0.0, axes) * self.gain
        if buttons & 1:
            self.gripper = 1.0
        elif buttons & 2:
            self.gripper = -1.0
        action = np.zeros(TWIST_GRIPPER_DIM, np.float32)
        action[:6] = np.clip(axes, -1.0, 1.0)
        action[6] = self.gripper
        return TeleopCommand(action, intervening=bool(np.any(axes) or buttons))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=1.0)
