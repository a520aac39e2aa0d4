"""Cameras: latest-frame semantics, crop and resize, stalls reported in bounded time."""

from __future__ import annotations

import importlib.util
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from robots.cameras import (
    CallableSource,
    Camera,
    CameraOpenError,
    CameraStalledError,
    OpenCVSource,
    RealSenseSource,
)

pytestmark = pytest.mark.timeout(30)


class CountingFrames:
    """Frames whose pixels hold their running number; stops delivering after `limit`."""

    def __init__(self, shape: tuple[int, int] = (48, 64), limit: int | None = None) -> None:
        self.shape, self.limit, self.count = shape, limit, 0
        self.release = threading.Event()

    def __call__(self) -> np.ndarray:
        if self.limit is not None and self.count >= self.limit:
            self.release.wait(10)  # a hung driver call
            return None  # type: ignore[return-value]
        self.count += 1
        return np.full((*self.shape, 3), self.count % 256, np.uint8)


@pytest.fixture
def frames() -> Iterator[CountingFrames]:
    source = CountingFrames()
    yield source
    source.release.set()


def test_latest_is_the_newest_frame_and_stale_frames_are_skipped(frames) -> None:
    with Camera(CallableSource(frames, name="front", fps=200)) as camera:
        first = camera.latest()
        time.sleep(0.3)
        later = camera.latest()
        assert later.index - first.index > 5  # frames in between were dropped, not queued
        assert later.index >= camera.frames_delivered - 2
        assert int(later.image[0, 0, 0]) == (later.index + 1) % 256
        assert later.timestamp > first.timestamp
        assert time.monotonic() - later.timestamp < 0.1


def test_wait_newer_gives_increasing_indices_and_monotonic_timestamps(frames) -> None:
    with Camera(CallableSource(frames, fps=100)) as camera:
        seen = [camera.latest()]
        for _ in range(5):
            seen.append(camera.wait_newer(seen[-1].index))
    indices = [f.index for f in seen]
    assert indices == sorted(set(indices))
    assert all(b.timestamp > a.timestamp for a, b in zip(seen, seen[1:], strict=False))


def test_crop_then_resize_give_the_requested_shape(frames) -> None:
    camera = Camera(CallableSource(frames), crop=(8, 40, 0, 64), resize=(16, 32))
    image = np.zeros((48, 64, 3), np.uint8)
    image[8:40, :32] = 200  # the left half of the crop
    out = camera.process(image)
    assert out.shape == (16, 32, 3) and out.dtype == np.uint8
    assert (out[:, :16] == 200).all() and (out[:, 16:] == 0).all()
    with camera:
        assert camera.latest().image.shape == (16, 32, 3)
    assert Camera(CallableSource(frames), crop=(0, 10, 5, 25)).process(image).shape == (10, 20, 3)


def test_a_camera_that_stops_delivering_is_reported_within_the_stall_timeout() -> None:
    source = CountingFrames(limit=3)
    try:
        with Camera(CallableSource(source, name="wrist", fps=100), stall_timeout_s=0.3) as camera:
            last = camera.latest()
            start = time.monotonic()
            with pytest.raises(CameraStalledError) as info:
                while time.monotonic() - start < 5:
                    last = camera.latest()
                    time.sleep(0.01)
            reported_after = time.monotonic() - last.timestamp
            source.release.set()  # let the reader return, so close() need not wait for it
    finally:
        source.release.set()
    assert last.index == 2
    assert 0.3 <= reported_after < 1.5
    assert "camera 'wrist': no frame for" in str(info.value) and "last index 2" in str(info.value)


def test_a_camera_that_never_delivers_fails_the_first_latest_in_bounded_time() -> None:
    source = CountingFrames(limit=0)
    try:
        camera = Camera(CallableSource(source, name="front", fps=None), stall_timeout_s=0.2)
        with camera:
            start = time.monotonic()
            with pytest.raises(CameraStalledError, match=r"'front': no frame in 0\.\d+ s since"):
                camera.latest()
            assert time.monotonic() - start < 1.0
            source.release.set()
    finally:
        source.release.set()


def test_bad_frames_are_reported_with_the_stall() -> None:
    source = CallableSource(lambda: np.zeros((4, 4, 3), np.float32), name="bad", fps=100)
    with Camera(source, stall_timeout_s=0.2) as camera:
        with pytest.raises(CameraStalledError, match="float32 frame of shape .4, 4, 3.; expected"):
            camera.latest()


def test_a_crop_outside_the_frame_says_so() -> None:
    camera = Camera(CallableSource(CountingFrames()), crop=(0, 100, 0, 10), name="front")
    with pytest.raises(ValueError, match=r"crop .* is outside its 48x64 frames"):
        camera.process(np.zeros((48, 64, 3), np.uint8))


def test_an_opencv_device_that_cannot_be_opened_is_named() -> None:
    pytest.importorskip("cv2")
    with pytest.raises(CameraOpenError, match="cannot open device '/dev/video-missing-7'"):
        Camera(OpenCVSource("/dev/video-missing-7")).start()


def test_opencv_reads_a_video_file_then_reports_its_end_as_a_stall(tmp_path: Path) -> None:
    cv2 = pytest.importorskip("cv2")
    path = str(tmp_path / "clip.avi")
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 30, (64, 48))
    if not writer.isOpened():
        pytest.skip("this OpenCV build cannot write MJPG")
    for i in range(10):
        writer.write(np.full((48, 64, 3), (10, 0, 100 + 10 * i), np.uint8))  # BGR: mostly red
    writer.release()
    with Camera(OpenCVSource(path, name="file"), resize=(24, 32), stall_timeout_s=0.3) as camera:
        frame = camera.latest()
        assert frame.image.shape == (24, 32, 3)
        assert frame.image[..., 0].mean() > frame.image[..., 2].mean()  # converted to RGB
        time.sleep(0.5)
        with pytest.raises(CameraStalledError, match="'file'"):
            camera.latest()
    assert camera.frames_delivered == 10


@pytest.mark.skipif(importlib.util.find_spec("pyrealsense2") is not None, reason="installed")
def test_realsense_without_its_sdk_says_what_to_install() -> None:
    with pytest.raises(CameraOpenError, match="pip install pyrealsense2"):
        Camera(RealSenseSource("123456")).start()
