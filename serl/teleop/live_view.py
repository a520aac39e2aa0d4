"""What the person recording demonstrations sees: the camera frames and a one-line status.

Without a view an operator drives blind. `LiveView.open` picks where the frames go:

* an OpenCV window when a display exists (``DISPLAY`` or ``WAYLAND_DISPLAY`` set and OpenCV's
  highgui opens a window there); keys still go to the terminal, so keep its focus;
* otherwise a PNG file (``<out>/live.png`` for `serl record-demos`), replaced atomically
  (temp file + ``os.replace``) so an image viewer that reloads it never reads half a file.

The frames are the observation's camera images (uint8 (H, W, 3) entries of a dict
observation) side by side, else the env's ``render()`` frame when it has one; a task with
neither shows only the status line. Frames go out at most `hz` times a second (4 by default:
enough to steer by, and a PNG of a few 64x64 views takes about a millisecond to encode, so the
10 Hz control loop does not notice). Small frames are scaled up by a whole factor (nearest
neighbour) to at least `MIN_HEIGHT_PX` rows, so a 64x64 camera is not a speck.

The status line (episode k/n, step, reward, distance to the goal when the env reports
``info["goal_distance_m"]`` and which way along x, y, z with ``info["goal_offset_m"]``, the
env's success flag, the mark so far) is rewritten in place on
a terminal; `say` prints a message on a line of its own (prompts, what became of an episode).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import numpy as np

logger = logging.getLogger(__name__)

MIN_HEIGHT_PX = 256
"""Frames shorter than this are scaled up by a whole factor (a 64-row camera: 4x)."""
WINDOW_TITLE = "serl record-demos"

Frame = np.ndarray
"""A uint8 (H, W, 3) RGB image."""


def camera_frames(obs: Any) -> list[Frame]:
    """The camera images of an observation: its uint8 (H, W, 3) entries, in key order."""
    if not isinstance(obs, dict):
        return []
    return [
        v
        for v in obs.values()
        if isinstance(v, np.ndarray) and v.dtype == np.uint8 and v.ndim == 3 and v.shape[2] == 3
    ]


def compose(frames: list[Frame]) -> Frame:
    """`frames` side by side (padded to the tallest), scaled up to at least MIN_HEIGHT_PX."""
    height = max(f.shape[0] for f in frames)
    padded = [np.pad(f, ((0, height - f.shape[0]), (0, 0), (0, 0))) for f in frames]
    image = np.concatenate(padded, axis=1)
    scale = max(1, -(-MIN_HEIGHT_PX // height))
    return np.repeat(np.repeat(image, scale, axis=0), scale, axis=1) if scale > 1 else image


def status_line(
    label: str, step: int, reward: float, info: dict[str, Any], mark: bool | None
) -> str:
    """One line of the episode's state: `label` (episode k/n), step, reward, the distance and
    direction to the goal and the success flag when the env reports them, the person's mark."""
    parts = [label, f"step {step}", f"reward {reward:.2f}"]
    if "goal_distance_m" in info:
        away = f"goal {float(info['goal_distance_m']):.3f} m away"
        if "goal_offset_m" in info:
            x, y, z = np.asarray(info["goal_offset_m"], dtype=float).reshape(3)
            away += f" (x {x:+.3f} y {y:+.3f} z {z:+.3f})"
        parts.append(away)
    if "success" in info:
        parts.append(f"env success {'yes' if info['success'] else 'no'}")
    parts.append(f"mark {'none' if mark is None else 'success' if mark else 'failure'}")
    return " | ".join(parts)


def display_available() -> bool:
    """Whether an OpenCV window can be shown (a display is set and highgui opens on it)."""
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False
    import cv2

    try:
        cv2.namedWindow(WINDOW_TITLE, cv2.WINDOW_NORMAL)
    except cv2.error as exc:  # a headless OpenCV build, or a display that refuses us
        logger.info("no OpenCV window (%s); writing the live view to a file", exc)
        return False
    return True


class LiveView:
    """Camera frames to a window or a PNG, and a status line to `stream` (module doc).

    Args:
        png: file the frames are written to; None shows them in an OpenCV window.
        stream: where the status line and messages go (the terminal: stderr).
        hz: most frames shown per second.
        clock: seconds, monotonic (tests pass their own).
    """

    def __init__(
        self,
        png: Path | None,
        stream: TextIO,
        *,
        hz: float = 4.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if hz <= 0:
            raise ValueError(f"live view rate {hz} Hz must be > 0")
        self.png, self.stream, self.period_s, self.clock = png, stream, 1.0 / hz, clock
        self._shown_at = -np.inf
        self._status_open = False
        self._render_failed = False
        self.frames_shown = 0

    @classmethod
    def open(cls, png: Path, stream: TextIO, *, hz: float = 4.0) -> LiveView:
        """A window where a display exists, else `png`."""
        return cls(None if display_available() else png, stream, hz=hz)

    def describe(self) -> str:
        """Where the operator looks, for the startup message."""
        if self.png is None:
            return f"live view: the OpenCV window {WINDOW_TITLE!r}"
        rate = 1.0 / self.period_s
        return (
            f"live view: {self.png} (rewritten {rate:g} times a second: open it in an image "
            "viewer that reloads, e.g. `eog` or `feh -R 0.5`), and the status line below"
        )

    def show(self, obs: Any, status: str, render: Callable[[], Frame | None] | None = None) -> None:
        """Show `obs`'s cameras (else `render()`'s frame) and `status`, unless the last frame
        went out less than 1 / hz ago."""
        now = self.clock()
        if now - self._shown_at < self.period_s:
            return
        self._shown_at = now
        frames = camera_frames(obs) or self._rendered(render)
        if frames:
            self._show_frame(compose(frames))
            self.frames_shown += 1
        if self.stream.isatty():
            self.stream.write(f"\r{status}\x1b[K")
            self.stream.flush()
            self._status_open = True

    def say(self, message: str) -> None:
        """`message` on a line of its own, below the status line."""
        if self._status_open:
            self.stream.write("\r\x1b[K")
            self._status_open = False
        self.stream.write(message + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self._status_open:
            self.stream.write("\n")
            self._status_open = False
        if self.png is None:
            import cv2

            cv2.destroyWindow(WINDOW_TITLE)

    def _rendered(self, render: Callable[[], Frame | None] | None) -> list[Frame]:
        if render is None or self._render_failed:
            return []
        try:
            frame = render()
        except Exception as exc:  # e.g. a gymnasium env whose renderer is not installed
            logger.warning("the env cannot render (%s); the live view shows the status only", exc)
            self._render_failed = True
            return []
        return camera_frames({"frame": np.asarray(frame)}) if frame is not None else []

    def _show_frame(self, image: Frame) -> None:
        import cv2

        bgr = np.ascontiguousarray(image[..., ::-1])
        if self.png is None:
            cv2.imshow(WINDOW_TITLE, bgr)
            cv2.waitKey(1)  # lets highgui draw; keys are read from the terminal
            return
        ok, encoded = cv2.imencode(".png", bgr)
        if not ok:
            raise RuntimeError(f"OpenCV could not encode a {image.shape} frame as PNG")
        tmp = self.png.with_name(self.png.name + ".tmp")
        tmp.write_bytes(encoded.tobytes())
        os.replace(tmp, self.png)
