"""Episode datasets on disk: demonstrations and offline data in a Minari-style HDF5 layout.

Why this layout
---------------
Minari (the Farama successor of D4RL) stores a dataset as ``<dataset>/data/main_data.hdf5``
with one group ``episode_{id}`` per episode holding ``observations`` (T + 1 rows: the reset
observation and every next observation; a group of datasets for Dict observations),
``actions``, ``rewards``, ``terminations``, ``truncations`` (T rows) and an ``infos`` group, the
episode's ``id``, ``total_steps`` and ``seed`` as attributes, and the dataset's metadata in
``<dataset>/data/metadata.json``. We keep exactly those names, so a D4RL-style dataset a user
has converted to Minari reads here, and ours read with h5py the way Minari's do.

One HDF5 file is not crash safe: HDF5 has no journal, and a process killed while appending
can leave the whole file unreadable. So each episode is its own file, written whole:

    PATH/data/episodes/episode_{id:06d}.hdf5   one group ``episode_{id}`` (the layout above),
                                               written to a temp file, fsynced, os.replace'd
    PATH/data/main_data.hdf5                   Minari's entry point: ``episode_{id}`` are HDF5
                                               external links into the episode files
    PATH/data/metadata.json                    dataset_id, env id, totals, user metadata

The episode files are the truth: `load_dataset` reads them, and the index and metadata are
rebuilt (atomically, after every episode) from them. Whatever instant a writer is killed at,
even with ``kill -9`` mid-episode, every episode whose `append_episode` returned is intact;
an episode in progress leaves at most a temp file, which readers ignore and the next writer
deletes when it opens the dataset (`recover_dataset`), and an index one episode behind, which
whoever opens the dataset next rebuilds.

Beyond Minari's fields an episode carries ``success`` (bool) and ``source`` (a transition
source of `serl.data.tags`, "demo" for teleoperated demonstrations) as group attributes, and
``infos`` may hold any per-step arrays (T + 1 rows, Minari's convention: the reset info first).
No pickle: arrays, JSON strings and scalars only.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import h5py
import numpy as np

from serl.data.tags import SOURCES, source_code

logger = logging.getLogger(__name__)

FORMAT = "serl-minari-hdf5/1"
"""Layout version written to metadata.json (``data_format``)."""

Observations = Union[np.ndarray, dict[str, np.ndarray]]
"""T + 1 observations: one array, or one array per key of a Dict observation."""

_EPISODE_FILE = re.compile(r"^episode_(\d+)\.hdf5$")


class DatasetError(ValueError):
    """A dataset path or an episode is malformed (names the file and what is wrong)."""


@dataclass
class Episode:
    """One episode: T steps, T + 1 observations (the reset observation first)."""

    observations: Observations
    """(T + 1, ...) array, or a dict of them (camera frames stay uint8)."""
    actions: np.ndarray
    """(T, action_dim) actions, the executed ones (the human's where one intervened)."""
    rewards: np.ndarray
    """(T,) rewards."""
    terminations: np.ndarray
    """(T,) bool, the env's `terminated` after each step."""
    truncations: np.ndarray
    """(T,) bool, the env's `truncated` after each step (time limit is not termination)."""
    success: bool = False
    """Whether the episode succeeded (marked by the human or the env's info["success"])."""
    source: str = "demo"
    """Transition source of its steps (`serl.data.tags.SOURCES`)."""
    seed: int | None = None
    """The seed its env.reset got, if any."""
    infos: dict[str, np.ndarray] = field(default_factory=dict)
    """Per-step info arrays with T + 1 rows (Minari's convention: the reset info first)."""
    id: int = -1
    """Its id in a dataset (set by `append_episode` and the loaders)."""

    def __len__(self) -> int:
        return int(np.shape(self.actions)[0])

    def observation(self, index: int | slice) -> Any:
        """Row(s) `index` of the observations (a dict for Dict observations)."""
        if isinstance(self.observations, dict):
            return {k: v[index] for k, v in self.observations.items()}
        return self.observations[index]

    def validate(self) -> None:
        """DatasetError naming the field when lengths, dtypes or the source are inconsistent."""
        n = len(self)
        arrays = self.observations if isinstance(self.observations, dict) else {"": None}
        for key in arrays:
            obs = self.observations[key] if key else self.observations
            name = f"observations[{key!r}]" if key else "observations"
            if np.shape(obs)[:1] != (n + 1,):
                raise DatasetError(
                    f"{name} has {np.shape(obs)[:1]} rows for {n} actions; an episode stores "
                    "T + 1 observations (the reset observation, then one after each step)"
                )
        for name in ("rewards", "terminations", "truncations"):
            if np.shape(getattr(self, name)) != (n,):
                raise DatasetError(f"{name} has shape {np.shape(getattr(self, name))}; want ({n},)")
        for name, value in self.infos.items():
            if np.shape(value)[:1] != (n + 1,):
                raise DatasetError(f"infos[{name!r}] has {np.shape(value)[:1]} rows; want {n + 1}")
        source_code(self.source)


@dataclass
class Dataset:
    """A loaded dataset: its metadata and its episodes in id order."""

    path: Path
    metadata: dict[str, Any]
    episodes: list[Episode]

    @property
    def total_steps(self) -> int:
        return sum(len(e) for e in self.episodes)

    @property
    def success_rate(self) -> float:
        return float(np.mean([e.success for e in self.episodes])) if self.episodes else 0.0


# ---------------------------------------------------------------------------- paths
def _data_dir(path: str | os.PathLike[str]) -> Path:
    return Path(path) / "data"


def _episode_dir(path: str | os.PathLike[str]) -> Path:
    return _data_dir(path) / "episodes"


def episode_ids(path: str | os.PathLike[str]) -> list[int]:
    """Ids of the complete episodes stored at `path`, ascending (temp files are ignored)."""
    folder = _episode_dir(path)
    if not folder.is_dir():
        return []
    ids = [int(m.group(1)) for p in folder.iterdir() if (m := _EPISODE_FILE.match(p.name))]
    return sorted(ids)


def _episode_path(path: str | os.PathLike[str], episode_id: int) -> Path:
    return _episode_dir(path) / f"episode_{episode_id:06d}.hdf5"


# ---------------------------------------------------------------------------- untrusted files
def open_hdf5(file: Path, root: Path) -> h5py.File:
    """Open an HDF5 file of a dataset rooted at `root` for reading, after checking that
    nothing in it reads data from outside `root`.

    HDF5 follows an external link, an external raw-data file or a virtual dataset's sources
    wherever they point, so a dataset someone sent could make the loader read (and put into a
    replay buffer, a log, an error message) any file this user can read. Refused, with
    DatasetError: external links that are absolute or lead out of `root` (or to no file
    there, where HDF5 would go on to search the working directory), datasets with external
    storage or a virtual layout. External links to files inside `root` (the links of
    main_data.hdf5) are allowed, and those files are checked the same way.
    """
    _check_hdf5(file.resolve(), root.resolve(), set())
    return h5py.File(file, "r")


def _check_hdf5(file: Path, root: Path, seen: set[Path]) -> None:
    if file in seen:
        return
    seen.add(file)
    refused: list[str] = []
    inside: list[Path] = []
    try:
        with h5py.File(file, "r") as fh:

            def visit(name: str, link: h5py.HardLink | h5py.SoftLink | h5py.ExternalLink) -> None:
                if isinstance(link, h5py.ExternalLink):
                    target = Path(link.filename)
                    resolved = (target if target.is_absolute() else file.parent / target).resolve()
                    if resolved.is_relative_to(root) and resolved.is_file():
                        inside.append(resolved)
                    else:
                        refused.append(f"{name} links to {link.filename}")
                elif isinstance(link, h5py.HardLink):
                    node = fh[name]
                    if isinstance(node, h5py.Dataset) and (node.external or node.is_virtual):
                        refused.append(f"{name} keeps its data in other files")

            fh.visititems_links(visit)
    except OSError as exc:
        raise DatasetError(f"{file}: unreadable HDF5 file ({exc})") from exc
    if refused:
        raise DatasetError(
            f"{file}: refused, it would read data from outside the dataset {root}: "
            + "; ".join(refused)
        )
    for target in inside:
        _check_hdf5(target, root, seen)


# ---------------------------------------------------------------------------- writing
@contextlib.contextmanager
def _atomic(target: Path, suffix: str = ".tmp") -> Iterator[Path]:
    """A temp path beside `target`; on success it is fsynced and os.replace'd onto `target`."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a dataset is for sharing
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _write_arrays(group: h5py.Group, name: str, value: Observations) -> None:
    if isinstance(value, Mapping):
        sub = group.create_group(name)
        for key, arr in value.items():
            _write_arrays(sub, key, arr)
        return
    arr = np.asarray(value)
    # Frames compress well and are read whole; small vectors are not worth a filter.
    compression = "gzip" if arr.dtype == np.uint8 and arr.ndim >= 3 else None
    chunks = (1, *arr.shape[1:]) if compression else None
    group.create_dataset(name, data=arr, compression=compression, chunks=chunks)


def _write_episode_file(target: Path, episode: Episode) -> None:
    with h5py.File(target, "w") as fh:
        group = fh.create_group(f"episode_{episode.id}")
        group.attrs["id"] = episode.id
        group.attrs["total_steps"] = len(episode)
        group.attrs["seed"] = "None" if episode.seed is None else int(episode.seed)
        group.attrs["success"] = bool(episode.success)
        group.attrs["source"] = episode.source
        _write_arrays(group, "observations", episode.observations)
        group.create_dataset("actions", data=np.asarray(episode.actions))
        group.create_dataset("rewards", data=np.asarray(episode.rewards))
        group.create_dataset("terminations", data=np.asarray(episode.terminations, dtype=bool))
        group.create_dataset("truncations", data=np.asarray(episode.truncations, dtype=bool))
        infos = group.create_group("infos")
        for key, value in episode.infos.items():
            _write_arrays(infos, key, value)


def _read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    file = _data_dir(path) / "metadata.json"
    if not file.exists():
        return {}
    try:
        return json.loads(file.read_text())
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{file}: not valid JSON ({exc}); delete it, it is rebuilt") from exc


def _rebuild_index(path: str | os.PathLike[str], metadata: Mapping[str, Any]) -> None:
    """Rewrite main_data.hdf5 (external links) and metadata.json from the episode files."""
    ids = episode_ids(path)
    steps = 0
    for i in ids:
        with open_hdf5(_episode_path(path, i), Path(path)) as fh:
            steps += int(fh[f"episode_{i}"].attrs["total_steps"])
    data = _data_dir(path)
    with _atomic(data / "main_data.hdf5") as tmp, h5py.File(tmp, "w") as fh:
        for i in ids:
            rel = os.path.join("episodes", _episode_path(path, i).name)
            fh[f"episode_{i}"] = h5py.ExternalLink(rel, f"/episode_{i}")
        fh.attrs["total_episodes"] = len(ids)
        fh.attrs["total_steps"] = steps
    meta = {**metadata, "total_episodes": len(ids), "total_steps": steps, "data_format": FORMAT}
    with _atomic(data / "metadata.json") as tmp:
        tmp.write_text(json.dumps(meta, indent=2, sort_keys=True))


def remove_stale_temp_files(path: str | os.PathLike[str]) -> int:
    """Delete temp files a killed writer left at `path`; returns how many."""
    removed = 0
    for folder in (_data_dir(path), _episode_dir(path)):
        if folder.is_dir():
            for p in folder.glob(".*.tmp"):
                p.unlink(missing_ok=True)
                removed += 1
    return removed


def _index_lags(path: str | os.PathLike[str], ids: list[int]) -> bool:
    """Whether main_data.hdf5 or metadata.json does not list exactly the episode files (a
    writer killed between an episode's file and the index)."""
    main = _data_dir(path) / "main_data.hdf5"
    if not main.is_file():
        return True
    try:
        with h5py.File(main, "r") as fh:  # link names only: nothing is followed
            linked = set(fh.keys())
    except OSError:
        return True
    total = _read_metadata(path).get("total_episodes")
    return linked != {f"episode_{i}" for i in ids} or total != len(ids)


def recover_dataset(path: str | os.PathLike[str], *, writer: bool = True) -> None:
    """Repair what a writer killed mid-append left at `path`, when the dataset is opened.

    The index (main_data.hdf5, metadata.json) is rebuilt from the episode files when it
    lags them, so Minari readers see every complete episode without waiting for the next
    append. A `writer` (one per dataset at a time) also deletes the temp files of the killed
    write; a reader never does, since they may be a running writer's. A reader that may not
    write the dataset leaves the index as it is (the episode files are the truth either way).
    """
    if writer:
        stale = remove_stale_temp_files(path)
        if stale:
            logger.info("removed %d temp file(s) of an interrupted write in %s", stale, path)
    ids = episode_ids(path)
    if not ids or not _index_lags(path, ids):
        return
    try:
        _rebuild_index(path, _read_metadata(path))
    except OSError as exc:
        logger.warning("%s: its index lags its episode files and cannot be rebuilt (%s)", path, exc)
        return
    logger.info("rebuilt the index of %s from its %d episode files", path, len(ids))


def append_episode(
    path: str | os.PathLike[str], episode: Episode, metadata: Mapping[str, Any] | None = None
) -> int:
    """Add `episode` to the dataset at `path` (created if missing); returns its id.

    The episode file appears whole or not at all (temp file + os.replace). `metadata` (JSON
    values, e.g. ``{"env_id": ..., "dataset_id": ...}``) is merged into metadata.json. One
    writer per dataset at a time.
    """
    episode.validate()
    _episode_dir(path).mkdir(parents=True, exist_ok=True)
    meta = {**_read_metadata(path), **(metadata or {})}
    ids = episode_ids(path)
    episode.id = ids[-1] + 1 if ids else 0
    with _atomic(_episode_path(path, episode.id)) as tmp:
        _write_episode_file(tmp, episode)
    _rebuild_index(path, meta)
    logger.debug("episode %d (%d steps) -> %s", episode.id, len(episode), path)
    return episode.id


# ---------------------------------------------------------------------------- reading
def _read_arrays(node: h5py.Group | h5py.Dataset) -> Observations:
    if isinstance(node, h5py.Dataset):
        return node[()]
    return {key: _read_arrays(node[key]) for key in node}


def _decode(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


def read_episode(path: str | os.PathLike[str], episode_id: int) -> Episode:
    """Episode `episode_id` of the dataset at `path`."""
    file = _episode_path(path, episode_id)
    try:
        with open_hdf5(file, Path(path)) as fh:
            group = fh[f"episode_{episode_id}"]
            seed = _decode(group.attrs.get("seed", "None"))
            infos = group["infos"] if "infos" in group else {}
            return Episode(
                observations=_read_arrays(group["observations"]),
                actions=group["actions"][()],
                rewards=group["rewards"][()],
                terminations=group["terminations"][()],
                truncations=group["truncations"][()],
                success=bool(group.attrs.get("success", False)),
                source=str(_decode(group.attrs.get("source", "demo"))),
                seed=None if seed == "None" else int(seed),
                infos={key: _read_arrays(infos[key]) for key in infos},
                id=episode_id,
            )
    except (OSError, KeyError) as exc:
        raise DatasetError(f"{file}: unreadable episode ({exc})") from exc


def check_dataset(path: str | os.PathLike[str]) -> None:
    """Raise DatasetError, naming the command that makes or converts one, unless `path` is a
    dataset directory; reads no episode (`serl train` checks --prior-data before it starts)."""
    path = Path(path)
    convert = "python -m serl.data.importers"
    if path.is_file() and path.suffix == ".npz":
        raise DatasetError(
            f"{path} is an .npz file, not a dataset directory; if `python -m sim.collect` wrote "
            f"it, convert it with `{convert} npz {path} {path.with_suffix('')}` and pass "
            f"{path.with_suffix('')}"
        )
    if not _data_dir(path).is_dir():
        raise DatasetError(
            f"{path}: no dataset here (expected {path}/data/episodes/); record one with "
            f"`serl record-demos --out PATH`, or convert a sim.collect .npz with `{convert} npz "
            "SRC DST`"
        )


def iter_episodes(path: str | os.PathLike[str]) -> Iterator[Episode]:
    """The episodes at `path` in id order, read one at a time (large image datasets)."""
    check_dataset(path)
    for episode_id in episode_ids(path):
        yield read_episode(path, episode_id)


def load_dataset(path: str | os.PathLike[str]) -> Dataset:
    """All of the dataset at `path`: metadata and every complete episode (its index is
    repaired first if a killed writer left it behind, `recover_dataset`)."""
    if _data_dir(path).is_dir():
        recover_dataset(path, writer=False)
    episodes = list(iter_episodes(path))
    return Dataset(Path(path), _read_metadata(path), episodes)


# ---------------------------------------------------------------------------- to transitions
def episode_transitions(episode: Episode) -> dict[str, Any]:
    """Episode -> the arrays of `ReplayBuffer.add_many` (obs, action, ..., truncated, t)."""
    n = len(episode)
    return {
        "obs": episode.observation(slice(0, n)),
        "action": np.asarray(episode.actions, dtype=np.float32),
        "reward": np.asarray(episode.rewards, dtype=np.float32),
        "next_obs": episode.observation(slice(1, n + 1)),
        "terminated": np.asarray(episode.terminations, dtype=bool),
        "truncated": np.asarray(episode.truncations, dtype=bool),
        "t": np.arange(n, dtype=np.int64),
    }


def add_to_buffer(
    buffer: Any,
    episodes: Iterator[Episode] | list[Episode],
    *,
    source: str | None = None,
    first_episode_id: int = 0,
    actor_id: int = 0,
) -> int:
    """Add every transition of `episodes` to a `ReplayBuffer`; returns how many.

    Each transition is tagged with `source` (default: its episode's own, e.g. "demo") and
    episode ids ``first_episode_id + i`` (pick them apart from an online actor's ids when the
    buffer also takes online data under the same `actor_id`).
    """
    if source is not None and source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; expected one of {', '.join(SOURCES)}")
    added = 0
    for i, episode in enumerate(episodes):
        if len(episode) == 0:
            continue
        arrays = episode_transitions(episode)
        buffer.add_many(
            **arrays,
            source=source or episode.source,
            episode_id=first_episode_id + i,
            actor_id=actor_id,
        )
        added += len(episode)
    return added
