"""Cameras for the robot PC: one `Camera` over OpenCV, RealSense or any frame callable.

Why a reader thread
-------------------
A camera produces frames at its own rate whether or not the control loop reads them, and
OpenCV and the RealSense SDK buffer them: a loop that reads the device on demand gets frames
that are a buffer's length old. `Camera` runs a reader thread that takes every frame as it
comes and keeps only the newest (latest-frame semantics, never a queue of stale frames), so
`latest()` returns at once with the freshest image, its monotonic timestamp (when the reader
got it, ``time.monotonic()``) and its frame index (frames delivered so far, counting from 0).
Each frame is cropped, then resized, on the reader thread.

Dropout
-------
A camera that stops delivering (a USB reset, a loose cable, a hung driver call) is reported,
never waited on forever: `latest()` raises `CameraStalledError`, naming the camera and how
long since its last frame, once that age exceeds `stall_timeout_s`; before the first frame it
waits at most `stall_timeout_s` from `start()`. The reader keeps trying, so a camera that comes
back is used again. A camera that cannot be opened raises `CameraOpenError` naming the device.

Sources (`FrameSource`: ``open()``, ``read() -> RGB uint8 (H, W, 3) | None``, ``close()``)
-----------------------------------------------------------------------------------------
* `OpenCVSource(device)`: ``cv2.VideoCapture`` of a V4L2 index, a /dev path, a URL or a file.
* `RealSenseSource(serial)`: the colour stream of an Intel RealSense through ``pyrealsense2``
  (imported when opened; ``pip install pyrealsense2``).
* `CallableSource(fn)`: any ``fn() -> frame``, e.g. a simulated camera
  ``CallableSource(lambda: robot_client.render("front"), name="front")``.
"""

from __future__ import annotations

import importlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

logger = logging.getLogger(__name__)


class CameraOpenError(RuntimeError):
    """A camera device could not be opened (names the device and what to check)."""


class CameraStalledError(RuntimeError):
    """A camera delivered no frame for longer than its stall timeout."""


class FrameSource(Protocol):
    """A device the reader thread pulls frames from."""

    name: str

    def open(self) -> None: ...

    def read(self) -> np.ndarray | None:
        """The next RGB uint8 (H, W, 3) frame, blocking until it comes; None: none this time."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Frame:
    """One delivered frame."""

    image: np.ndarray
    """RGB uint8 (H, W, 3), cropped and resized."""
    timestamp: float
    """time.monotonic() when the reader thread received it."""
    index: int
    """Frames delivered before this one by this camera."""


# ---------------------------------------------------------------------------- sources
class CallableSource:
    """Frames from any callable; `fps` paces the calls (None: back to back)."""

    def __init__(
        self, fn: Callable[[], np.ndarray], *, name: str = "callable", fps: float | None = 30.0
    ):
        self.fn, self.name = fn, name
        self.period = 1.0 / fps if fps else 0.0
        self._next = 0.0

    def open(self) -> None:
        self._next = time.monotonic()

    def read(self) -> np.ndarray | None:
        if self.period:
            self._next = max(self._next + self.period, time.monotonic() - self.period)
            time.sleep(max(0.0, self._next - time.monotonic()))
        return self.fn()

    def close(self) -> None:
        pass


class OpenCVSource:
    """``cv2.VideoCapture`` of `device` (an index, a /dev/video path, a URL or a video file)."""

    def __init__(
        self,
        device: int | str,
        *,
        width: int | None = None,
        height: int | None = None,
        fps: float | None = None,
        name: str | None = None,
    ) -> None:
        self.device, self.width, self.height, self.fps = device, width, height, fps
        self.name = name or f"opencv:{device}"
        self._cap: Any = None

    def open(self) -> None:
        import cv2

        cap = cv2.VideoCapture(self.device)
        if not cap.isOpened():
            cap.release()
            raise CameraOpenError(
                f"camera {self.name!r}: OpenCV cannot open device {self.device!r}; check that "
                "it exists (`v4l2-ctl --list-devices`), that no other process holds it, and "
                "that this user may read it (group `video`)"
            )
        for prop, value in (
            (cv2.CAP_PROP_FRAME_WIDTH, self.width),
            (cv2.CAP_PROP_FRAME_HEIGHT, self.height),
            (cv2.CAP_PROP_FPS, self.fps),
        ):
            if value:
                cap.set(prop, value)
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # the driver's queue adds latency; keep one
        self._cap = cap

    def read(self) -> np.ndarray | None:
        import cv2

        ok, bgr = self._cap.read()
        if not ok:
            time.sleep(0.01)  # a device that returns at once with nothing must not spin
            return None
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class RealSenseSource:
    """The colour stream of an Intel RealSense (``pyrealsense2``), by serial number."""

    def __init__(
        self,
        serial: str | None = None,
        *,
        width: int = 640,
        height: int = 480,
        fps: int = 30,
        timeout_ms: int = 1000,
        name: str | None = None,
    ) -> None:
        self.serial, self.width, self.height, self.fps = serial, width, height, fps
        self.timeout_ms = timeout_ms
        self.name = name or f"realsense:{serial or 'any'}"
        self._pipeline: Any = None

    def open(self) -> None:
        try:
            rs = importlib.import_module("pyrealsense2")
        except ImportError as exc:
            raise CameraOpenError(
                f"camera {self.name!r}: RealSense needs pyrealsense2 ({exc}); "
                "`pip install pyrealsense2`"
            ) from exc
        self._rs = rs
        config = rs.config()
        if self.serial:
            config.enable_device(self.serial)
        config.enable_stream(rs.stream.color, self.width, self.height, rs.format.rgb8, self.fps)
        pipeline = rs.pipeline()
        try:
            pipeline.start(config)
        except RuntimeError as exc:
            raise CameraOpenError(
                f"camera {self.name!r}: cannot start RealSense {self.serial or '(first found)'} "
                f"at {self.width}x{self.height}@{self.fps} ({exc}); check `rs-enumerate-devices` "
                "for the serial and supported modes, and use a USB 3 port"
            ) from exc
        self._pipeline = pipeline

    def read(self) -> np.ndarray | None:
        try:
            frames = self._pipeline.wait_for_frames(self.timeout_ms)
        except RuntimeError:  # timeout: no frame within timeout_ms
            return None
        color = frames.get_color_frame()
        if not color:
            return None
        return np.asanyarray(color.get_data()).copy()

    def close(self) -> None:
        if self._pipeline is not None:
            self._pipeline.stop()
            self._pipeline = None


# ---------------------------------------------------------------------------- camera
class Camera:
    """A frame source behind a reader thread with latest-frame semantics (module doc).

    `crop` is ``(y0, y1, x0, x1)``: rows y0:y1 and columns x0:x1 of the source frame; `resize`
    is ``(height, width)`` of the delivered frame (after the crop, cv2.INTER_AREA).
    """

    def __init__(
        self,
        source: FrameSource,
        *,
        crop: tuple[int, int, int, int] | None = None,
        resize: tuple[int, int] | None = None,
        stall_timeout_s: float = 1.0,
        name: str | None = None,
    ) -> None:
        if stall_timeout_s <= 0:
            raise ValueError(f"stall_timeout_s={stall_timeout_s}; expected > 0 seconds")
        self.source = source
        self.name = name or source.name
        self.crop, self.resize, self.stall_timeout_s = crop, resize, float(stall_timeout_s)
        self._cond = threading.Condition()
        self._frame: Frame | None = None
        self._count = 0
        self._error: str | None = None
        self._started_at = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle
    def start(self) -> Camera:
        """Open the source (CameraOpenError naming the device) and start the reader thread."""
        if self._thread is not None:
            return self
        self.source.open()
        self._started_at = time.monotonic()
        self._thread = threading.Thread(target=self._loop, name=f"camera-{self.name}", daemon=True)
        self._thread.start()
        return self

    def close(self, timeout_s: float = 1.0) -> None:
        """Stop the reader (at most `timeout_s` for a read in progress) and close the source."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                logger.warning(
                    "camera %s: reader still blocked in read(); left as daemon", self.name
                )
                return
        self.source.close()

    def __enter__(self) -> Camera:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reader thread
    def process(self, image: np.ndarray) -> np.ndarray:
        """Crop, then resize, one RGB uint8 frame (what the reader does to every frame)."""
        image = np.asarray(image)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(
                f"camera {self.name!r} gave a {image.dtype} frame of shape {image.shape}; "
                "expected uint8 (H, W, 3) RGB"
            )
        if self.crop is not None:
            y0, y1, x0, x1 = self.crop
            h, w = image.shape[:2]
            if not (0 <= y0 < y1 <= h and 0 <= x0 < x1 <= w):
                raise ValueError(
                    f"camera {self.name!r}: crop (y0, y1, x0, x1)={self.crop} is outside its "
                    f"{h}x{w} frames; give bounds within the frame"
                )
            image = image[y0:y1, x0:x1]
        if self.resize is not None and image.shape[:2] != tuple(self.resize):
            import cv2

            height, width = self.resize
            image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
        return np.ascontiguousarray(image)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                raw = self.source.read()
                if raw is None:  # nothing this time; a source that says so at once must not spin
                    self._stop.wait(0.001)
                    continue
                image = self.process(raw)
            except Exception as exc:  # report through latest(), keep trying
                self._error = f"{type(exc).__name__}: {exc}"
                logger.warning("camera %s: %s", self.name, self._error)
                self._stop.wait(0.1)
                continue
            with self._cond:
                self._frame = Frame(image, time.monotonic(), self._count)
                self._count += 1
                self._cond.notify_all()

    # -- readers
    def _stalled(self, now: float) -> CameraStalledError:
        if self._frame is None:
            what = f"no frame in {now - self._started_at:.2f} s since start"
        else:
            what = (
                f"no frame for {now - self._frame.timestamp:.2f} s (last index {self._frame.index})"
            )
        error = f"; last error: {self._error}" if self._error else ""
        return CameraStalledError(
            f"camera {self.name!r}: {what} (stall_timeout_s={self.stall_timeout_s}){error}; "
            "check its cable, USB bandwidth and that no other process holds it"
        )

    def latest(self) -> Frame:
        """The newest frame; CameraStalledError if it is older than `stall_timeout_s`."""
        if self._thread is None:
            raise RuntimeError(f"camera {self.name!r} is not started; call start() first")
        with self._cond:
            if self._frame is None:  # the first frame: wait for it, boundedly
                deadline = self._started_at + self.stall_timeout_s
                self._cond.wait_for(
                    lambda: self._frame is not None, max(0.0, deadline - time.monotonic())
                )
            now = time.monotonic()
            frame = self._frame
            if frame is None or now - frame.timestamp > self.stall_timeout_s:
                raise self._stalled(now)
            return frame

    def wait_newer(self, index: int, timeout_s: float | None = None) -> Frame:
        """The first frame with an index above `index`, waiting at most `timeout_s`
        (default `stall_timeout_s`); CameraStalledError when none comes."""
        timeout_s = self.stall_timeout_s if timeout_s is None else timeout_s
        with self._cond:
            ok = self._cond.wait_for(
                lambda: self._frame is not None and self._frame.index > index, timeout_s
            )
            if not ok or self._frame is None:
                raise self._stalled(time.monotonic())
            return self._frame

    @property
    def frames_delivered(self) -> int:
        return self._count
