"""Hardware devices without the hardware: the SpaceMouse HID report parser, missing libraries."""

from __future__ import annotations

import importlib.util
import struct

import numpy as np
import pytest

from serl.teleop.device import DeviceUnavailableError, make_device
from serl.teleop.scripted import ScriptedDevice
from serl.teleop.spacemouse import RAW_FULL_SCALE, parse_hid_report


def test_spacemouse_reports_set_translation_rotation_and_buttons() -> None:
    axes = np.zeros(6, np.float32)
    assert parse_hid_report(bytes([1]) + struct.pack("<3h", 350, -175, 0), axes) is None
    np.testing.assert_allclose(axes, [1.0, -0.5, 0, 0, 0, 0])
    parse_hid_report(bytes([2]) + struct.pack("<3h", 0, 35, -350), axes)
    np.testing.assert_allclose(axes, [1.0, -0.5, 0, 0, 35 / RAW_FULL_SCALE, -1.0])
    assert parse_hid_report(bytes([3, 0b10, 0, 0, 0, 0, 0]), axes) == 2


def test_newer_spacemouse_reports_carry_all_six_axes_in_report_1() -> None:
    axes = np.zeros(6, np.float32)
    parse_hid_report(bytes([1]) + struct.pack("<6h", 0, 0, 350, 0, -350, 0), axes)
    np.testing.assert_allclose(axes, [0, 0, 1.0, 0, -1.0, 0])


@pytest.mark.skipif(importlib.util.find_spec("inputs") is not None, reason="inputs installed")
def test_a_gamepad_without_the_inputs_package_says_what_to_install() -> None:
    with pytest.raises(DeviceUnavailableError, match="pip install inputs"):
        make_device("gamepad")


def test_an_unknown_device_name_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="'joystick'; expected keyboard, spacemouse or gamepad"):
        make_device("joystick")


def test_a_scripted_sequence_says_quit_when_it_runs_out() -> None:
    device = ScriptedDevice([np.ones(2), None])
    first, second, third = device.read(), device.read(), device.read()
    assert first.intervening and np.array_equal(first.action, [1, 1])
    assert not second.intervening and not second.quit
    assert third.quit
