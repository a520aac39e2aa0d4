"""Importing a user's Minari dataset and a sim.collect .npz into serl episode datasets."""

import json

import h5py
import numpy as np
import pytest

from serl.data.datasets import DatasetError, load_dataset
from serl.data.importers import import_collect_npz, import_minari, read_minari


def minari_dataset(root, episodes, *, dict_obs: bool = False):
    """A Minari-layout dataset written by hand: data/main_data.hdf5 with episode groups."""
    (root / "data").mkdir(parents=True)
    with h5py.File(root / "data" / "main_data.hdf5", "w") as fh:
        fh.attrs["dataset_id"] = "pen/human-v2"
        fh.attrs["env_spec"] = json.dumps({"id": "AdroitHandPen-v1"})
        for i, (length, success) in enumerate(episodes):
            g = fh.create_group(f"episode_{i}")
            g.attrs["id"], g.attrs["seed"] = i, 100 + i
            obs = np.arange((length + 1) * 3, dtype=np.float64).reshape(length + 1, 3) + i
            if dict_obs:
                o = g.create_group("observations")
                o["state"], o["goal"] = obs, obs[:, :1] * 2
            else:
                g["observations"] = obs
            g["actions"] = np.full((length, 2), 0.25 * (i + 1))
            g["rewards"] = np.arange(length, dtype=np.float64)
            g["terminations"] = np.eye(1, length, length - 1, dtype=bool)[0] & success
            g["truncations"] = np.eye(1, length, length - 1, dtype=bool)[0] & (not success)
            g.create_group("infos")["success"] = (
                np.arange(length + 1) == length if success else (np.zeros(length + 1, bool))
            )
    return root


def test_minari_dataset_imports_with_every_array_and_the_env_id(tmp_path):
    src = minari_dataset(tmp_path / "minari", [(4, True), (6, False)])
    assert import_minari(src, tmp_path / "serl") == 2
    data = load_dataset(tmp_path / "serl")
    assert [len(e) for e in data.episodes] == [4, 6]
    first, second = data.episodes
    np.testing.assert_array_equal(first.observations, np.arange(15).reshape(5, 3))
    np.testing.assert_array_equal(second.actions, np.full((6, 2), 0.5, np.float32))
    np.testing.assert_array_equal(second.rewards, np.arange(6, dtype=np.float32))
    assert first.terminations.tolist() == [False, False, False, True]
    assert second.truncations[-1] and not second.terminations.any()
    assert (first.success, second.success) == (True, False)
    assert (first.seed, second.seed) == (100, 101) and first.source == "offline"
    assert data.metadata["env_id"] == "AdroitHandPen-v1"
    assert data.metadata["dataset_id"] == "pen/human-v2"


def test_inspect_dataset_takes_tq_anchors_from_minari_reference_scores(tmp_path, capsys):
    from serl.cli import main

    src = minari_dataset(tmp_path / "minari", [(4, True), (6, False)])  # returns 6 and 15
    import_minari(src, tmp_path / "plain")
    assert main(["inspect-dataset", str(tmp_path / "plain")]) == 0
    out = capsys.readouterr().out  # no reference scores: which flag gives what
    assert "TQ:                n/a (the mean return scaled so a random policy's is 0" in out
    assert "give --random-return and --expert-return" in out and "give --reference" in out
    with h5py.File(src / "data" / "main_data.hdf5", "a") as fh:
        fh.attrs["ref_min_score"], fh.attrs["ref_max_score"] = 0.5, 20.5
    import_minari(src, tmp_path / "scored")
    assert main(["inspect-dataset", str(tmp_path / "scored")]) == 0
    out = capsys.readouterr().out  # mean return 10.5: halfway from 0.5 to 20.5
    assert "TQ:                0.5000 (random 0.5 -> 0, expert 20.5 -> 1)" in out


def test_minari_dict_observations_keep_their_keys(tmp_path):
    src = minari_dataset(tmp_path / "minari", [(3, True)], dict_obs=True)
    (episode,) = read_minari(src)
    assert sorted(episode.observations) == ["goal", "state"]
    np.testing.assert_array_equal(episode.observations["goal"][:, 0], np.arange(0, 12, 3) * 2)


def test_a_directory_without_a_minari_file_is_refused_with_the_expected_path(tmp_path):
    with pytest.raises(DatasetError, match="main_data.hdf5"):
        list(read_minari(tmp_path))


def test_sim_collect_npz_imports_per_episode_with_quality_metadata(tmp_path):
    lengths = [2, 3]
    obs = np.arange(7 * 4, dtype=np.float32).reshape(7, 4)  # (2+1) + (3+1) rows
    np.savez(
        tmp_path / "noisy.npz",
        obs=obs,
        action=np.linspace(-1, 1, 10, dtype=np.float32).reshape(5, 2),
        reward=np.arange(5, dtype=np.float32),
        terminated=np.array([0, 1, 0, 0, 0], bool),
        truncated=np.array([0, 0, 0, 0, 1], bool),
        success=np.array([0, 1, 0, 0, 0], bool),
        episode_lengths=np.array(lengths),
        episode_seeds=np.array([7, 8]),
        meta=np.array(json.dumps({"env_id": "sim:PandaReach-v0", "quality": "noisy",
                                  "noise_std": 0.3})),
    )  # fmt: skip
    assert import_collect_npz(tmp_path / "noisy.npz", tmp_path / "serl") == 2
    data = load_dataset(tmp_path / "serl")
    first, second = data.episodes
    np.testing.assert_array_equal(first.observations, obs[:3])
    np.testing.assert_array_equal(second.observations, obs[3:])
    np.testing.assert_array_equal(second.rewards, [2, 3, 4])
    assert (first.success, second.success) == (True, False)
    assert second.truncations.tolist() == [False, False, True]
    assert data.metadata["quality"] == "noisy" and data.metadata["env_id"] == "sim:PandaReach-v0"


def test_a_minari_file_linking_outside_its_dataset_is_refused(tmp_path):
    elsewhere = minari_dataset(tmp_path / "elsewhere", [(4, True)])
    src = tmp_path / "minari"
    (src / "data").mkdir(parents=True)
    with h5py.File(src / "data" / "main_data.hdf5", "w") as fh:
        target = str(elsewhere / "data" / "main_data.hdf5")
        fh["episode_0"] = h5py.ExternalLink(target, "/episode_0")
    with pytest.raises(DatasetError, match="outside the dataset"):
        list(read_minari(src))


def test_a_serl_dataset_reads_as_minari_through_its_links(tmp_path):
    src = minari_dataset(tmp_path / "minari", [(4, True), (6, False)])
    import_minari(src, tmp_path / "serl")
    assert [len(e) for e in read_minari(tmp_path / "serl")] == [4, 6]


def test_an_import_deletes_the_temp_files_of_a_killed_write(tmp_path):
    src = minari_dataset(tmp_path / "minari", [(4, True)])
    episodes = tmp_path / "serl" / "data" / "episodes"
    episodes.mkdir(parents=True)
    leftover = episodes / ".episode_000000.hdf5.k1ll.tmp"
    leftover.write_bytes(bytes(1 << 20))
    import_minari(src, tmp_path / "serl")
    assert not leftover.exists()
