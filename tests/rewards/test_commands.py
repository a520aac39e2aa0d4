import json

import gymnasium as gym
import numpy as np

from serl.cli import main
from serl.rewards.dataset import FrameSet, load_frames
from serl.rewards.model import load_classifier


def episode_dataset(path, episodes: int = 12, length: int = 5) -> None:
    """A dataset in the sim.collect layout: success (a white frame) in the last two steps."""
    rows = episodes * (length + 1)
    success = np.tile(np.arange(length) >= length - 2, episodes)
    frames = np.zeros((rows, 16, 16, 3), np.uint8)
    for e in range(episodes):
        frames[e * (length + 1) + 1 :][:length][success[:length]] = 255
    np.savez(path, **{"obs/cam": frames}, success=success,
             episode_lengths=np.full(episodes, length))  # fmt: skip


def test_record_rewards_adds_dataset_frames_and_shows_the_counts(tmp_path, capsys):
    episode_dataset(tmp_path / "demo.npz")
    out = tmp_path / "frames.npz"
    code = main(["record-rewards", "--add", str(tmp_path / "demo.npz"), "--out", str(out),
                 "--views", "cam", "--image-size", "16"])  # fmt: skip
    assert code == 0
    assert "60 frames, 24 positives, 36 negatives" in capsys.readouterr().out
    data = load_frames(out, ("cam",), 16)
    assert np.all(data.frames["cam"][data.labels] == 255)
    assert np.all(data.frames["cam"][~data.labels] == 0)


def test_record_rewards_warns_when_classes_are_unbalanced(tmp_path, capsys):
    labels = np.zeros(50, bool)
    labels[:3] = True
    frames = {"cam": np.zeros((50, 16, 16, 3), np.uint8)}
    FrameSet(frames, labels, np.arange(50) // 5).save(tmp_path / "f.npz")
    main(["record-rewards", "--add", str(tmp_path / "f.npz"), "--out", str(tmp_path / "o.npz"),
          "--views", "cam", "--image-size", "16"])  # fmt: skip
    assert "warning: classes are unbalanced (3 positives, 47 negatives" in capsys.readouterr().out


def test_train_reward_writes_a_loadable_classifier_and_its_report(tmp_path, capsys):
    episode_dataset(tmp_path / "demo.npz", episodes=40)
    code = main(["train-reward", str(tmp_path / "demo.npz"), "--out", str(tmp_path / "run"),
                 "--train.classifier.views", "cam", "--train.classifier.image-size", "16",
                 "--train.epochs", "20", "--train.no-progress"])  # fmt: skip
    assert code == 0
    report = json.loads((tmp_path / "run/report.json").read_text())
    assert report["precision"] >= 0.99 and report["recall"] == 1.0
    assert (tmp_path / "run/report.png").read_bytes()[:4] == b"\x89PNG"
    classifier = load_classifier(tmp_path / "run/classifier.safetensors")
    assert classifier.rule.threshold == report["threshold"]
    assert "classifier:" in capsys.readouterr().out


def test_replay_buffer_frames_are_labelled_by_their_terminal_transition(tmp_path):
    import gymnasium as gym

    from serl.data.replay import ReplayBuffer

    space = gym.spaces.Dict({"cam": gym.spaces.Box(0, 255, (16, 16, 3), np.uint8)})
    buffer = ReplayBuffer(space, 1, 20)
    for t in range(3):  # frame value = t + 1; the last transition terminates (success)
        buffer.add({"cam": np.full((16, 16, 3), t, np.uint8)}, np.zeros(1), 0.0,
                   {"cam": np.full((16, 16, 3), t + 1, np.uint8)}, t == 2, False,
                   source="online", episode_id=0, t=t)  # fmt: skip
    buffer.save(tmp_path / "buffer.npz")
    data = load_frames(tmp_path / "buffer.npz", ("cam",), 16)
    assert data.frames["cam"][:, 0, 0, 0].tolist() == [1, 2, 3]
    assert data.labels.tolist() == [False, False, True]


def test_train_reward_refuses_a_split_without_positives_before_training(tmp_path, capsys):
    labels = np.zeros(100, bool)
    labels[4] = True  # one success, in episode 0: the validation split cannot get one
    FrameSet({"cam": np.zeros((100, 16, 16, 3), np.uint8)}, labels, np.arange(100) // 10).save(
        tmp_path / "f.npz"
    )
    # 10^6 epochs would run for hours: returning at once shows nothing was trained.
    code = main(["train-reward", str(tmp_path / "f.npz"), "--out", str(tmp_path / "run"),
                 "--train.classifier.views", "cam", "--train.classifier.image-size", "16",
                 "--train.epochs", "1000000", "--train.no-progress"])  # fmt: skip
    assert code == 2
    out = capsys.readouterr().out
    assert "error: 1 positive frames (in 1 episodes) and 99 negatives" in out
    assert "validation 0+/" in out and "record more episodes that succeed" in out
    assert not (tmp_path / "run").exists()


def test_record_rewards_in_sim_records_both_classes_by_default(tmp_path, capsys):
    out = tmp_path / "frames.npz"
    code = main(["record-rewards", "--env", "sim:PandaReachPixels-v0", "--label", "info",
                 "--episodes", "3", "--out", str(out)])  # fmt: skip
    assert code == 0
    positives, negatives = load_frames(out, ("front",), 64).counts()
    assert positives >= 3 and negatives > 0  # the noisy expert succeeds in every episode


def test_demo_dataset_frames_are_labelled_by_step_success_and_the_episode_mark(tmp_path):
    from serl.data.datasets import Episode, append_episode

    def episode(success_info: list[bool], mark: bool) -> Episode:
        n = len(success_info) - 1  # frame value = row, so each frame says which row it is
        frames = np.repeat(np.arange(n + 1, dtype=np.uint8), 8 * 8 * 3).reshape(n + 1, 8, 8, 3)
        return Episode({"cam": frames, "state": np.zeros((n + 1, 2))}, np.zeros((n, 1)),
                       np.zeros(n), np.zeros(n, bool), np.zeros(n, bool), success=mark,
                       infos={"success": np.array(success_info)})  # fmt: skip

    append_episode(tmp_path / "demos", episode([False, False, True, True], mark=False))
    append_episode(tmp_path / "demos", episode([False, False, False], mark=True))  # human mark
    data = load_frames(tmp_path / "demos", ("cam",), None)
    assert data.frames["cam"][:, 0, 0, 0].tolist() == [1, 2, 3, 1, 2]  # reset frames left out
    assert data.labels.tolist() == [False, True, True, False, True]
    assert data.episodes.tolist() == [0, 0, 0, 1, 1]
    assert load_frames(tmp_path / "demos", ("cam",), 4).frames["cam"].shape == (5, 4, 4, 3)


def test_record_rewards_drives_the_env_with_a_trained_policy(tmp_path, capsys):
    """--actions policy: the checkpoint's deterministic policy acts (with --noise-std 0 two
    recordings are the same frames; random actions are not), so a policy that fools a
    classifier can be sent where it does, its frames labelled by the env's success."""
    from serl.agents.sac import SACAgent, SACConfig
    from serl.checkpoint import save_checkpoint
    from serl.config import config_hash, config_to_dict
    from serl.envs import make_env

    cfg = SACConfig(hidden_dims=(8,), batch_size=4)
    env: gym.Env = make_env("sim:PandaReach-v0")
    agent = SACAgent(cfg, env.observation_space, env.action_space)
    env.close()
    checkpoint = tmp_path / "checkpoint.safetensors"
    config = {"env": "sim:PandaReach-v0", "agent": "sac", "agent_cfg": config_to_dict(cfg)}
    save_checkpoint(checkpoint, agent.state_dict(), config=config, config_hash=config_hash(cfg))
    base = ["record-rewards", "--env", "sim:PandaReach-v0", "--label", "info", "--views",
            "render", "--image-size", "16", "--episodes", "2"]  # fmt: skip
    policy = ["--actions", "policy", "--policy-checkpoint", str(checkpoint), "--noise-std", "0"]
    assert main([*base, *policy, "--out", str(tmp_path / "a.npz")]) == 0
    assert main([*base, *policy, "--out", str(tmp_path / "b.npz")]) == 0
    assert main([*base, "--actions", "random", "--out", str(tmp_path / "r.npz")]) == 0
    a, b, r = (load_frames(tmp_path / f"{n}.npz", ("render",), 16) for n in "abr")
    assert len(a) > 2 and np.array_equal(a.frames["render"], b.frames["render"])
    assert len(a) != len(r) or not np.array_equal(a.frames["render"], r.frames["render"])

    assert main([*base, "--actions", "policy", "--out", str(tmp_path / "c.npz")]) == 2
    assert "--actions policy needs --policy-checkpoint FILE" in capsys.readouterr().out


class SucceedsThenDrops(gym.Env):
    """Success (terminated) at step 3, positive until step `drop`, truncated at step 20; the
    frame's value is its step."""

    observation_space = gym.spaces.Dict({"cam": gym.spaces.Box(0, 255, (4, 4, 3), np.uint8)})
    action_space = gym.spaces.Box(-1, 1, (1,))

    def __init__(self, drop: int):
        self.drop, self.t = drop, 0

    def _obs(self) -> dict:
        return {"cam": np.full((4, 4, 3), self.t, np.uint8)}

    def reset(self, *, seed=None, options=None):
        self.t = 0
        return self._obs(), {"success": False}

    def step(self, action):
        self.t += 1
        success = 3 <= self.t < self.drop
        return self._obs(), float(success), success, self.t >= 20, {"success": success}


def test_hold_success_labels_the_steps_after_the_success_that_ended_the_episode():
    """A task that ends at its first success gives one positive frame per episode; with
    hold_success the recorder keeps acting there, labelling each frame, until the hold is
    done, a frame is negative, or the episode is truncated."""
    from serl.rewards.record import info_success, record

    def labels(drop: int, hold: int) -> list[bool]:
        data = record(SucceedsThenDrops(drop), lambda obs: np.zeros(1), info_success,
                      episodes=1, views=("cam",), size=4, hold_success=hold)  # fmt: skip
        assert data.frames["cam"][:, 0, 0, 0].tolist() == list(range(len(data)))
        return data.labels.tolist()

    assert labels(drop=99, hold=0) == [False, False, False, True]
    assert labels(drop=99, hold=4) == [False, False, False, True, True, True, True, True]
    assert labels(drop=5, hold=4) == [False, False, False, True, True, False]  # it fell
    assert labels(drop=99, hold=40) == [False] * 3 + [True] * 18  # truncated at step 20


def test_record_rewards_hold_success_gives_each_pick_more_positive_frames(tmp_path):
    def positives(hold: int) -> int:
        out = tmp_path / f"hold{hold}.npz"
        code = main(["record-rewards", "--env", "sim:PandaPickCubePixels64-v0", "--label",
                     "info", "--noise-std", "0", "--episodes", "1", "--hold-success",
                     str(hold), "--out", str(out)])  # fmt: skip
        assert code == 0
        return load_frames(out, ("front",), 64).counts()[0]

    assert positives(0) == 1
    assert positives(5) == 6  # the expert keeps lifting to 15 cm: the cube stays up
