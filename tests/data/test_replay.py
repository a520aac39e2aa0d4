"""ReplayBuffer: frames stored once, next_obs rebuilt within the episode, ring overwrite,
vectorised ingest, atomic save/load and input validation."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from gymnasium import spaces

from serl.data import replay as replay_module
from serl.data.replay import EmptyBufferError, ReplayBuffer, ReplayFileError
from serl.data.tags import SOURCES, source_code, source_name

ACTION_DIM = 2


# ------------------------------------------------------------------------------------ helpers
def camera_space(side: int = 8) -> spaces.Dict:
    frame = spaces.Box(0, 255, (side, side, 3), np.uint8)
    return spaces.Dict(
        {"front": frame, "wrist": frame, "state": spaces.Box(-np.inf, np.inf, (3,), np.float32)}
    )


def state_space() -> spaces.Box:
    return spaces.Box(-np.inf, np.inf, (3,), np.float32)


def encode(space: spaces.Space, actor: int, episode: int, t: int) -> Any:
    """An observation that names its actor, episode and step (frames as well as the state)."""
    state = np.array([actor, episode, t], np.float32)
    if isinstance(space, spaces.Box):
        return state
    shape = space["front"].shape
    front = np.zeros(shape, np.uint8)
    front[0, 0] = (actor, episode % 256, t % 256)
    wrist = np.full(shape, (t * 7 + episode) % 256, np.uint8)
    return {"front": front, "wrist": wrist, "state": state}


def decode_frames(obs: dict[str, torch.Tensor]) -> np.ndarray:
    """(B, 3) actor, episode, step read back from the front camera frames."""
    return obs["front"][:, 0, 0].numpy().astype(np.int64)


def action_of(actor: int, episode: int, t: int) -> np.ndarray:
    return np.array([actor + 0.5 * t, episode - 0.25 * t], np.float32)


def reward_of(actor: int, episode: int, t: int) -> float:
    return float(actor * 1000 + episode * 10 + t)


def add_step(buf: ReplayBuffer, actor: int, episode: int, t: int, end: str = "", **kw) -> None:
    """Add the transition (actor, episode, t) -> t + 1; end is "", "terminated" or "truncated"."""
    space = buf.observation_space
    buf.add(
        encode(space, actor, episode, t),
        action_of(actor, episode, t),
        reward_of(actor, episode, t),
        encode(space, actor, episode, t + 1),
        end == "terminated",
        end == "truncated",
        episode_id=episode,
        t=t,
        actor_id=actor,
        **kw,
    )


def interleaved_stream(
    rng: np.random.Generator, num_actors: int, steps: int
) -> Iterator[tuple[int, int, int, str]]:
    """(actor, episode, t, end) of actors stepping in random order, with random episode
    lengths, both kinds of ending, gaps in t, and long stalls of actor 0."""
    episode = [0] * num_actors
    t = [0] * num_actors
    length = [int(rng.integers(1, 12)) for _ in range(num_actors)]
    for _ in range(steps):
        actor = int(rng.integers(num_actors))
        if actor == 0 and rng.random() < 0.7:
            continue  # actor 0 is slow: its pending slot is often overwritten meanwhile
        if rng.random() < 0.05:
            t[actor] += 1  # a dropped transition: the next one starts from a fresh pair
        end = ""
        if t[actor] + 1 >= length[actor]:
            end = "terminated" if rng.random() < 0.5 else "truncated"
        yield actor, episode[actor], t[actor], end
        t[actor] += 1
        if end:
            episode[actor] += 1
            t[actor] = 0
            length[actor] = int(rng.integers(1, 12))


def valid_slots(buf: ReplayBuffer) -> np.ndarray:
    return np.flatnonzero(buf.state_arrays()["valid"])


def snapshot(buf: ReplayBuffer) -> dict[str, np.ndarray]:
    return {name: a.copy() for name, a in buf.state_arrays().items()}


def assert_same_arrays(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].dtype == b[name].dtype, name
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


class SlotModel:
    """Independent model of slot reuse: allocations are numbered, slot = number mod capacity,
    and a transition lives while neither of its two observations' allocations is among the
    ones the ring has since reused."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.allocations = 0
        self.pending: dict[tuple[int, int], tuple[int, int]] = {}
        self.transitions: list[tuple[tuple[int, int, int], int, int]] = []

    def _alive(self, number: int) -> bool:
        return number > self.allocations - self.capacity

    def add(self, actor: int, episode: int, t: int, end: str) -> None:
        pending = self.pending.pop((actor, episode), None)
        # it continues only if the allocation for next_obs below does not reuse its slot
        if pending and pending[1] == t and pending[0] > self.allocations + 1 - self.capacity:
            obs_number = pending[0]
        else:
            self.allocations += 1
            obs_number = self.allocations
        self.allocations += 1
        self.transitions.append(((actor, episode, t), obs_number, self.allocations))
        if not end:
            self.pending[(actor, episode)] = (self.allocations, t + 1)

    def live(self) -> set[tuple[int, int, int]]:
        return {k for k, o, n in self.transitions if self._alive(o) and self._alive(n)}


# --------------------------------------------------------------------------------------- tags
def test_source_codes_round_trip_and_unknown_names_are_refused() -> None:
    assert [source_name(source_code(s)) for s in SOURCES] == list(SOURCES)
    with pytest.raises(ValueError, match=r"'simulated'.*demo, offline"):
        source_code("simulated")
    with pytest.raises(ValueError, match=r"code 9.*0=demo"):
        source_name(9)


# ------------------------------------------------------------------------------------- memory
def test_each_frame_is_stored_once_so_an_episode_takes_steps_plus_one_slots() -> None:
    space = camera_space(side=128)
    episodes, steps = 10, 100
    buf = ReplayBuffer(space, ACTION_DIM, capacity=episodes * (steps + 1))
    for episode in range(episodes):
        for t in range(steps):
            add_step(buf, 0, episode, t, "terminated" if t == steps - 1 else "")

    assert len(buf) == episodes * steps  # nothing was overwritten: slots == transitions + episodes
    arrays = buf.state_arrays()
    frame_bytes = arrays["obs/front"].nbytes + arrays["obs/wrist"].nbytes
    one_observation_frames = 2 * 128 * 128 * 3
    assert frame_bytes / len(buf) <= 1.05 * one_observation_frames
    assert buf.observation_nbytes_per_slot == one_observation_frames + 3 * 4
    assert buf.nbytes >= frame_bytes


# ----------------------------------------------------------------------------------- next_obs
def test_next_obs_is_the_added_one_at_episode_ends_and_after_truncation() -> None:
    buf = ReplayBuffer(state_space(), ACTION_DIM, capacity=100)
    for t in range(5):
        add_step(buf, 0, 0, t, "terminated" if t == 4 else "")
    for t in range(3):
        add_step(buf, 0, 1, t, "truncated" if t == 2 else "")
    add_step(buf, 0, 2, 0, "terminated")  # a one-step episode

    idx = valid_slots(buf)
    batch, tags = buf.gather(idx), buf.tags(idx)
    assert len(batch) == 9
    for row, (episode, t) in enumerate(zip(tags["episode_id"], tags["t"], strict=True)):
        np.testing.assert_array_equal(batch.obs[row].numpy(), encode(state_space(), 0, episode, t))
        np.testing.assert_array_equal(
            batch.next_obs[row].numpy(), encode(state_space(), 0, episode, t + 1)
        )
        assert batch.reward[row].item() == reward_of(0, episode, t)
    ends = {(e, t): (term, trunc) for e, t, term, trunc in zip(
        tags["episode_id"], tags["t"], batch.terminated.tolist(), tags["truncated"], strict=True
    )}  # fmt: skip
    assert ends[(0, 4)] == (1.0, False)
    assert ends[(1, 2)] == (0.0, True)  # time-limit truncation is not termination
    assert ends[(2, 0)] == (1.0, False)
    assert sum(term for term, _ in ends.values()) == 2.0
    assert batch.terminated.dtype == torch.float32


def test_sampled_next_obs_never_crosses_an_episode_boundary() -> None:
    space = camera_space()
    buf = ReplayBuffer(space, ACTION_DIM, capacity=61)
    for actor, episode, t, end in interleaved_stream(np.random.default_rng(0), 3, 600):
        add_step(buf, actor, episode, t, end)

    batch = buf.sample(2000, np.random.default_rng(1))
    obs, next_obs = decode_frames(batch.obs), decode_frames(batch.next_obs)
    np.testing.assert_array_equal(next_obs[:, :2], obs[:, :2])  # same actor and episode
    np.testing.assert_array_equal(next_obs[:, 2], obs[:, 2] + 1)
    np.testing.assert_array_equal(batch.next_obs["state"][:, 2], batch.obs["state"][:, 2] + 1)


def test_two_interleaved_actors_each_get_the_next_obs_they_added() -> None:
    space = camera_space()
    buf = ReplayBuffer(space, ACTION_DIM, capacity=1000)
    added = {}
    for actor, episode, t, end in interleaved_stream(np.random.default_rng(2), 2, 300):
        add_step(buf, actor, episode, t, end)
        added[(actor, episode, t)] = encode(space, actor, episode, t + 1)

    idx = valid_slots(buf)
    batch, tags = buf.gather(idx), buf.tags(idx)
    assert len(buf) == len(added) == len(idx)
    for row in range(len(idx)):
        key = (int(tags["actor_id"][row]), int(tags["episode_id"][row]), int(tags["t"][row]))
        for name, frame in added[key].items():
            np.testing.assert_array_equal(batch.next_obs[name][row].numpy(), frame)


# -------------------------------------------------------------------------------- ring buffer
def test_ring_overwrite_invalidates_exactly_the_transitions_whose_slots_were_reused() -> None:
    capacity = 23
    buf = ReplayBuffer(state_space(), ACTION_DIM, capacity=capacity)
    model = SlotModel(capacity)
    for step, (actor, episode, t, end) in enumerate(
        interleaved_stream(np.random.default_rng(3), 3, 500)
    ):
        add_step(buf, actor, episode, t, end)
        model.add(actor, episode, t, end)
        idx = valid_slots(buf)
        tags = buf.tags(idx)
        live = set(
            map(tuple, np.stack([tags["actor_id"], tags["episode_id"], tags["t"]], 1).tolist())
        )
        assert live == model.live(), f"after add #{step}"
        assert len(buf) == len(idx)
    assert model.allocations > 10 * capacity


def test_sampling_after_wrap_returns_consistent_transitions() -> None:
    buf = ReplayBuffer(state_space(), ACTION_DIM, capacity=23)
    for actor, episode, t, end in interleaved_stream(np.random.default_rng(4), 3, 500):
        add_step(buf, actor, episode, t, end)

    idx = buf.sample_indices(1000, np.random.default_rng(5))
    batch, tags = buf.gather(idx), buf.tags(idx)
    want = np.stack([tags["actor_id"], tags["episode_id"], tags["t"]], axis=1).astype(np.float32)
    np.testing.assert_array_equal(batch.obs.numpy(), want)
    np.testing.assert_array_equal(batch.next_obs.numpy(), want + [0, 0, 1])
    np.testing.assert_array_equal(
        batch.action.numpy(), np.stack([action_of(*row) for row in want.astype(int)])
    )


def test_an_episode_whose_pending_slot_is_reused_next_continues_from_a_fresh_pair() -> None:
    buf = ReplayBuffer(state_space(), ACTION_DIM, capacity=4)
    add_step(buf, 0, 0, 0)  # slots 0 -> 1, pending 1
    add_step(buf, 1, 0, 0)  # slots 2 -> 3, pending 3
    add_step(buf, 1, 0, 1)  # 3 -> 0: reuses slot 0, so actor 0's t=0 transition is gone
    add_step(buf, 0, 0, 1)  # its pending slot 1 is the one reused next: fresh pair 1 -> 2

    idx = valid_slots(buf)
    batch, tags = buf.gather(idx), buf.tags(idx)
    assert sorted(np.stack([tags["actor_id"], tags["t"]], 1).tolist()) == [[0, 1], [1, 1]]
    want = np.stack([tags["actor_id"], tags["episode_id"], tags["t"]], axis=1).astype(np.float32)
    np.testing.assert_array_equal(batch.obs.numpy(), want)
    np.testing.assert_array_equal(batch.next_obs.numpy(), want + [0, 0, 1])


def test_sample_indices_are_uniform_over_valid_transitions() -> None:
    buf = ReplayBuffer(state_space(), ACTION_DIM, capacity=40)
    for t in range(3):  # one-step-apart episodes leave many non-valid terminal slots
        add_step(buf, 0, t, 0, "terminated")
    for t in range(10):
        add_step(buf, 1, 0, t)
    draws = buf.sample_indices(26_000, np.random.default_rng(6))
    counts = np.bincount(draws, minlength=40)
    assert set(np.flatnonzero(counts)) == set(valid_slots(buf))
    assert counts[valid_slots(buf)].min() > 1700 and counts.max() < 2300  # 2000 expected


def test_sampling_an_empty_buffer_raises_a_clear_error() -> None:
    buf = ReplayBuffer(state_space(), ACTION_DIM, capacity=10)
    with pytest.raises(EmptyBufferError, match="no complete transition"):
        buf.sample(4, np.random.default_rng(0))


# ----------------------------------------------------------------------------------- add_many
def chunk_arrays(space: spaces.Space, rows: list[tuple[int, int, str]], actor: int) -> dict:
    """add_many keyword arguments for (episode, t, end) rows of one actor."""

    def obs(shift: int) -> Any:
        items = [encode(space, actor, e, t + shift) for e, t, _ in rows]
        return {key: np.stack([o[key] for o in items]) for key in items[0]}

    return {
        "obs": obs(0),
        "next_obs": obs(1),
        "action": np.stack([action_of(actor, e, t) for e, t, _ in rows]),
        "reward": np.array([reward_of(actor, e, t) for e, t, _ in rows], np.float32),
        "terminated": np.array([end == "terminated" for _, _, end in rows]),
        "truncated": np.array([end == "truncated" for _, _, end in rows]),
        "episode_id": np.array([e for e, _, _ in rows]),
        "t": np.array([t for _, t, _ in rows]),
        "source": np.array(["demo" if e % 2 else "online" for e, _, _ in rows]),
        "policy_version": np.array([e * 3 for e, _, _ in rows]),
        "actor_id": actor,
        "extras": {"dyn_params": np.array([[e, t, 0.5, -1.0] for e, t, _ in rows], np.float32)},
    }


def test_add_many_stores_exactly_what_repeated_add_stores() -> None:
    space = camera_space()
    extras = {"dyn_params": (4,)}
    one_by_one = ReplayBuffer(space, ACTION_DIM, capacity=50, extras=extras)
    chunked = ReplayBuffer(space, ACTION_DIM, capacity=50, extras=extras)
    rng = np.random.default_rng(7)
    stream = [(e, t, end) for a, e, t, end in interleaved_stream(rng, 2, 1200) if a == 1]
    start = 0
    while start < len(stream):
        rows = stream[start : start + int(rng.integers(1, 80))]  # up to > capacity: wraps inside
        start += len(rows)
        chunk = chunk_arrays(space, rows, actor=1)
        chunked.add_many(**chunk)
        for i in range(len(rows)):
            one_by_one.add(
                **{k: v if k == "actor_id" else (
                    {n: a[i] for n, a in v.items()} if isinstance(v, dict) else v[i]
                ) for k, v in chunk.items()}
            )  # fmt: skip
        for buf in (one_by_one, chunked):  # another actor in between
            add_step(buf, 7, start, 0, extras={"dyn_params": np.zeros(4)})

    assert_same_arrays(snapshot(one_by_one), snapshot(chunked))
    assert len(one_by_one) == len(chunked) > 0
    assert one_by_one._pending == chunked._pending


# ---------------------------------------------------------------------------------- save/load
def filled_buffer(capacity: int = 37) -> ReplayBuffer:
    buf = ReplayBuffer(camera_space(), ACTION_DIM, capacity=capacity, extras={"dyn_params": (2,)})
    for actor, episode, t, end in interleaved_stream(np.random.default_rng(8), 3, 200):
        add_step(buf, actor, episode, t, end, extras={"dyn_params": [episode, t]})
    assert buf.num_open_episodes > 0
    return buf


def test_save_then_load_gives_an_identical_buffer_with_the_same_future(tmp_path: Path) -> None:
    buf = filled_buffer()
    path = tmp_path / "replay.npz"
    buf.save(path)
    loaded = ReplayBuffer.load(path, camera_space(), ACTION_DIM)

    assert_same_arrays(snapshot(buf), snapshot(loaded))
    assert len(loaded) == len(buf)
    a, b = buf.sample(64, np.random.default_rng(9)), loaded.sample(64, np.random.default_rng(9))
    for name in ("front", "wrist", "state"):
        assert torch.equal(a.obs[name], b.obs[name])
        assert torch.equal(a.next_obs[name], b.next_obs[name])
    assert torch.equal(a.action, b.action) and torch.equal(a.terminated, b.terminated)
    for actor, episode, t, end in interleaved_stream(np.random.default_rng(10), 3, 100):
        for target in (buf, loaded):  # open episodes continue identically in both
            add_step(target, actor, episode + 100, t, end, extras={"dyn_params": [0, t]})
    assert_same_arrays(snapshot(buf), snapshot(loaded))


def test_a_failed_save_leaves_the_previous_file_and_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "replay.npz"
    filled_buffer().save(path)
    good = path.read_bytes()

    def crash_mid_write(file: Any, **arrays: np.ndarray) -> None:
        file.write(b"PK\x03\x04 half of a zip")
        raise OSError("No space left on device")

    monkeypatch.setattr(replay_module.np, "savez", crash_mid_write)
    with pytest.raises(OSError, match="No space left"):
        ReplayBuffer(camera_space(), ACTION_DIM, capacity=5, extras={"dyn_params": (2,)}).save(path)

    assert path.read_bytes() == good
    assert os.listdir(tmp_path) == ["replay.npz"]


def test_a_leftover_temp_file_from_a_killed_save_does_not_affect_load_or_save(
    tmp_path: Path,
) -> None:
    path = tmp_path / "replay.npz"
    buf = filled_buffer()
    buf.save(path)
    leftover = tmp_path / ".replay.npz.abc123.tmp"
    leftover.write_bytes(path.read_bytes()[:1000])  # what a killed writer leaves behind

    assert_same_arrays(snapshot(ReplayBuffer.load(path, camera_space(), ACTION_DIM)), snapshot(buf))
    buf.save(path)
    assert_same_arrays(snapshot(ReplayBuffer.load(path, camera_space(), ACTION_DIM)), snapshot(buf))


@pytest.mark.parametrize("damage", ["truncate", "flip_bytes", "not_a_zip"])
def test_a_truncated_or_corrupt_file_gives_a_clear_error(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "replay.npz"
    filled_buffer().save(path)
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "flip_bytes":
        middle = len(data) // 3
        data[middle : middle + 64] = bytes(255 - b for b in data[middle : middle + 64])
    else:
        data = bytearray(b"this is not a replay buffer at all")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(bytes(data))

    with pytest.raises(ReplayFileError, match=r"bad\.npz: .*truncated or corrupt"):
        ReplayBuffer.load(bad, camera_space(), ACTION_DIM)


def _set_zip_field(data: bytearray, value: int, local_offset: int, central_offset: int) -> None:
    """Write a 2-byte field into every local and central zip header of `data`."""
    for signature, offset in ((b"PK\x03\x04", local_offset), (b"PK\x01\x02", central_offset)):
        at = data.find(signature)
        while at != -1:
            data[at + offset : at + offset + 2] = value.to_bytes(2, "little")
            at = data.find(signature, at + 4)


@pytest.mark.parametrize(
    "damage",
    ["unknown_compression", "claims_encryption", "unclosed_npy_header"],
)
def test_damage_numpy_or_zipfile_report_oddly_is_still_a_replay_file_error(
    tmp_path: Path, damage: str
) -> None:
    path = tmp_path / "replay.npz"
    filled_buffer().save(path)
    data = bytearray(path.read_bytes())
    if damage == "unknown_compression":  # zipfile: NotImplementedError
        _set_zip_field(data, 99, local_offset=8, central_offset=10)
    elif damage == "claims_encryption":  # zipfile: RuntimeError
        _set_zip_field(data, 1, local_offset=6, central_offset=8)
    else:  # numpy's header parser: tokenize.TokenError
        at = data.find(b"{'descr'")
        end = data.find(b"}", at)
        data[end : end + 1] = b" "
    bad = tmp_path / "bad.npz"
    bad.write_bytes(bytes(data))
    with pytest.raises(ReplayFileError, match=r"bad\.npz: .*truncated or corrupt"):
        ReplayBuffer.load(bad, camera_space(), ACTION_DIM)


def test_load_refuses_pickled_arrays_without_unpickling(tmp_path: Path) -> None:
    path = tmp_path / "evil.npz"
    np.savez(path, action=np.array([{"payload": 1}], dtype=object))
    with pytest.raises(ReplayFileError, match="evil.npz"):
        ReplayBuffer.load(path, camera_space(), ACTION_DIM)


@pytest.mark.parametrize(
    ("space", "action_dim", "message"),
    [
        (
            camera_space(side=16),
            ACTION_DIM,
            r"'obs/front' has shape \(37, 8, 8, 3\).*expected shape \(37, 16, 16, 3\)",
        ),
        (state_space(), ACTION_DIM, r"unexpected"),
        (camera_space(), 3, r"'action' has shape \(37, 2\).*action_dim"),
    ],
)
def test_load_with_another_space_or_action_dim_gives_a_clear_error(
    tmp_path: Path, space: spaces.Space, action_dim: int, message: str
) -> None:
    path = tmp_path / "replay.npz"
    filled_buffer().save(path)
    with pytest.raises(ReplayFileError, match=message):
        ReplayBuffer.load(path, space, action_dim)


# ---------------------------------------------------------------------------------- bad input
def good_add_kwargs(space: spaces.Space) -> dict[str, Any]:
    return {
        "obs": encode(space, 0, 0, 0),
        "action": action_of(0, 0, 0),
        "reward": 1.0,
        "next_obs": encode(space, 0, 0, 1),
        "terminated": False,
        "truncated": False,
        "episode_id": 0,
        "t": 0,
        "extras": {"dyn_params": np.zeros(2, np.float32)},
    }


def with_obs(key: str, value: np.ndarray) -> dict[str, Any]:
    obs = encode(camera_space(), 0, 0, 0)
    return {"obs": obs | {key: value}}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            with_obs("front", np.zeros((8, 9, 3), np.uint8)),
            r"obs\['front'\]: got shape \(8, 9, 3\), expected \(8, 8, 3\)",
        ),  # noqa: E501
        (
            with_obs("front", np.zeros((8, 8, 3), np.float32)),
            r"obs\['front'\]: got dtype float32, expected uint8",
        ),  # noqa: E501
        (
            with_obs("state", np.array([0, np.inf, 0], np.float32)),
            r"obs\['state'\] holds NaN or Inf",
        ),  # noqa: E501
        (
            {"obs": {"front": np.zeros((8, 8, 3), np.uint8)}},
            r"obs: got \['front'\], expected a dict with keys",
        ),  # noqa: E501
        ({"action": np.zeros(3, np.float32)}, r"action: got shape \(3,\), expected \(2,\)"),
        ({"action": np.array([0.0, np.nan])}, r"action holds NaN or Inf"),
        ({"reward": float("nan")}, r"reward holds NaN or Inf"),
        ({"reward": "1.0"}, r"reward: got dtype <U3"),
        ({"source": "eval"}, r"source: got 'eval'; evaluation transitions never enter"),
        ({"source": "simulator"}, r"unknown transition source 'simulator'"),
        ({"t": -1}, r"t: got values in \[-1, -1\]"),
        ({"extras": {}}, r"extras: got fields \[\], expected \['dyn_params'\]"),
        ({"extras": {"dyn_params": [0.0, np.inf]}}, r"extras\['dyn_params'\] holds NaN or Inf"),
    ],
)
def test_bad_input_is_rejected_and_leaves_the_buffer_unchanged(
    change: dict[str, Any], message: str
) -> None:
    buf = filled_buffer()
    before, size, open_episodes = snapshot(buf), len(buf), dict(buf._pending)
    with pytest.raises(ValueError, match=message):
        buf.add(**(good_add_kwargs(camera_space()) | change))
    assert_same_arrays(before, snapshot(buf))
    assert len(buf) == size and buf._pending == open_episodes


def test_add_many_rejects_a_bad_row_and_adds_none_of_the_chunk() -> None:
    buf = filled_buffer()
    before = snapshot(buf)
    chunk = chunk_arrays(camera_space(), [(50, t, "") for t in range(6)], actor=0)
    chunk["extras"] = {"dyn_params": chunk["extras"]["dyn_params"][:, :2]}
    chunk["reward"][4] = np.nan
    with pytest.raises(ValueError, match="reward holds NaN or Inf"):
        buf.add_many(**chunk)
    assert_same_arrays(before, snapshot(buf))


def test_extras_and_tags_are_stored_per_transition() -> None:
    buf = ReplayBuffer(state_space(), ACTION_DIM, capacity=10, extras={"dyn_params": (2,)})
    add_step(buf, 3, 8, 5, source="sim", policy_version=42, extras={"dyn_params": [0.1, 0.2]})
    tags = buf.tags(valid_slots(buf))
    assert json.loads(json.dumps({k: v.tolist() for k, v in tags.items()})) == {
        "source": [source_code("sim")],
        "episode_id": [8],
        "t": [5],
        "policy_version": [42],
        "actor_id": [3],
        "truncated": [False],
        "dyn_params": [[pytest.approx(0.1), pytest.approx(0.2)]],
    }
