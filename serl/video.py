"""Evaluation videos: real-time animated GIFs with an episode counter and outcome marks.

Playback is real time by default: every step's frame is shown for the env's control period,
1 / ``metadata["render_fps"]`` (gymnasium's field for the rate of `render` frames, one per
step; the sim tasks set it from their control rate), divided by a speed factor. GIF delays
are whole centiseconds and browsers show delays under 20 ms as 100 ms, so a shorter period
keeps every k-th frame, each shown k periods, and every delay is rounded on the running clock:
the total stays within 10 ms of the episodes' real duration.

A strip above each frame says "episode k/n" (it never covers the scene); once the env reports
success the strip says "success" and the frame gets a green border. After each episode its
last frame is held for `HOLD_S` with the outcome (green "success", red "fail", grey "done"
when the env reports no success): the pause that separates one episode from the next.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from serl.envs import episode_success

logger = logging.getLogger(__name__)

MAX_RECORDED_FRAMES = 2_000
"""Frames kept in memory for a GIF (200 s of a 10 Hz task); later frames are not recorded."""
DEFAULT_FPS = 30.0
"""Frame rate assumed for an env whose metadata gives no render_fps."""
MIN_DELAY_S = 0.02
"""Shortest GIF frame delay browsers honour; shorter periods are subsampled."""
HOLD_S = 0.8
"""How long an episode's last frame is held, with its outcome, before the next episode."""
MIN_SIDE_PX = 160
"""Smaller frames are enlarged (nearest neighbour, integer factor) so the text fits."""
STRIP_PX = 22
"""Height of the text strip above the frame (scaled with the frame)."""
BORDER_PX = 4
"""Width of the outcome border drawn inside the frame."""

GREEN, RED, GREY = (40, 180, 60), (210, 40, 40), (128, 128, 128)


class VideoError(RuntimeError):
    """The env cannot render frames for a video; the message says what is missing."""


@dataclass
class RecordedEpisode:
    frames: list[np.ndarray] = field(default_factory=list)
    """The frame after the reset and after every step."""
    success_from: int | None = None
    """Index of the first frame at which the env reported success."""
    outcome: bool | None = None
    """Success at the episode's end (None: the env reports no success)."""


class EpisodeRecorder(gym.Wrapper):
    """Keeps the rendered frame after every reset and step, per episode, with its success."""

    def __init__(self, env: gym.Env, success_key: str = "") -> None:
        super().__init__(env)
        self.success_key = success_key
        self.episodes: list[RecordedEpisode] = []
        self._recorded = 0

    def _grab(self) -> None:
        if self._recorded >= MAX_RECORDED_FRAMES:
            if self._recorded == MAX_RECORDED_FRAMES:
                logger.warning("video: %d frames recorded, later ones are left out", self._recorded)
                self._recorded += 1
            return
        try:
            frame = self.env.render()
        except gym.error.DependencyNotInstalled as exc:
            raise VideoError(f"cannot render this env for a video: {exc}") from exc
        if frame is None:
            raise VideoError("the env rendered nothing; does it support rgb_array?")
        self.episodes[-1].frames.append(np.asarray(frame, np.uint8)[..., :3])
        self._recorded += 1

    def reset(self, **kwargs: Any) -> Any:
        out = self.env.reset(**kwargs)
        self.episodes.append(RecordedEpisode())
        self._grab()
        return out

    def step(self, action: Any) -> Any:
        out = self.env.step(action)
        _, _, terminated, truncated, info = out
        self._grab()
        episode = self.episodes[-1]
        success = episode_success(info, self.success_key)
        if success and episode.success_from is None:
            episode.success_from = max(len(episode.frames) - 1, 0)
        if terminated or truncated:
            episode.outcome = success
        return out


def frame_period_s(env: gym.Env, fps: float | None = None) -> float:
    """Seconds of real time per rendered frame: 1 / `fps` if given, else the env's render_fps."""
    if fps is not None:
        if fps <= 0:
            raise ValueError(f"fps={fps}; give a positive frame rate")
        return 1.0 / fps
    rate = (env.metadata or {}).get("render_fps")
    if not rate:
        logger.warning("env metadata has no render_fps; the video assumes %g fps", DEFAULT_FPS)
        rate = DEFAULT_FPS
    return 1.0 / float(rate)


def _scale(frame: np.ndarray) -> np.ndarray:
    factor = math.ceil(MIN_SIDE_PX / min(frame.shape[:2]))
    return frame.repeat(factor, 0).repeat(factor, 1) if factor > 1 else frame


def annotate(frame: np.ndarray, episode: int, episodes: int, status: bool | str) -> Any:
    """The frame under a strip reading "episode k/n" and, for `status` True / False / "done",
    "success" (green border) / "fail" (red border) / "done" (grey border); "" marks nothing."""
    from PIL import Image, ImageDraw, ImageFont

    frame = _scale(frame)
    height, width = frame.shape[:2]
    scale = max(1.0, width / 320)
    strip = round(STRIP_PX * scale)
    canvas = Image.new("RGB", (width, height + strip), (0, 0, 0))
    canvas.paste(Image.fromarray(frame), (0, strip))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=round(14 * scale))
    draw.text((4 * scale, 3 * scale), f"episode {episode}/{episodes}", fill="white", font=font)
    label, colour = {True: ("success", GREEN), False: ("fail", RED), "done": ("done", GREY)}.get(
        status, ("", None)
    )
    if label:
        right = width - 4 * scale
        draw.text((right, 3 * scale), label, fill=colour, font=font, anchor="ra")
        border = round(BORDER_PX * scale)
        draw.rectangle((0, strip, width - 1, height + strip - 1), outline=colour, width=border)
    return canvas


def _delays_ms(count: int, period_s: float) -> list[int]:
    """Delays of `count` frames of `period_s` each, rounded to 10 ms on the running clock."""
    ticks = [round(i * period_s * 100) for i in range(count + 1)]
    return [10 * (b - a) for a, b in zip(ticks, ticks[1:], strict=False)]


def gif_frames(
    episodes: list[RecordedEpisode], period_s: float, speed: float = 1.0
) -> list[tuple[Any, int]]:
    """(image, delay ms) of every GIF frame: each episode in real time / `speed`, then held."""
    if speed <= 0:
        raise ValueError(f"speed={speed}; give a positive playback speed (1 = real time)")
    shown = period_s / speed
    stride = max(1, math.ceil(MIN_DELAY_S / shown - 1e-9))
    recorded = [e for e in episodes if e.frames]
    out = []
    for k, episode in enumerate(recorded, start=1):
        keep = list(range(0, len(episode.frames), stride))
        if len(keep) > 1 and len(episode.frames) - keep[-1] < stride:
            keep.pop()  # a tail shorter than MIN_DELAY_S joins the frame before (and the hold)
        ends = [*keep[1:], len(episode.frames)]
        clock = _delays_ms(len(episode.frames), shown)
        for start, end in zip(keep, ends, strict=True):
            success = episode.success_from is not None and end - 1 >= episode.success_from
            image = annotate(episode.frames[start], k, len(recorded), True if success else "")
            out.append((image, sum(clock[start:end])))
        final = "done" if episode.outcome is None else episode.outcome
        out.append((annotate(episode.frames[-1], k, len(recorded), final), round(HOLD_S * 1000)))
    return out


def save_gif(
    episodes: list[RecordedEpisode], path: str | Path, period_s: float, speed: float = 1.0
) -> Path:
    """Write the episodes as a looping GIF (`gif_frames`)."""
    frames = gif_frames(episodes, period_s, speed)
    if not frames:
        raise VideoError("no frames were recorded; did any episode run?")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    images, delays = zip(*frames, strict=True)
    images[0].save(
        path, save_all=True, append_images=list(images[1:]), duration=list(delays), loop=0
    )
    logger.info("wrote %d frames to %s", len(images), path)
    return path
