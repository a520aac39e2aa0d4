"""Terminal keyboard: bytes from a pipe or a pseudo-terminal become commands."""

from __future__ import annotations

import os
import pty
import termios

import numpy as np
import pytest

from serl.teleop.keyboard import KeyboardDevice

pytestmark = pytest.mark.timeout(30)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def pipe() -> tuple[int, int]:
    read_fd, write_fd = os.pipe()
    yield read_fd, write_fd
    os.close(read_fd)
    os.close(write_fd)


def test_motion_keys_move_their_axis_and_the_gripper_keys_persist(pipe) -> None:
    read_fd, write_fd = pipe
    device = KeyboardDevice(read_fd, clock=Clock())
    os.write(write_fd, b"wdrj")  # +x, -y, +z, +yaw
    np.testing.assert_array_equal(device.read().action, [1, -1, 1, 0, 0, 1, -1])
    os.write(write_fd, b"c")
    np.testing.assert_array_equal(device.read().action[6], 1.0)
    np.testing.assert_array_equal(device.read().action[6], 1.0)  # still closed
    os.write(write_fd, b"v")
    assert device.read().action[6] == -1.0


def test_a_key_holds_its_axis_for_hold_s_after_its_last_press(pipe) -> None:
    read_fd, write_fd = pipe
    clock = Clock()
    device = KeyboardDevice(read_fd, hold_s=0.15, clock=clock)
    os.write(write_fd, b"s")
    assert device.read().action[0] == -1.0
    clock.now += 0.1
    assert device.read().action[0] == -1.0
    clock.now += 0.1
    assert device.read().action[0] == 0.0
    os.write(write_fd, b"ss")  # opposite keys never add past the limit
    assert device.read().action[0] == -1.0


def test_space_toggles_intervention_and_y_n_q_mark_success_failure_quit(pipe) -> None:
    read_fd, write_fd = pipe
    device = KeyboardDevice(read_fd, clock=Clock())
    assert device.read().intervening is False
    os.write(write_fd, b" ")
    first = device.read()
    assert first.intervening is True and first.success is None
    os.write(write_fd, b"y")
    assert device.read().success is True
    assert device.read().success is None  # a mark is given once
    os.write(write_fd, b"n")
    assert device.read().success is False
    os.write(write_fd, b" q")
    last = device.read()
    assert last.quit is True and last.intervening is False


def test_a_terminal_is_put_in_cbreak_mode_and_restored_on_close() -> None:
    leader, follower = pty.openpty()
    try:
        before = termios.tcgetattr(follower)
        assert before[3] & termios.ICANON
        with KeyboardDevice(follower, clock=Clock()) as device:
            assert not termios.tcgetattr(follower)[3] & termios.ICANON
            os.write(leader, b"a")  # no Enter needed: cbreak delivers it at once
            assert device.read().action[1] == 1.0
        assert termios.tcgetattr(follower)[3] == before[3]
    finally:
        os.close(leader)
        os.close(follower)


def test_enter_starts_an_episode_and_x_discards_it(pipe) -> None:
    read_fd, write_fd = pipe
    device = KeyboardDevice(read_fd, clock=Clock())
    os.write(write_fd, b"\n")
    first = device.read()
    assert first.start is True and first.discard is False and first.success is None
    os.write(write_fd, b"\r")  # ENTER through a pipe rather than a cbreak terminal
    assert device.read().start is True
    os.write(write_fd, b"x")
    second = device.read()
    assert second.discard is True and second.start is False
    assert device.read().discard is False  # once
