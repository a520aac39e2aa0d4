"""The learner loop in-process: ingestion, rate limiter, metrics, checkpoints and resume."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from serl.agents.sac import SACConfig
from serl.agreement import env_spaces, transition_spec
from serl.checkpoint import CheckpointError, read_checkpoint
from serl.data.replay import ReplayBuffer
from serl.learner import Learner, LearnerConfig, LearnerError
from serl.processes import free_port
from serl.transport.client import ActorClient
from serl.transport.protocol import SOURCES, Chunk, Handshake, chunk_arrays
from serl.transport.server import EpisodeStats, LearnerServer, PollResult
from tests.transport.helpers import RawPeer

pytestmark = pytest.mark.timeout(60)

TINY = SACConfig(hidden_dims=(16,), batch_size=8)


def config(tmp_path: Path, **overrides) -> LearnerConfig:
    base = dict(
        env="Pendulum-v1",
        agent_cfg=TINY,
        data_endpoint="tcp://127.0.0.1:0",
        weights_endpoint="tcp://127.0.0.1:0",
        min_buffer=20,
        buffer_capacity=2_000,
        publish_every=5,
        checkpoint_every_s=1e9,
        log_every_s=1e9,
        run_dir=tmp_path / "run",
        threads=1,
    )
    return LearnerConfig(**(base | overrides))


def pendulum_chunk(
    n: int, *, episode: int = 0, t0: int = 0, value: float = 0.1, version: int = -1
) -> dict[str, np.ndarray]:
    """n consecutive Pendulum transitions of one episode, all observations equal to `value`."""
    return chunk_arrays(
        obs={"state": np.full((n, 3), value, np.float32)},
        next_obs={"state": np.full((n, 3), value + 0.01, np.float32)},
        action=np.zeros((n, 1), np.float32),
        reward=np.full(n, -1.0, np.float32),
        terminated=np.zeros(n, bool),
        truncated=np.zeros(n, bool),
        source=np.full(n, SOURCES.index("sim"), np.uint8),
        episode_id=np.full(n, episode, np.int64),
        t=np.arange(t0, t0 + n, dtype=np.int64),
        policy_version=np.full(n, version, np.int64),
    )


def inject(learner: Learner, arrays: dict[str, np.ndarray], actor: str = "a", seq: int = 0):
    """Hand a chunk to the learner as if the transport had accepted it."""
    learner.ingest(PollResult(chunks=[Chunk(actor, 1, seq, arrays)]))


@pytest.fixture
def make_learner() -> Iterator[Callable[..., Learner]]:
    made: list[Learner] = []

    def make(cfg: LearnerConfig) -> Learner:
        learner = Learner(cfg)
        made.append(learner)
        return learner

    yield make
    for learner in made:
        learner.close()


def client_for(
    learner: Learner,
    actor_id: str = "a",
    *,
    heartbeat_s: float = 0.2,
    silence_timeout_s: float = 2.0,
) -> ActorClient:
    return ActorClient(
        learner.server.data_endpoint,
        learner.server.weights_endpoint,
        learner.spec,
        learner.agreement.hash,
        actor_id,
        heartbeat_s=heartbeat_s,
        silence_timeout_s=silence_timeout_s,
    )


def step_until(learner: Learner, done: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, "condition not reached in time"
        learner.step()


def test_rate_limiter_never_lets_updates_exceed_the_ratio_of_new_env_steps(
    tmp_path, make_learner
) -> None:
    learner = make_learner(config(tmp_path, utd_ratio=0.5, min_buffer=20))
    inject(learner, pendulum_chunk(15))
    for _ in range(5):
        learner.step()
    assert learner.counters.updates == 0  # below min_buffer
    inject(learner, pendulum_chunk(25, t0=15), seq=1)  # 40 env steps: 0.5 * (40 - 20) = 10
    for _ in range(30):
        learner.step()
    assert learner.counters.updates == 10
    assert learner.server.weights_version == 10  # published when it ran out of data


def test_nan_or_inf_in_a_chunk_is_rejected_at_ingestion_and_the_buffer_is_unchanged(
    tmp_path, make_learner
) -> None:
    learner = make_learner(config(tmp_path))
    peer = RawPeer(learner.server.data_endpoint)
    try:
        hello = Handshake(learner.agreement.hash, learner.spec, actor_id="raw").to_fields()
        peer.send_message("hello", hello | {"conn": 1, "weights_version": -1, "first_seq": 0})
        welcome = peer.recv(learner.server)
        assert welcome is not None and welcome.kind == "welcome"
        nan_chunk = pendulum_chunk(4)
        nan_chunk["obs/state"][2, 1] = np.nan
        inf_chunk = pendulum_chunk(4, t0=4)
        inf_chunk["reward"][0] = np.inf
        good = pendulum_chunk(4, t0=8)
        for seq, arrays in enumerate((nan_chunk, inf_chunk, good)):
            peer.send_message("chunk", {"seq": seq, "conn": 1}, arrays)
        step_until(learner, lambda: learner.counters.chunks == 1)
    finally:
        peer.close()
    assert learner.server.stats["rejected:non_finite"] == 2
    assert len(learner.buffer) == 4
    assert learner.counters.env_steps == 4
    tags = learner.buffer.tags(np.flatnonzero(learner.buffer._valid))
    assert sorted(tags["t"].tolist()) == [8, 9, 10, 11]


def test_a_chunk_the_buffer_refuses_is_counted_and_dropped(tmp_path, make_learner) -> None:
    learner = make_learner(config(tmp_path))
    bad = pendulum_chunk(4)
    bad["source"][:] = 6  # "eval" in the buffer's table: evaluation data never trains
    inject(learner, bad)
    no_tags = pendulum_chunk(4)
    del no_tags["t"]
    inject(learner, no_tags, seq=1)
    assert len(learner.buffer) == 0
    assert learner.stats["rejected:bad_values"] == 1
    assert learner.stats["rejected:missing_tags"] == 1


@pytest.mark.parametrize(
    "field, value, why",
    [
        ("reward", 3e38, "max_abs_reward"),
        ("reward", -1e30, "max_abs_reward"),
        ("obs/state", 3e38, "max_abs_observation"),
        ("next_obs/state", -2e7, "max_abs_observation"),
        ("action", 1e30, "outside the action space"),
        ("action", -1.01, "outside the action space"),
    ],
)
def test_a_finite_but_huge_value_is_refused_with_its_chunk(
    tmp_path, make_learner, caplog, field, value, why
) -> None:
    learner = make_learner(config(tmp_path))
    bad = pendulum_chunk(4)
    bad[field][1] = value
    inject(learner, bad)
    inject(learner, pendulum_chunk(4, t0=4), seq=1)
    assert learner.stats["rejected:out_of_range"] == 1
    assert len(learner.buffer) == 4 and learner.counters.env_steps == 4
    assert why in caplog.text


def test_a_policy_version_below_minus_one_is_refused_with_its_chunk(
    tmp_path, make_learner, caplog
) -> None:
    learner = make_learner(config(tmp_path))
    bad = pendulum_chunk(4, version=3)
    bad["policy_version"][2] = -(2**63)
    inject(learner, bad)
    assert learner.stats["rejected:out_of_range"] == 1 and len(learner.buffer) == 0
    assert "policy_version" in caplog.text


def test_a_policy_version_above_the_learners_is_kept_but_left_out_of_the_lag(
    tmp_path, make_learner
) -> None:
    learner = make_learner(config(tmp_path, min_buffer=10_000))
    published = learner.server.weights_version
    inject(learner, pendulum_chunk(4, version=published))
    inject(learner, pendulum_chunk(4, t0=4, version=2**62), seq=1)
    record = learner.log_metrics()
    assert len(learner.buffer) == 8
    assert learner.stats["policy_version_ahead"] == 4
    assert record["learner/policy_lag_mean"] == 0 and record["learner/policy_lag_max"] == 0


def test_values_inside_the_bounds_are_kept(tmp_path, make_learner) -> None:
    learner = make_learner(config(tmp_path, max_abs_reward=10.0))
    ok = pendulum_chunk(4)
    ok["reward"][:] = -10.0
    ok["action"][:] = 1.0
    inject(learner, ok)
    assert len(learner.buffer) == 4 and not learner.stats


def test_a_diverged_update_stops_the_learner_and_keeps_the_good_checkpoint(
    tmp_path, make_learner, caplog
) -> None:
    learner = make_learner(config(tmp_path, min_buffer=10))
    inject(learner, pendulum_chunk(30))
    step_until(learner, lambda: learner.counters.updates >= 3)
    good = learner.checkpoint()
    good_bytes = good.read_bytes()
    with torch.no_grad():  # what a 3e38 reward did before it was refused: NaN everywhere
        for p in learner.agent.critic.parameters():
            p.fill_(float("nan"))
    with pytest.raises(LearnerError, match=r"diverged.*last checkpoint .* is kept"):
        step_until(learner, lambda: False)
    with pytest.raises(CheckpointError, match="NaN/Inf in .*critic"):
        learner.checkpoint()
    learner.shutdown()  # the end-of-run checkpoint is refused too, loudly
    assert "the last good checkpoint" in caplog.text
    assert good.read_bytes() == good_bytes
    read_checkpoint(good)


def test_metrics_record_rates_lag_buffer_size_losses_and_eval_statistics(
    tmp_path, make_learner
) -> None:
    learner = make_learner(config(tmp_path, min_buffer=10))
    inject(learner, pendulum_chunk(30, version=-1))
    for _ in range(12):
        learner.step()
    inject(learner, pendulum_chunk(10, t0=30, version=5), seq=1)
    for ret, success in ((-100.0, True), (-300.0, False)):
        stats = {"eval": True, "return": ret, "length": 200, "success": success}
        learner.ingest(PollResult(episode_stats=[EpisodeStats("a", 1, stats)]))
    train_stats = {"eval": False, "return": -900.0, "length": 200, "jitter_p99_ms": 1.5}
    learner.ingest(PollResult(episode_stats=[EpisodeStats("a", 1, train_stats)]))
    record = learner.log_metrics()
    assert record["eval/return_mean"] == -200.0
    assert record["eval/return_std"] == 100.0
    assert record["eval/success_rate"] == 0.5
    assert record["train/return_mean"] == -900.0
    assert record["actor/jitter_p99_ms"] == 1.5
    assert record["learner/policy_lag_mean"] == learner.server.weights_version - 5
    assert record["buffer/size"] == 40 and record["learner/updates"] == 12
    assert record["learner/updates_per_s"] > 0 and record["learner/ingest_transitions_per_s"] > 0
    assert math.isfinite(record["critic/loss"]) and record["process/rss_mb"] > 0
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert json.loads(lines[-1])["step"] == 40


def test_checkpoint_writes_the_buffer_first_then_names_it_and_removes_older_files(
    tmp_path, make_learner
) -> None:
    learner = make_learner(config(tmp_path))
    run = tmp_path / "run"
    inject(learner, pendulum_chunk(30))
    learner.checkpoint()
    (run / ".replay-000002.npz.abc.tmp").write_bytes(b"half a file")  # a killed write
    inject(learner, pendulum_chunk(10, t0=30), seq=1)
    learner.checkpoint()
    header, _ = read_checkpoint(run / "checkpoint.safetensors")
    assert header["metadata"]["replay_file"] == "replay-000002.npz"
    assert sorted(p.name for p in run.glob("*.npz")) == ["replay-000002.npz"]
    assert not list(run.glob(".*.tmp"))
    assert header["metadata"]["counters"]["env_steps"] == 40


def test_a_learner_writing_its_buffer_answers_its_actors_and_ingests_what_came_meanwhile(
    tmp_path, make_learner, monkeypatch
) -> None:
    learner = make_learner(config(tmp_path))
    client = client_for(learner, heartbeat_s=0.1, silence_timeout_s=0.5)
    save = ReplayBuffer.save

    def slow_save(buffer: ReplayBuffer, path: Path) -> None:  # a big buffer on a busy disk
        time.sleep(2.0)
        save(buffer, path)

    monkeypatch.setattr(ReplayBuffer, "save", slow_save)
    try:
        client.send_chunk(pendulum_chunk(30))
        step_until(learner, lambda: len(learner.buffer) == 30)
        client.send_chunk(pendulum_chunk(10, t0=30))  # read while the buffer is written
        learner.checkpoint()
        assert client.counters().get("reconnects", 0) == 0  # 2 s of writing, 0.5 s silence timeout
        assert len(learner.buffer) == 40 and learner.counters.env_steps == 40
        header, _ = read_checkpoint(tmp_path / "run" / "checkpoint.safetensors")
        assert header["metadata"]["counters"]["env_steps"] == 30  # what the saved buffer holds
        assert list(header["metadata"]["cursors"]["a"].values()) == [0]  # chunk 0 only
    finally:
        client.close(timeout_s=0)


def test_a_learner_whose_updates_are_slow_answers_its_actors_while_it_updates(
    tmp_path, make_learner
) -> None:
    learner = make_learner(config(tmp_path))
    update = learner.agent.update

    def slow_update(batch):  # DrQ on a CPU: 35 s per update
        time.sleep(1.5)
        return update(batch)

    learner.agent.update = slow_update
    client = client_for(learner, heartbeat_s=0.1, silence_timeout_s=0.7)
    try:
        client.send_chunk(pendulum_chunk(30))
        step_until(learner, lambda: learner.counters.updates == 1)  # slow, so the next threaded
        pump_until(learner.server, lambda: client.connected)  # back from that update's silence
        reconnects = client.counters().get("reconnects", 0)
        client.send_chunk(pendulum_chunk(10, t0=30))  # arrives during the next update
        step_until(learner, lambda: learner.counters.updates == 3)
        assert client.counters().get("reconnects", 0) == reconnects  # 2 x 1.5 s, 0.7 s timeout
        assert len(learner.buffer) == 40  # what arrived meanwhile was ingested after
    finally:
        client.close(timeout_s=0)


def test_a_buffer_write_that_fails_on_its_thread_fails_the_checkpoint(
    tmp_path, make_learner, monkeypatch
) -> None:
    learner = make_learner(config(tmp_path))
    inject(learner, pendulum_chunk(30))
    learner.checkpoint()

    def disk_full(buffer: ReplayBuffer, path: Path) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ReplayBuffer, "save", disk_full)
    inject(learner, pendulum_chunk(10, t0=30), seq=1)
    with pytest.raises(OSError, match="No space left"):
        learner.checkpoint()
    header, _ = read_checkpoint(tmp_path / "run" / "checkpoint.safetensors")
    assert header["metadata"]["counters"]["env_steps"] == 30  # the good checkpoint stays


@pytest.mark.parametrize("resume", [False, True])
def test_a_learner_starting_without_a_checkpoint_deletes_a_killed_writes_files(
    tmp_path, make_learner, resume: bool
) -> None:
    run = tmp_path / "run"
    run.mkdir()
    leftovers = [run / ".replay-000001.npz.k1ll.tmp", run / ".checkpoint.safetensors.k1ll.tmp"]
    for path in leftovers:
        path.write_bytes(bytes(1 << 20))  # what a run killed inside its first checkpoint left
    (run / "replay-000001.npz").write_bytes(bytes(1 << 20))  # a buffer no checkpoint names
    make_learner(config(tmp_path, resume=resume))
    assert not any(path.exists() for path in leftovers)
    assert not list(run.glob("*.npz"))


def test_a_kill_between_buffer_and_checkpoint_writes_resumes_from_the_older_pair(
    tmp_path, make_learner
) -> None:
    cfg = config(tmp_path)
    learner = make_learner(cfg)
    inject(learner, pendulum_chunk(30))
    learner.checkpoint()
    inject(learner, pendulum_chunk(10, t0=30), seq=1)
    learner.buffer.save(cfg.run_dir / "replay-000002.npz")  # killed right after this write
    learner.close()
    resumed = make_learner(config(tmp_path, resume=True))
    assert len(resumed.buffer) == 30 and resumed.counters.env_steps == 30
    assert not (cfg.run_dir / "replay-000002.npz").exists()


def test_resume_restores_agent_buffer_counters_sampler_and_cursors(tmp_path, make_learner) -> None:
    learner = make_learner(config(tmp_path))
    client = client_for(learner)
    try:
        for seq in range(4):
            client.send_chunk(pendulum_chunk(10, t0=10 * seq))
        step_until(learner, lambda: learner.counters.updates == 20)  # 1 x (40 - 20): all done
        learner.checkpoint()
        saved_params = {k: v.clone() for k, v in learner.agent.policy_state().items()}
        saved = (learner.counters, len(learner.buffer), learner.server.cursors())
        saved_rng = learner.sampler.state_dict()
        pump_until(learner.server, lambda: client.pending() == 0)  # the commit reached it
    finally:
        client.close(timeout_s=0)
    learner.close()

    resumed = make_learner(config(tmp_path, resume=True))
    assert (resumed.counters, len(resumed.buffer), resumed.server.cursors()) == saved
    assert resumed.sampler.state_dict() == saved_rng
    for name, value in resumed.agent.policy_state().items():
        torch.testing.assert_close(value, saved_params[name])
    assert resumed.server.weights_version == saved[0].updates  # versions continue


def test_resume_refuses_a_checkpoint_of_another_config_and_names_the_difference(
    tmp_path, make_learner
) -> None:
    learner = make_learner(config(tmp_path))
    inject(learner, pendulum_chunk(5))
    learner.checkpoint()
    learner.close()
    other = SACConfig(hidden_dims=(32,), batch_size=8)
    with pytest.raises(CheckpointError, match=r"agent_cfg.hidden_dims: saved \[16\], now \[32\]"):
        Learner(config(tmp_path, agent_cfg=other, resume=True))


def test_a_fresh_start_refuses_to_overwrite_an_existing_checkpoint(tmp_path, make_learner) -> None:
    learner = make_learner(config(tmp_path))
    learner.checkpoint()
    learner.close()
    with pytest.raises(LearnerError, match="pass --resume"):
        Learner(config(tmp_path))


def test_run_stops_at_max_env_steps_after_catching_up_and_checkpoints(
    tmp_path, make_learner
) -> None:
    learner = make_learner(config(tmp_path, max_env_steps=40, utd_ratio=0.5))
    inject(learner, pendulum_chunk(40))
    counters = learner.run()
    assert counters.updates == 10  # 0.5 * (40 - 20)
    header, _ = read_checkpoint(tmp_path / "run" / "checkpoint.safetensors")
    assert header["metadata"]["counters"]["updates"] == 10


def test_weights_of_a_restarted_learner_replace_newer_versions_of_the_old_one() -> None:
    """A learner resumed from an older checkpoint publishes lower versions; actors take them."""
    spec = transition_spec(*env_spaces("Pendulum-v1"))
    data, weights = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    policy = {"w": np.ones(4, np.float32)}
    old = LearnerServer(spec, "h", data, weights, durable=True, incarnation=1)
    client = ActorClient(data, weights, spec, "h", "a", heartbeat_s=0.1, silence_timeout_s=1.0)
    try:
        old.publish_weights(50, policy)
        pump_until(old, lambda: client.latest_weights() is not None)
        old.close()
        new = LearnerServer(spec, "h", data, weights, durable=True, incarnation=2)
        try:
            new.publish_weights(3, {"w": np.full(4, 3.0, np.float32)})
            pump_until(new, lambda: client.latest_weights().learner == 2)
            got = client.latest_weights()
            assert (got.version, float(got.tensors["w"][0])) == (3, 3.0)
        finally:
            new.close()
    finally:
        client.close(timeout_s=0)


def pump_until(server: LearnerServer, done: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, "condition not reached in time"
        server.poll(10)
