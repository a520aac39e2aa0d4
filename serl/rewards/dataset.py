"""Labelled frame sets: what a reward classifier learns from.

A `FrameSet` holds, for N time steps, one uint8 frame (H, W, 3) per view, a success label and
the episode each step came from. Train/validation splits are drawn by episode, never by frame:
neighbouring frames of one episode are near-copies, and a split by frame would calibrate the
threshold on frames the classifier has all but seen.

File layout of a frame set (`.npz`, written atomically, read with ``allow_pickle=False``):
``frames/<view>`` (N, H, W, 3) uint8, ``labels`` (N,) bool, ``episodes`` (N,) int64, ``meta``
a JSON string (format version, views, where the frames came from).

Episode datasets in the layout of ``python -m sim.collect`` (``obs/<view>`` rows, per-step
``success``, ``episode_lengths``) can be added: the observation after step t of an episode is
labelled with that step's ``success``; reset observations carry no label and are skipped.
Replay-buffer files (`ReplayBuffer.save`) can be added too: the next observation of each
stored transition is labelled with ``extras/success`` when the buffer recorded it, else with
``terminated`` (success ends the episode in SERL-style tasks; do not add buffers of envs that
terminate for other reasons). So can dataset directories (`serl record-demos`, the Minari-style
layout of `serl.data.datasets`): the observation after each step is labelled with that step's
``infos/success`` (else ``terminations``), and an episode's last one also with its success
mark, which a human may give where the env reports none.
"""

from __future__ import annotations

import io
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from serl.checkpoint import atomic_write_bytes
from serl.data.datasets import iter_episodes
from serl.wrappers import resize_image

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
IMBALANCE_RATIO = 4.0
"""Warn when one class has more than this many frames per frame of the other."""


@dataclass
class FrameSet:
    frames: dict[str, np.ndarray]
    """{view: (N, H, W, 3) uint8}."""
    labels: np.ndarray
    """(N,) bool: success."""
    episodes: np.ndarray
    """(N,) int64: the episode of each frame (splits are drawn by episode)."""

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def views(self) -> tuple[str, ...]:
        return tuple(sorted(self.frames))

    def counts(self) -> tuple[int, int]:
        """(positives, negatives)."""
        positives = int(np.sum(self.labels))
        return positives, len(self) - positives

    def subset(self, index: np.ndarray) -> FrameSet:
        return FrameSet(
            {k: v[index] for k, v in self.frames.items()}, self.labels[index], self.episodes[index]
        )

    def split(self, val_fraction: float, seed: int) -> tuple[FrameSet, FrameSet]:
        """(train, validation) by whole episodes, with positives in both where possible."""
        rng = np.random.default_rng(seed)
        ids = np.unique(self.episodes)
        has_positive = np.array([self.labels[self.episodes == e].any() for e in ids])
        val_ids = []
        for group in (ids[has_positive], ids[~has_positive]):  # stratify by episode outcome
            take = int(round(val_fraction * len(group)))
            if val_fraction > 0 and len(group) > 1:
                take = min(max(take, 1), len(group) - 1)
            val_ids.extend(rng.permutation(group)[:take])
        in_val = np.isin(self.episodes, val_ids)
        return self.subset(np.flatnonzero(~in_val)), self.subset(np.flatnonzero(in_val))

    def save(self, path: str | Path, source: str = "") -> Path:
        path = Path(path)
        meta = {"format_version": FORMAT_VERSION, "views": list(self.views), "source": source}
        buffer = io.BytesIO()
        np.savez_compressed(
            buffer,
            **{f"frames/{k}": v for k, v in self.frames.items()},
            labels=self.labels,
            episodes=self.episodes,
            meta=np.array(json.dumps(meta)),
        )
        atomic_write_bytes(path, buffer.getvalue())
        return path


def empty(views: tuple[str, ...], size: int) -> FrameSet:
    frames = {v: np.zeros((0, size, size, 3), np.uint8) for v in views}
    return FrameSet(frames, np.zeros(0, bool), np.zeros(0, np.int64))


def concatenate(sets: list[FrameSet]) -> FrameSet:
    """One frame set; episode ids are renumbered so that the parts never share one."""
    if not sets:
        raise ValueError("no frame sets to concatenate")
    views = sets[0].views
    for s in sets:
        if s.views != views:
            raise ValueError(f"frame sets have views {views} and {s.views}; use the same --views")
    episodes, offset = [], 0
    for s in sets:
        _, renumbered = np.unique(s.episodes, return_inverse=True)
        episodes.append(renumbered.astype(np.int64) + offset)
        offset += int(renumbered.max()) + 1 if len(s) else 0
    return FrameSet(
        {v: np.concatenate([s.frames[v] for s in sets]) for v in views},
        np.concatenate([s.labels for s in sets]).astype(bool),
        np.concatenate(episodes),
    )


def resize_frames(frames: np.ndarray, size: int) -> np.ndarray:
    """(N, H, W, 3) uint8 -> (N, size, size, 3); no copy when already that size."""
    if frames.shape[1:3] == (size, size):
        return frames
    return resize_image(frames, size, size)


def load_frames(path: str | Path, views: tuple[str, ...], size: int | None) -> FrameSet:
    """A frame set, episode dataset or replay buffer (see the module docstring), its frames
    resized to `size` x `size` (None: as stored)."""
    path = Path(path)
    if path.is_dir():
        return _dataset_frames(path, views, size)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such frame set or dataset file")
    with np.load(path, allow_pickle=False) as data:
        arrays: dict[str, Any] = {k: data[k] for k in data.files}
    if "labels" in arrays:
        prefix = "frames/"
        labels, episodes = arrays["labels"].astype(bool), arrays["episodes"].astype(np.int64)
        keep = np.arange(len(labels))
    elif "success" in arrays and "episode_lengths" in arrays:
        prefix = "obs/"
        labels, episodes, keep = _episode_labels(arrays)
    elif "next_index" in arrays and "valid" in arrays:
        prefix = "obs/"
        labels, episodes, keep = _replay_labels(arrays)
    else:
        raise ValueError(
            f"{path}: neither a frame set (frames/<view>, labels), an episode dataset "
            "(obs/<view>, success, episode_lengths) nor a replay buffer (obs/<view>, "
            f"next_index, valid); it has keys {sorted(arrays)[:8]}"
        )
    missing = [v for v in views if prefix + v not in arrays]
    if missing:
        have = sorted(k[len(prefix) :] for k in arrays if k.startswith(prefix))
        raise ValueError(
            f"{path}: no frames for view(s) {missing}; it has {have} (record pixel "
            "observations, e.g. `python -m sim.collect --obs-mode pixels`, or pick --views)"
        )
    frames = {v: _sized(arrays[prefix + v][keep], size) for v in views}
    return FrameSet(frames, labels, episodes)


def _sized(frames: np.ndarray, size: int | None) -> np.ndarray:
    return frames if size is None else resize_frames(frames, size)


def _dataset_frames(path: Path, views: tuple[str, ...], size: int | None) -> FrameSet:
    """The post-step observations of a dataset directory, labelled as the module docstring says."""
    frames: dict[str, list[np.ndarray]] = {v: [] for v in views}
    labels, episodes = [], []
    for episode in iter_episodes(path):
        obs = episode.observations
        have = sorted(obs) if isinstance(obs, dict) else []
        missing = [v for v in views if v not in have]
        if missing:
            raise ValueError(
                f"{path}: episode {episode.id} has no frames for view(s) {missing}; its "
                f"observation keys are {have} (pick --views among the camera keys)"
            )
        for v in views:
            frames[v].append(_sized(obs[v][1:], size))
        success = episode.infos.get("success")
        step = np.array(success[1:] if success is not None else episode.terminations, bool)
        step[-1:] |= episode.success
        labels.append(step)
        episodes.append(np.full(len(episode), episode.id, np.int64))
    if not labels:
        raise ValueError(f"{path}: the dataset holds no complete episode")
    return FrameSet(
        {v: np.concatenate(f) for v, f in frames.items()},
        np.concatenate(labels),
        np.concatenate(episodes),
    )


def _episode_labels(arrays: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(labels, episode ids, observation rows) of the post-step observations of each episode."""
    rows, episode_ids, o = [], [], 0
    for i, length in enumerate(arrays["episode_lengths"].astype(int)):
        rows.append(np.arange(o + 1, o + length + 1))
        episode_ids.append(np.full(length, i, np.int64))
        o += length + 1
    keep = np.concatenate(rows) if rows else np.zeros(0, int)
    episodes = np.concatenate(episode_ids) if episode_ids else np.zeros(0, np.int64)
    return arrays["success"].astype(bool), episodes, keep


def _replay_labels(arrays: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(labels, episode ids, observation slots) of the next observations of a saved buffer."""
    slots = np.flatnonzero(arrays["valid"])
    success = arrays.get("extras/success", arrays["terminated"])
    labels = np.asarray(success[slots]).reshape(len(slots), -1)[:, 0].astype(bool)
    return labels, arrays["episode_id"][slots].astype(np.int64), arrays["next_index"][slots]


def balance_warning(positives: int, negatives: int) -> str | None:
    """A warning when the classes are badly unbalanced (or one is missing), else None."""
    if positives == 0 or negatives == 0:
        missing = "positive (success)" if positives == 0 else "negative (failure)"
        return f"no {missing} frames yet: the classifier cannot learn without both classes"
    ratio = max(positives, negatives) / min(positives, negatives)
    if ratio > IMBALANCE_RATIO:
        few = "positives" if positives < negatives else "negatives"
        return (
            f"classes are unbalanced ({positives} positives, {negatives} negatives, "
            f"{ratio:.1f}:1); record more {few} — training rebalances, but it cannot invent "
            "variety"
        )
    return None
