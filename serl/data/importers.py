"""Offline data in other layouts, brought into serl's episode datasets (`serl.data.datasets`).

Two sources a robot-learning user has:

* **Their own Minari datasets** (D4RL-style data converted to Minari, or any dataset Minari
  wrote): ``<dataset>/data/main_data.hdf5`` holds one group ``episode_{id}`` per episode with
  ``observations`` (T + 1 rows; a group of datasets for Dict observations), ``actions``,
  ``rewards``, ``terminations``, ``truncations`` (T rows), optional ``infos``, and the
  ``id``/``seed`` attributes; the dataset's metadata are attributes of the file (Minari >= 0.4)
  and/or ``data/metadata.json``. `read_minari` reads them without the minari package;
  `import_minari` copies them into a serl dataset (one crash-safe file per episode), which
  `serl learner --prior-data` and `serl train --prior-data` then load.
* **Scripted-expert datasets of `python -m sim.collect`** at a chosen quality (expert, noisy,
  random): one ``.npz`` whose layout `sim/collect.py` documents. `read_collect_npz` reads it
  here from the file alone, so the learning core never imports `sim`.

`python -m serl.data.importers minari|npz SRC DST` runs an import. No pickle: h5py and
``np.load(allow_pickle=False)`` only.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from serl.data.datasets import (
    DatasetError,
    Episode,
    Observations,
    append_episode,
    open_hdf5,
    recover_dataset,
)

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------- Minari
def _minari_file(path: str | os.PathLike[str]) -> Path:
    root = Path(path)
    for candidate in (root / "data" / "main_data.hdf5", root / "main_data.hdf5", root):
        if candidate.is_file():
            return candidate
    raise DatasetError(
        f"{path}: no Minari dataset (expected {root}/data/main_data.hdf5); give the dataset "
        "directory, e.g. ~/.minari/datasets/<name>"
    )


def _minari_root(path: str | os.PathLike[str]) -> Path:
    """The directory the dataset's files must stay in: the dataset directory, or the folder
    of a main_data.hdf5 given directly."""
    root = Path(path)
    return root if root.is_dir() else root.parent


def _json_value(value: Any) -> Any:
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _observations(node: h5py.Group | h5py.Dataset, where: str) -> Observations:
    if isinstance(node, h5py.Dataset):
        return node[()]
    arrays = {}
    for key, child in node.items():
        if not isinstance(child, h5py.Dataset):
            raise DatasetError(
                f"{where}/observations/{key} is a nested group; serl datasets hold one level of "
                "Dict observations — flatten the observation space before importing"
            )
        arrays[key] = child[()]
    return arrays


def _infos(group: h5py.Group, rows: int) -> dict[str, np.ndarray]:
    """Per-step infos with the T + 1 rows serl keeps (others, e.g. nested groups, skipped)."""
    if "infos" not in group:
        return {}
    return {
        key: value[()]
        for key, value in group["infos"].items()
        if isinstance(value, h5py.Dataset) and value.shape[:1] == (rows,)
    }


def minari_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A Minari dataset's metadata: the file's attributes merged over data/metadata.json."""
    file = _minari_file(path)
    meta: dict[str, Any] = {}
    sidecar = file.parent / "metadata.json"
    if sidecar.is_file():
        meta.update(json.loads(sidecar.read_text()))
    with open_hdf5(file, _minari_root(path)) as fh:
        meta.update({key: _json_value(value) for key, value in fh.attrs.items()})
    return meta


def read_minari(path: str | os.PathLike[str]) -> Iterator[Episode]:
    """The episodes of the Minari dataset at `path`, in id order, as serl `Episode`s.

    `success` is true when ``infos/success`` is true at any step, else when the episode ended
    in termination (Minari has no success field); `source` is "offline".
    """
    file = _minari_file(path)
    with open_hdf5(file, _minari_root(path)) as fh:
        names = sorted(
            (k for k in fh if k.startswith("episode_")), key=lambda k: int(k.split("_")[1])
        )
        if not names:
            raise DatasetError(f"{file}: no episode_* groups; is this a Minari dataset?")
        for name in names:
            group = fh[name]
            try:
                actions = group["actions"][()]
                episode = Episode(
                    observations=_observations(group["observations"], f"{file}:{name}"),
                    actions=np.asarray(actions, np.float32),
                    rewards=np.asarray(group["rewards"][()], np.float32),
                    terminations=np.asarray(group["terminations"][()], bool),
                    truncations=np.asarray(group["truncations"][()], bool),
                    source="offline",
                    seed=_seed(group.attrs.get("seed")),
                    infos=_infos(group, len(actions) + 1),
                )
            except KeyError as exc:
                raise DatasetError(f"{file}:{name} lacks a Minari field ({exc})") from exc
            success = episode.infos.get("success")
            episode.success = (
                bool(np.any(success)) if success is not None else bool(episode.terminations.any())
            )
            episode.validate()
            yield episode


def _seed(value: Any) -> int | None:
    value = _json_value(value)
    if value is None or value == "None":
        return None
    return int(value)


def import_minari(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> int:
    """Copy the Minari dataset `src` into a serl dataset at `dst`; returns the episode count."""
    meta = minari_metadata(src)
    extra = {
        "imported_from": str(src),
        "dataset_id": meta.get("dataset_id"),
        "env_id": _env_id(meta),
        # D4RL's reference returns (random, expert): `serl inspect-dataset` computes TQ with them.
        **{k: float(meta[k]) for k in ("ref_min_score", "ref_max_score") if k in meta},
    }
    count = 0
    recover_dataset(dst)
    for episode in read_minari(src):
        append_episode(dst, episode, extra)
        count += 1
    logger.info("imported %d Minari episodes from %s into %s", count, src, dst)
    return count


def _env_id(meta: dict[str, Any]) -> str | None:
    spec = meta.get("env_spec")
    if isinstance(spec, str):
        try:
            return json.loads(spec).get("id")
        except (json.JSONDecodeError, AttributeError):
            return None
    return meta.get("env_id")


# ---------------------------------------------------------------------------- sim.collect
def read_collect_npz(path: str | os.PathLike[str]) -> tuple[list[Episode], dict[str, Any]]:
    """Episodes and metadata of a `python -m sim.collect` file (layout in sim/collect.py)."""
    with np.load(path, allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    try:
        meta = json.loads(str(arrays.pop("meta")))
        lengths = arrays["episode_lengths"].astype(int)
        seeds = arrays["episode_seeds"].astype(int)
    except KeyError as exc:
        raise DatasetError(f"{path}: not a sim.collect dataset (missing {exc})") from exc
    obs_keys = [key for key in arrays if key == "obs" or key.startswith("obs/")]
    episodes, o, t = [], 0, 0
    for length, seed in zip(lengths, seeds, strict=True):
        if obs_keys == ["obs"]:
            obs: Observations = arrays["obs"][o : o + length + 1]
        else:
            obs = {key[len("obs/") :]: arrays[key][o : o + length + 1] for key in obs_keys}
        steps = slice(t, t + length)
        episode = Episode(
            observations=obs,
            actions=arrays["action"][steps].astype(np.float32),
            rewards=arrays["reward"][steps].astype(np.float32),
            terminations=arrays["terminated"][steps].astype(bool),
            truncations=arrays["truncated"][steps].astype(bool),
            success=bool(arrays["success"][steps].any()),
            source="offline",
            seed=int(seed),
        )
        episode.validate()
        episodes.append(episode)
        o, t = o + length + 1, t + length
    return episodes, meta


def import_collect_npz(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> int:
    """Copy a sim.collect ``.npz`` into a serl dataset at `dst`; returns the episode count."""
    episodes, meta = read_collect_npz(src)
    extra = {
        "imported_from": str(src),
        "env_id": meta.get("env_id"),
        "quality": meta.get("quality"),
        "noise_std": meta.get("noise_std"),
    }
    recover_dataset(dst)
    for episode in episodes:
        append_episode(dst, episode, extra)
    return len(episodes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m serl.data.importers",
        description="Import a Minari dataset or a sim.collect .npz into a serl dataset.",
    )
    parser.add_argument("kind", choices=["minari", "npz"], help="layout of SRC")
    parser.add_argument("src", type=Path, help="Minari dataset directory or .npz file")
    parser.add_argument("dst", type=Path, help="serl dataset directory (created or appended)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    importer = import_minari if args.kind == "minari" else import_collect_npz
    count = importer(args.src, args.dst)
    logger.info("%d episodes -> %s (use it with --prior-data %s)", count, args.dst, args.dst)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
