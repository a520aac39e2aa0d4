"""Episode datasets: Minari-style layout, identical round trips, crash-safe appends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from gymnasium import spaces

from serl.data.datasets import (
    DatasetError,
    Episode,
    add_to_buffer,
    append_episode,
    episode_ids,
    load_dataset,
    recover_dataset,
)
from serl.data.replay import ReplayBuffer
from serl.data.tags import source_code

pytestmark = pytest.mark.timeout(60)


def image_episode(steps: int, seed: int, *, source: str = "demo") -> Episode:
    rng = np.random.default_rng(seed)
    return Episode(
        observations={
            "front": rng.integers(0, 256, (steps + 1, 8, 8, 3), dtype=np.uint8),
            "state": rng.normal(size=(steps + 1, 3)).astype(np.float32),
        },
        actions=rng.uniform(-1, 1, (steps, 2)).astype(np.float32),
        rewards=rng.normal(size=steps),
        terminations=np.arange(steps) == steps - 1,
        truncations=np.zeros(steps, bool),
        success=bool(seed % 2),
        source=source,
        seed=seed,
        infos={"success": np.arange(steps + 1) == steps},
    )


def assert_same(a: Episode, b: Episode) -> None:
    for key in a.observations:
        assert b.observations[key].dtype == a.observations[key].dtype
        np.testing.assert_array_equal(b.observations[key], a.observations[key])
    for name in ("actions", "rewards", "terminations", "truncations"):
        assert getattr(b, name).dtype == getattr(a, name).dtype
        np.testing.assert_array_equal(getattr(b, name), getattr(a, name))
    np.testing.assert_array_equal(b.infos["success"], a.infos["success"])
    assert (b.success, b.source, b.seed, b.id) == (a.success, a.source, a.seed, a.id)


def test_dict_image_episodes_load_back_identical(tmp_path: Path) -> None:
    written = [image_episode(5, 1), image_episode(3, 2, source="intervention")]
    for episode in written:
        append_episode(tmp_path / "ds", episode, {"env_id": "sim:PandaPickCube-v0"})
    loaded = load_dataset(tmp_path / "ds")
    assert [e.id for e in loaded.episodes] == [0, 1]
    for a, b in zip(written, loaded.episodes, strict=True):
        assert_same(a, b)
    assert loaded.metadata["env_id"] == "sim:PandaPickCube-v0"
    assert (loaded.metadata["total_episodes"], loaded.metadata["total_steps"]) == (2, 8)
    assert loaded.total_steps == 8 and loaded.success_rate == 0.5


def test_minari_entry_file_links_every_episode_with_minari_field_names(tmp_path: Path) -> None:
    for seed in range(3):
        append_episode(tmp_path, image_episode(4, seed))
    with h5py.File(tmp_path / "data" / "main_data.hdf5", "r") as fh:
        assert sorted(fh) == ["episode_0", "episode_1", "episode_2"]
        group = fh["episode_2"]
        assert {"observations", "actions", "rewards", "terminations", "truncations"} <= set(group)
        assert group["observations/front"].shape == (5, 8, 8, 3)
        assert group.attrs["total_steps"] == 4 and group.attrs["seed"] == 2
        assert fh.attrs["total_episodes"] == 3 and fh.attrs["total_steps"] == 12
    meta = json.loads((tmp_path / "data" / "metadata.json").read_text())
    assert meta["total_episodes"] == 3


def test_an_episode_with_one_observation_too_few_is_refused(tmp_path: Path) -> None:
    bad = image_episode(4, 0)
    bad.observations["state"] = bad.observations["state"][:4]
    with pytest.raises(DatasetError, match=r"observations\['state'\] has \(4,\) rows for 4"):
        append_episode(tmp_path, bad)
    assert episode_ids(tmp_path) == []


def test_transitions_enter_a_replay_buffer_with_their_source_tags(tmp_path: Path) -> None:
    append_episode(tmp_path, image_episode(5, 1))
    append_episode(tmp_path, image_episode(3, 2, source="intervention"))
    frame = spaces.Box(0, 255, (8, 8, 3), np.uint8)
    space = spaces.Dict({"front": frame, "state": spaces.Box(-np.inf, np.inf, (3,), np.float32)})
    buffer = ReplayBuffer(space, action_dim=2, capacity=32)
    assert add_to_buffer(buffer, load_dataset(tmp_path).episodes, first_episode_id=100) == 8
    assert len(buffer) == 8
    valid = np.flatnonzero(buffer.state_arrays()["valid"])
    tags = buffer.tags(valid)
    assert tags["source"].tolist() == [source_code("demo")] * 5 + [source_code("intervention")] * 3
    assert tags["episode_id"].tolist() == [100] * 5 + [101] * 3
    batch = buffer.gather(valid[:5])
    episode = load_dataset(tmp_path).episodes[0]
    next_frames = batch.next_obs["front"].numpy()
    np.testing.assert_array_equal(next_frames, episode.observations["front"][1:])


WRITER = textwrap.dedent(
    """
    import sys
    import numpy as np
    from serl.data.datasets import Episode, append_episode
    rng = np.random.default_rng(0)
    i = 0
    while True:  # big episodes, so a kill lands inside a write more often than not
        n = 40
        obs = rng.integers(0, 256, (n + 1, 64, 64, 3), dtype=np.uint8)
        append_episode(sys.argv[1], Episode(obs, np.full((n, 1), i, np.float32), np.zeros(n),
                       np.zeros(n, bool), np.ones(n, bool)))
        i += 1
    """
)


def test_kill_9_during_appends_leaves_every_finished_episode_readable(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    episodes = tmp_path / "data" / "episodes"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], env=env)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # kill while an episode file is half written
            if len(episode_ids(tmp_path)) >= 3 and list(episodes.glob(".*.tmp")):
                break
            time.sleep(0.001)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert list(episodes.glob(".*.tmp")), "the kill was meant to land inside a write"
    loaded = load_dataset(tmp_path)
    n = len(loaded.episodes)
    assert n >= 3
    assert [float(e.actions[0, 0]) for e in loaded.episodes] == list(range(n))
    assert all(e.observations.shape == (41, 64, 64, 3) for e in loaded.episodes)
    # the next writer goes on from there
    append_episode(tmp_path, image_episode(2, 0))
    assert episode_ids(tmp_path) == list(range(n + 1))


def _secret_file(folder: Path, rows: int) -> Path:
    """An HDF5 file outside the dataset, shaped so that a loader following a link to it would
    take it for the episode's observations."""
    folder.mkdir(parents=True, exist_ok=True)
    secret = folder / "secret.h5"
    with h5py.File(secret, "w") as fh:
        fh["front"] = np.full((rows, 8, 8, 3), 7, np.uint8)
    return secret


@pytest.mark.parametrize("absolute", [True, False])
def test_an_episode_linking_to_a_file_outside_the_dataset_is_refused(
    tmp_path: Path, absolute: bool
) -> None:
    root = tmp_path / "dataset"
    append_episode(root, image_episode(3, 0))
    secret = _secret_file(tmp_path / "elsewhere", rows=4)
    target = str(secret) if absolute else os.path.relpath(secret, root / "data" / "episodes")
    with h5py.File(root / "data" / "episodes" / "episode_000000.hdf5", "a") as fh:
        del fh["episode_0/observations/front"]
        fh["episode_0/observations/front"] = h5py.ExternalLink(target, "/front")
    with pytest.raises(DatasetError, match="outside the dataset.*links to .*secret.h5"):
        load_dataset(root)


def test_a_dataset_keeping_its_data_in_an_external_raw_file_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "dataset"
    append_episode(root, image_episode(3, 0))
    raw = tmp_path / "elsewhere.bin"
    raw.write_bytes(bytes(4 * 8))
    with h5py.File(root / "data" / "episodes" / "episode_000000.hdf5", "a") as fh:
        del fh["episode_0/rewards"]
        fh.create_dataset("episode_0/rewards", (4,), "f8", external=[(str(raw), 0, 32)])
    with pytest.raises(DatasetError, match="keeps its data in other files"):
        load_dataset(root)


def _index_of_two_after_three_episodes(root: Path) -> None:
    """A dataset of three episode files whose index lists two: a writer killed between the
    third episode's file and the index."""
    for seed in range(2):
        append_episode(root, image_episode(3, seed))
    data = root / "data"
    saved = {name: (data / name).read_bytes() for name in ("main_data.hdf5", "metadata.json")}
    append_episode(root, image_episode(3, 2))
    for name, content in saved.items():
        (data / name).write_bytes(content)


def test_opening_a_dataset_rebuilds_an_index_a_killed_writer_left_behind(tmp_path: Path) -> None:
    _index_of_two_after_three_episodes(tmp_path)
    assert len(load_dataset(tmp_path).episodes) == 3
    with h5py.File(tmp_path / "data" / "main_data.hdf5", "r") as fh:
        assert sorted(fh.keys()) == ["episode_0", "episode_1", "episode_2"]
        assert fh.attrs["total_episodes"] == 3
        assert fh["episode_2/actions"].shape == (3, 2)  # the link leads to the episode file
    metadata = json.loads((tmp_path / "data" / "metadata.json").read_text())
    assert metadata["total_episodes"] == 3 and metadata["total_steps"] == 9


def test_a_writer_opening_a_dataset_removes_a_killed_writes_temp_files(tmp_path: Path) -> None:
    _index_of_two_after_three_episodes(tmp_path)
    leftover = tmp_path / "data" / "episodes" / ".episode_000003.hdf5.x1y2.tmp"
    leftover.write_bytes(bytes(1 << 20))
    load_dataset(tmp_path)
    assert leftover.exists()  # a reader never deletes: it may be a running writer's file
    recover_dataset(tmp_path)
    assert not leftover.exists()
