"""The learner process: ingest actors' transitions, update the agent, publish its policy.

One thread, one loop (DESIGN §4)::

    poll the transport      -> validated chunks into the replay buffer, episode statistics
    update (rate-limited)   -> at most `utd_ratio` agent updates per received env step
    publish                 -> policy weights every `publish_every` updates (and when idle)
    log / checkpoint        -> metrics every `log_every_s`, a checkpoint every
                               `checkpoint_every_s`, on SIGTERM/SIGINT and at the end

(While a checkpoint writes the replay buffer, which with camera frames takes seconds, or an
update takes longer than `SLOW_UPDATE_S`, that work runs on a second thread and the loop's
thread keeps answering actors, who would otherwise reconnect; see `_answering_actors`.)

Rate limiter: an update runs only while the replay buffer holds `min_buffer` transitions and
`updates < utd_ratio × (env_steps − min_buffer)`, so the learner never trains ahead of its data
however fast it is. One "update" is one `agent.update` call; with the RLPD preset (G = 20)
each call does 20 critic steps, so `utd_ratio` 1 there means RLPD's 20 critic steps per step.

Prior data (`prior_data`: demos or an offline dataset): a second buffer; every batch is half
online, half prior, interleaved row by row (RLPD symmetric sampling, `Batch.prior` marks the
prior rows). `offline_updates` updates on the prior data alone run first (pre-training; the
rate limiter counts only online updates). With `interventions_to_prior` the human's
corrections are also copied into the prior buffer (HIL-SERL), which then is checkpointed too.

Weights carry `version` = the number of updates done, so the policy lag of a received
transition (logged as `learner/policy_lag_*`) is counted in updates.

Checkpoint layout in `run_dir` (written in this order, so a kill at any instant leaves a
consistent pair: the checkpoint always names a buffer file that exists)::

    replay-<generation>.npz     the replay buffer, a new file each checkpoint (atomic write)
    prior-<generation>.npz      the prior buffer, only when interventions join it
    checkpoint.safetensors      agent state; metadata: counters, sampler state, transport
                                cursors, actor table, the name of its replay file, config
    (old replay-*.npz deleted)  then `server.commit(cursors)` tells actors to forget those
                                chunks: a checkpoint holds them

After a `kill -9`, `--resume` restores agent, buffer, counters, sampler, cursors and which
CURVE key owns each actor_id (so a restart is no chance to take over a robot's name); the
actors reconnect by themselves and resend every chunk after the restored cursors, so each
transition is in the buffer exactly once.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np
import torch

from serl.agents.sac import SACConfig, action_dim_of
from serl.agreement import (
    Agreement,
    env_spaces,
    observation_from_wire,
    policy_numpy,
    transition_spec,
)
from serl.build import build_agent, frame_features
from serl.checkpoint import CheckpointError, check_compatible, read_checkpoint, save_checkpoint
from serl.config import config_to_dict
from serl.data.datasets import DatasetError, add_to_buffer, load_dataset
from serl.data.diagnostics import (
    buffer_episode_returns,
    buffer_state_actions,
    state_action_coverage,
    trajectory_quality,
    unique_state_actions,
)
from serl.data.replay import ReplayBuffer
from serl.data.samplers import SymmetricSampler, UniformSampler
from serl.data.weighted import TrajectoryWeightedSampler
from serl.metrics import MetricsLogger, read_metrics
from serl.processes import StopSignal, limit_threads
from serl.transport.auth import load_server_keys
from serl.transport.protocol import SOURCES, Chunk
from serl.transport.server import EpisodeStats, LearnerServer, PollResult
from serl.transport.sockets import bind_endpoint

logger = logging.getLogger(__name__)
T = TypeVar("T")

CHECKPOINT_NAME = "checkpoint.safetensors"
REPLAY_PREFIX = "replay-"
PRIOR_PREFIX = "prior-"
IDLE_POLL_MS = 20
"""Poll wait when no update is allowed: short enough to react, long enough not to spin."""
HOLD_BYTES = 256 * 2**20
"""Most chunk bytes held, not yet ingested, while a long task runs on a second thread (see
`_answering_actors`); beyond it the learner stops reading the transport until the task ends."""
SLOW_UPDATE_S = 1.0
"""An update slower than this (DrQ on a CPU: about 35 s) makes the next ones run on a second
thread while the loop's thread answers the actors."""
DRAIN_S = 2.0
"""After the last checkpoint, keep answering actors this long so they receive its commit."""
ACTION_TOLERANCE = 1e-4
"""How far (float rounding of a rescaled action) an action may sit outside its space."""
_ONLINE = SOURCES.index("online")
_INTERVENTION = SOURCES.index("intervention")
SACO_BINS = 10
"""Cells per dimension of the SACo grid."""
PRIOR_ACTOR_ID = 1_000_000
"""`actor_id` tag of prior-data transitions (actors are numbered from 0)."""
ACTOR_STATS = ("interventions", "nonfinite_actions", "jitter_p50_ms", "jitter_p99_ms")
"""Per-episode actor statistics logged as `actor/<name>` means."""


class LearnerError(RuntimeError):
    """The learner cannot start as configured; the message says what to change."""


StoredRow = tuple[str, int, int, int, int]
"""(actor_id, incarnation, episode_id, t, policy_version) of one transition in the buffer."""


def stored_transitions(run_dir: Path) -> tuple[dict[str, Any], list[StoredRow]]:
    """The metadata of `run_dir`'s checkpoint and one row per transition its buffer holds.

    What exactly-once checks count: each row names the actor process that stepped it and
    where in which episode, so a lost or doubled transition shows as a gap or a repeat.
    """
    header, _ = read_checkpoint(run_dir / "checkpoint.safetensors")
    meta = header["metadata"]
    observation_space, action_space = env_spaces(meta["env"])
    buffer = ReplayBuffer.load(
        run_dir / meta["replay_file"], observation_space, action_dim_of(action_space)
    )
    names = {index: (actor, incarnation) for actor, incarnation, index in meta["actors"]}
    tags = buffer.tags(buffer.valid_indices())
    columns = (tags["actor_id"], tags["episode_id"], tags["t"], tags["policy_version"])
    rows = [(*names[a], int(e), int(t), int(v)) for a, e, t, v in zip(*columns, strict=True)]
    return meta, rows


@dataclass(frozen=True)
class LearnerConfig:
    env: str = "Pendulum-v1"
    """Environment id; the learner only reads its observation and action spaces."""
    agent: str = "sac"
    """Agent preset (sets the defaults of --agent-cfg.*): sac, rlpd, drq, bc, h2o, famo2o, moorl,
    drrpo or iwocs (serl/agents/registry.py says what each is)."""
    agent_cfg: SACConfig = field(default_factory=SACConfig)
    """Agent hyper-parameters; actors must be started with the same ones."""
    data_endpoint: str = "tcp://127.0.0.1:5555"
    """Where actors send transitions (bind address; non-loopback needs --keys-dir or --insecure)."""
    weights_endpoint: str = "tcp://127.0.0.1:5556"
    """Where the policy weights are published."""
    keys_dir: Path | None = None
    """CURVE key directory from `serl keys generate`; turns on encryption and authentication."""
    insecure: bool = False
    """Allow binding a non-loopback address without keys (trusted networks only)."""
    max_message_mb: float = 128.0
    """Largest inbound message (one chunk) at most; the learner lowers it to the largest chunk
    this env's spaces allow (`TransitionSpec.limits`), and a frame over the largest array of that
    chunk is refused by ZeroMQ before it is stored (ZMQ_MAXMSGSIZE)."""
    max_inbound_mb: float = 1024.0
    """What ZeroMQ may hold for all actors' unread messages together; beyond it the connection
    that holds most is dropped (its actor reconnects and resends)."""
    utd_ratio: float = 1.0
    """Target agent updates per received env step (the rate limiter's ratio)."""
    min_buffer: int = 1_000
    """Transitions in the buffer before the first update."""
    buffer_capacity: int = 200_000
    """Replay capacity in observation slots (one per transition plus one per episode)."""
    prior_data: Path | None = None
    """Dataset directory (`serl record-demos`, Minari layout) sampled 50/50 with online data,
    interleaved row by row (RLPD symmetric sampling); its rows are marked in `Batch.prior`."""
    interventions_to_prior: bool = False
    """HIL-SERL: transitions tagged `intervention` also go to the prior (demo) buffer."""
    offline_updates: int = 0
    """Agent updates on the prior data alone before online training starts (pre-training)."""
    prior_weighting: Literal["uniform", "trajectory"] = "uniform"
    """How the prior half of a batch is drawn: uniformly, or each trajectory with weight
    softmax(normalised return / 0.1) (mixed-quality offline data; serl/data/weighted.py)."""
    tq_random_return: float | None = None
    """Return of a random policy: with `tq_expert_return`, TQ of the buffers is logged."""
    tq_expert_return: float | None = None
    """Return of an expert (TQ = 1)."""
    publish_every: int = 10
    """Publish the policy every this many updates (and whenever the learner waits for data)."""
    checkpoint_every_s: float = 300.0
    """Seconds between periodic checkpoints (also on SIGTERM/SIGINT and at the end)."""
    log_every_s: float = 5.0
    """Seconds between metric records in metrics.jsonl and TensorBoard."""
    run_dir: Path = Path("runs/learner")
    """Where the checkpoint, replay buffer, metrics.jsonl, tensorboard/ and curve.png go."""
    resume: bool = False
    """Restore agent, buffer, counters, sampler and cursors from run_dir's checkpoint."""
    seed: int = 0
    """Seed of the agent and the batch sampler."""
    device: str = "cpu"
    """Torch device of the agent (cpu, cuda, cuda:1)."""
    max_env_steps: int = 0
    """Stop after this many received env steps, once the updates have caught up (0: never)."""
    threads: int = 0
    """torch CPU threads (0 keeps torch's default)."""
    max_abs_reward: float = 1e4
    """A chunk with a reward beyond ± this is dropped and counted (rejected:out_of_range): one
    finite but huge reward (a glitching sensor, a hostile peer) turns every weight NaN."""
    max_abs_observation: float = 1e6
    """The same bound on every entry of a float observation (images are uint8: bounded)."""


@dataclass
class LearnerCounters:
    """Totals that continue across resumes (saved in the checkpoint)."""

    env_steps: int = 0
    """Training transitions added to the buffer."""
    updates: int = 0
    """agent.update calls."""
    episodes: int = 0
    """Training episodes reported by actors."""
    eval_episodes: int = 0
    """Evaluation episodes reported by actors."""
    chunks: int = 0
    """Chunks added to the buffer."""
    generation: int = 0
    """Checkpoints written (names the replay file)."""
    offline_updates: int = 0
    """Updates on prior data alone (included in `updates`)."""


class _Window:
    """Sums and counts of scalars between two metric records."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = defaultdict(float)
        self.counts: Counter[str] = Counter()
        self.maxima: dict[str, float] = {}

    def add(self, name: str, value: float, count: int = 1) -> None:
        if math.isfinite(value):
            self.sums[name] += value * count
            self.counts[name] += count

    def add_max(self, name: str, value: float) -> None:
        if math.isfinite(value):
            self.maxima[name] = max(self.maxima.get(name, -math.inf), value)

    def means(self) -> dict[str, float]:
        out = {name: self.sums[name] / n for name, n in self.counts.items() if n}
        return out | self.maxima


def _number(value: Any) -> float:
    """A float from an untrusted episode statistic; NaN for anything else."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    return math.nan


def _episode_summary(prefix: str, episodes: list[tuple[float, float, Any]]) -> dict[str, float]:
    """Mean/std return, mean length and success rate of (return, length, success) tuples."""
    returns = [r for r, _, _ in episodes if math.isfinite(r)]
    if not returns:
        return {}
    lengths = [n for _, n, _ in episodes if math.isfinite(n)]
    successes = [bool(s) for _, _, s in episodes if isinstance(s, bool | int | float)]
    summary = {
        f"{prefix}/return_mean": float(np.mean(returns)),
        f"{prefix}/return_std": float(np.std(returns)),
        f"{prefix}/episodes": float(len(episodes)),
    }
    if lengths:
        summary[f"{prefix}/length_mean"] = float(np.mean(lengths))
    if successes:
        summary[f"{prefix}/success_rate"] = float(np.mean(successes))
    return summary


def rss_mb() -> float:
    """Resident memory of this process in MiB (Linux /proc; NaN elsewhere)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return math.nan
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


class Learner:
    """The learner loop; `run()` until stopped, or drive it with `step()` (tests).

    Raises LearnerError, CheckpointError or AuthError from the constructor when the run
    cannot start (checkpoint of another config, missing keys, ...), before binding anything.
    """

    def __init__(self, cfg: LearnerConfig, *, stop: StopSignal | None = None) -> None:
        limit_threads(cfg.threads)
        self.cfg = cfg
        self.stop = stop or StopSignal()
        self.run_dir = Path(cfg.run_dir)
        self.checkpoint_path = self.run_dir / CHECKPOINT_NAME
        # Keys and bind policy first: they fail closed before any work or socket.
        curve = load_server_keys(cfg.keys_dir) if cfg.keys_dir is not None else None
        for endpoint in (cfg.data_endpoint, cfg.weights_endpoint):
            bind_endpoint(endpoint, secure=curve is not None, insecure=cfg.insecure)
        self.agreement = Agreement(cfg.env, cfg.agent, cfg.agent_cfg)
        self.observation_space, self.action_space = env_spaces(cfg.env)
        self.spec = transition_spec(self.observation_space, self.action_space)
        self.agent = build_agent(
            cfg.agent,
            cfg.agent_cfg,
            self.observation_space,
            self.action_space,
            seed=cfg.seed,
            device=cfg.device,
        )
        self.action_dim = action_dim_of(self.action_space)
        self.rows = getattr(cfg.agent_cfg, "utd", 1) * cfg.agent_cfg.batch_size
        self.frame_features = frame_features(self.agent)
        self.buffer = ReplayBuffer(
            self.observation_space,
            self.action_dim,
            cfg.buffer_capacity,
            frame_features=self.frame_features,
        )
        self.prior_buffer = self._load_prior() if cfg.prior_data is not None else None
        self._weighted: TrajectoryWeightedSampler | None = None
        if cfg.interventions_to_prior and self.prior_buffer is None:
            raise LearnerError("--interventions-to-prior needs --prior-data (the demo dataset)")
        self.sampler = self._make_sampler(self.buffer)
        self.counters = LearnerCounters()
        self.actor_index: dict[tuple[str, int], int] = {}
        """(actor_id, incarnation) -> the int `actor_id` tag in the replay buffer."""
        self.stats: Counter[str] = Counter()
        """Learner-side ingestion counts: rejected:<why> for chunks the buffer refused."""

        saved = self._restore() if cfg.resume else self._check_fresh()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.server = LearnerServer(
            self.spec,
            self.agreement.hash,
            cfg.data_endpoint,
            cfg.weights_endpoint,
            curve=curve,
            insecure=cfg.insecure,
            limits=self.spec.limits(int(cfg.max_message_mb * 2**20)),
            max_inbound_bytes=int(cfg.max_inbound_mb * 2**20),
            durable=True,
        )
        if saved is not None:
            self.server.load_cursors(saved["cursors"])
            self.server.load_owners(saved.get("owners", {}))
        self.metrics = MetricsLogger(self.run_dir)
        self._closed = False
        self._window = _Window()
        self._episodes: dict[str, list[tuple[float, float, Any]]] = {"eval": [], "train": []}
        self._last_log = self._last_checkpoint = time.monotonic()
        self._last_update_s = 0.0
        self._logged_steps, self._logged_updates = self.counters.env_steps, self.counters.updates
        self._publish()
        logger.info("settings actors must share: %s", json.dumps(config_to_dict(self.agreement)))
        logger.info(
            "learner %s/%s (config %s) on %s, weights on %s; run dir %s",
            cfg.agent,
            cfg.env,
            self.agreement.hash,
            self.server.data_endpoint,
            self.server.weights_endpoint,
            self.run_dir,
        )

    # ---- prior data ---------------------------------------------------------------------

    def _load_prior(self) -> ReplayBuffer:
        """The prior dataset in its own buffer, with room for interventions if they join it."""
        path = Path(self.cfg.prior_data)
        try:
            dataset = load_dataset(path)
        except (OSError, DatasetError) as exc:
            raise LearnerError(f"--prior-data {path}: {exc}") from None
        slots = dataset.total_steps + len(dataset.episodes) + 1
        if self.cfg.interventions_to_prior:
            slots += self.cfg.buffer_capacity
        buffer = ReplayBuffer(
            self.observation_space, self.action_dim, slots, frame_features=self.frame_features
        )
        try:
            add_to_buffer(buffer, dataset.episodes, actor_id=PRIOR_ACTOR_ID)
        except ValueError as exc:
            raise LearnerError(
                f"--prior-data {path} does not fit env {self.cfg.env!r}: {exc}"
            ) from None
        if len(buffer) == 0:
            raise LearnerError(f"--prior-data {path} holds no transitions")
        logger.info("prior data: %d transitions from %s", len(buffer), path)
        return buffer

    def _make_sampler(self, online: ReplayBuffer) -> UniformSampler | SymmetricSampler:
        if self.prior_buffer is None:
            return UniformSampler(online, self.rows, seed=self.cfg.seed)
        draw = None
        if self.cfg.prior_weighting == "trajectory":
            self._weighted = TrajectoryWeightedSampler(self.prior_buffer, 1, seed=None)
            draw = self._weighted.draw
        return SymmetricSampler(
            online, self.prior_buffer, self.rows, seed=self.cfg.seed, draw_second=draw
        )

    def diagnostics(self) -> dict[str, float]:
        """TQ of the buffers (with reference returns) and SACo of the online buffer against
        the prior data (ALGORITHMS §9), on a 10-bin grid spanning the prior data."""
        cfg, out = self.cfg, {}
        buffers = {"buffer/tq": self.buffer, "buffer/prior_tq": self.prior_buffer}
        if cfg.tq_random_return is not None and cfg.tq_expert_return is not None:
            for name, buffer in buffers.items():
                returns = buffer_episode_returns(buffer) if buffer is not None else []
                if len(returns):
                    out[name] = trajectory_quality(
                        returns, cfg.tq_random_return, cfg.tq_expert_return
                    )
        if self.prior_buffer is not None and len(self.buffer):
            prior = np.concatenate(buffer_state_actions(self.prior_buffer), axis=1)
            online = np.concatenate(buffer_state_actions(self.buffer), axis=1)
            low, high = prior.min(axis=0), prior.max(axis=0)
            high = np.where(high > low, high, low + 1.0)
            count = unique_state_actions(online, online[:, :0], low, high, SACO_BINS)
            reference = unique_state_actions(prior, prior[:, :0], low, high, SACO_BINS)
            out["buffer/saco"] = state_action_coverage(count, reference)
        return out

    def pretrain(self) -> None:
        """`offline_updates` updates on prior data alone (all rows marked prior)."""
        left = self.cfg.offline_updates - self.counters.offline_updates
        if left <= 0 or self.prior_buffer is None:
            return
        sampler = UniformSampler(self.prior_buffer, self.rows, seed=self.cfg.seed + 1)
        logger.info("offline pre-training: %d updates on the prior data", left)
        for _ in range(left):
            if self.stop.stop_requested:
                break
            batch = sampler.sample()
            batch.prior = torch.ones_like(batch.reward)
            self._record(self._checked(self.agent.update(batch)))
            self.counters.updates += 1
            self.counters.offline_updates += 1
            if time.monotonic() - self._last_log >= self.cfg.log_every_s:
                self.log_metrics()
        self._publish()

    # ---- loop ---------------------------------------------------------------------------

    def run(self) -> LearnerCounters:
        """Train until SIGTERM/SIGINT or `max_env_steps`; always ends with a checkpoint."""
        try:
            self.pretrain()
            while not self.stop.stop_requested and not self.finished:
                self.step()
        finally:
            self.shutdown()
        return self.counters

    @property
    def update_allowed(self) -> bool:
        """The rate limiter: enough data, and updates behind `utd_ratio` × new env steps."""
        cfg = self.cfg
        if len(self.buffer) == 0 or len(self.buffer) < cfg.min_buffer:
            return False
        online_updates = self.counters.updates - self.counters.offline_updates
        return online_updates < cfg.utd_ratio * (self.counters.env_steps - cfg.min_buffer)

    @property
    def finished(self) -> bool:
        """`max_env_steps` received and every update they allow done."""
        cfg = self.cfg
        return bool(cfg.max_env_steps) and (
            self.counters.env_steps >= cfg.max_env_steps and not self.update_allowed
        )

    def step(self) -> None:
        """One iteration: poll, ingest, at most one update, then publish/log/checkpoint if due."""
        self.ingest(self.server.poll(0 if self.update_allowed else IDLE_POLL_MS))
        updated = self.update_allowed
        if updated:
            batch = self.sampler.sample()
            started = time.monotonic()
            if self._last_update_s > SLOW_UPDATE_S:
                info, held = self._answering_actors(lambda: self.agent.update(batch))
                self.ingest(held)
            else:
                info = self.agent.update(batch)
            self._last_update_s = time.monotonic() - started
            self._record(self._checked(info))
            self.counters.updates += 1
        behind = self.counters.updates - self.server.weights_version
        if behind >= self.cfg.publish_every or (behind > 0 and not updated):
            self._publish()  # also when starved, so waiting actors get the newest policy
        now = time.monotonic()
        if now - self._last_log >= self.cfg.log_every_s:
            self.log_metrics()
        if now - self._last_checkpoint >= self.cfg.checkpoint_every_s:
            self.checkpoint()

    def _checked(self, info: dict[str, float]) -> dict[str, float]:
        """An update's metrics, or LearnerError when a loss came out NaN/Inf: the run stops
        loudly instead of training on (and publishing) diverged weights, and the last
        checkpoint, written before the divergence, is kept (`checkpoint` refuses NaN)."""
        bad = {k: v for k, v in info.items() if isinstance(v, float) and not math.isfinite(v)}
        if bad:
            raise LearnerError(
                f"update {self.counters.updates + 1} diverged ({bad}); stopping without "
                f"publishing these weights. The last checkpoint {self.checkpoint_path} is kept: "
                "look for extreme rewards or observations in the data, lower the learning "
                "rates, or resume from it"
            )
        return info

    def _record(self, info: dict[str, float]) -> None:
        for name, value in info.items():
            self._window.add(name, value)

    def _publish(self) -> None:
        if self.counters.updates > self.server.weights_version:
            version = self.counters.updates
            self.server.publish_weights(version, policy_numpy(self.agent.policy_state()))

    # ---- ingestion ----------------------------------------------------------------------

    def ingest(self, got: PollResult) -> None:
        """Add accepted chunks to the buffer and account the episode statistics."""
        for chunk in got.chunks:
            self._add_chunk(chunk)
        for episode in got.episode_stats:
            self._add_episode(episode)

    def _reject(self, chunk: Chunk, reason: str, detail: str) -> None:
        self.stats[f"rejected:{reason}"] += 1
        logger.warning(
            "dropped chunk %d of actor %s/%d: %s",
            chunk.seq,
            chunk.actor_id,
            chunk.incarnation,
            detail,
        )

    def _add_chunk(self, chunk: Chunk) -> None:
        """Copy one validated chunk into the buffer; what the buffer refuses is counted."""
        extras = chunk.extras
        next_obs = chunk.next_obs
        if next_obs is None:
            self._reject(chunk, "missing_next_obs", "the learner needs next_obs in every chunk")
            return
        if "episode_id" not in extras or "t" not in extras:
            self._reject(chunk, "missing_tags", "chunks must carry episode_id and t")
            return
        if (problem := self._out_of_range(chunk)) is not None:
            self._reject(chunk, "out_of_range", problem)
            return
        key = (chunk.actor_id, chunk.incarnation)
        index = self.actor_index.get(key, len(self.actor_index))
        n = len(chunk)
        versions = extras.get("policy_version", np.full(n, -1, np.int64))
        try:
            self.buffer.add_many(
                obs=observation_from_wire(chunk.obs, self.observation_space),
                action=chunk.action,
                reward=chunk.reward,
                next_obs=observation_from_wire(next_obs, self.observation_space),
                terminated=chunk.terminated,
                truncated=chunk.truncated,
                source=extras.get("source", _ONLINE),
                episode_id=extras["episode_id"],
                t=extras["t"],
                actor_id=index,
                policy_version=versions,
            )
        except ValueError as exc:  # the buffer validates everything before it writes
            self._reject(chunk, "bad_values", str(exc))
            return
        self.actor_index[key] = index
        if self.cfg.interventions_to_prior:
            self._copy_interventions(chunk, index, next_obs, versions)
        self.counters.env_steps += n
        self.counters.chunks += 1
        acted = versions[(versions >= 0) & (versions <= self.server.weights_version)]
        ahead = int(np.count_nonzero(versions > self.server.weights_version))
        if ahead:  # weights of an earlier incarnation of this learner (after --resume), or a lie
            self.stats["policy_version_ahead"] += ahead
        if acted.size:
            lag = self.server.weights_version - acted
            self._window.add("learner/policy_lag_mean", float(lag.mean()), int(acted.size))
            self._window.add_max("learner/policy_lag_max", float(lag.max()))

    def _out_of_range(self, chunk: Chunk) -> str | None:
        """Why a chunk's values cannot be trained on although finite (the protocol already
        refused NaN/Inf): an action outside the action space (agents act in [-1, 1]), a
        reward or float observation entry beyond the configured magnitudes, or a policy
        version below -1 (actors tag random actions -1 and policy actions with the weights'
        version, >= 0). A version above this learner's is kept but left out of the lag
        metrics (`policy_version_ahead`): an actor may still act with the weights of the
        learner's previous incarnation after a --resume."""
        versions = chunk.extras.get("policy_version")
        if versions is not None and versions.size and int(versions.min()) < -1:
            return f"policy_version {int(versions.min())} < -1"
        space = self.action_space
        action = np.asarray(chunk.action, dtype=np.float64)
        if np.any(action < space.low - ACTION_TOLERANCE) or np.any(
            action > space.high + ACTION_TOLERANCE
        ):
            worst = float(action.flat[np.argmax(np.abs(action))])
            return f"action {worst:.4g} outside the action space {space}"
        reward_bound = self.cfg.max_abs_reward
        worst_reward = float(np.max(np.abs(chunk.reward)))
        if worst_reward > reward_bound:
            return f"|reward| {worst_reward:.4g} > max_abs_reward {reward_bound:.4g}"
        bound = self.cfg.max_abs_observation
        observations = [chunk.obs] + ([chunk.next_obs] if chunk.next_obs is not None else [])
        for obs in observations:
            for name, values in obs.items():
                if values.dtype.kind == "f" and values.size:
                    worst = float(np.max(np.abs(values)))
                    if worst > bound:
                        return (
                            f"observation {name!r} entry {worst:.4g} > max_abs_observation {bound}"
                        )
        return None

    def _copy_interventions(
        self, chunk: Chunk, index: int, next_obs: dict[str, np.ndarray], versions: np.ndarray
    ) -> None:
        """HIL-SERL: the human's corrections also join the demo buffer (already validated)."""
        source = np.broadcast_to(chunk.extras.get("source", _ONLINE), (len(chunk),))
        rows = np.flatnonzero(source == _INTERVENTION)
        if not rows.size:
            return
        obs = observation_from_wire(chunk.obs, self.observation_space)
        nxt = observation_from_wire(next_obs, self.observation_space)

        def take(x: Any) -> Any:
            return {k: v[rows] for k, v in x.items()} if isinstance(x, dict) else x[rows]

        self.prior_buffer.add_many(
            obs=take(obs),
            action=chunk.action[rows],
            reward=chunk.reward[rows],
            next_obs=take(nxt),
            terminated=chunk.terminated[rows],
            truncated=chunk.truncated[rows],
            source="intervention",
            episode_id=chunk.extras["episode_id"][rows],
            t=chunk.extras["t"][rows],
            actor_id=index,
            policy_version=versions[rows],
        )

    def _add_episode(self, episode: EpisodeStats) -> None:
        """Account one actor's episode: evaluation (`eval` true) or training statistics."""
        stats = episode.stats
        is_eval = stats.get("eval") is True
        if is_eval:
            self.counters.eval_episodes += 1
        else:
            self.counters.episodes += 1
        self._episodes["eval" if is_eval else "train"].append(
            (_number(stats.get("return")), _number(stats.get("length")), stats.get("success"))
        )
        for name in ACTOR_STATS:
            if name in stats:
                self._window.add(f"actor/{name}", _number(stats[name]))

    # ---- metrics ------------------------------------------------------------------------

    def log_metrics(self) -> dict[str, float]:
        """Write one metrics record (step = env steps received) and start a new window."""
        now = time.monotonic()
        elapsed = max(now - self._last_log, 1e-9)
        record = self._window.means()
        for prefix, episodes in self._episodes.items():
            record |= _episode_summary(prefix, episodes)
        c = self.counters
        record |= {
            "learner/updates": c.updates,
            "learner/env_steps": c.env_steps,
            "learner/updates_per_s": (c.updates - self._logged_updates) / elapsed,
            "learner/ingest_transitions_per_s": (c.env_steps - self._logged_steps) / elapsed,
            "learner/weights_version": self.server.weights_version,
            "learner/actors_live": len(self.server.live_actors()),
            "buffer/size": len(self.buffer),
            # Memory per stored transition: frames once each, plus frame features if any.
            "buffer/bytes_per_slot": self.buffer.nbytes / self.buffer.capacity,
            "buffer/prior_size": len(self.prior_buffer) if self.prior_buffer is not None else 0,
            "process/rss_mb": rss_mb(),
        }
        for name, count in (self.server.stats + self.stats).items():
            record[f"transport/{name.replace(':', '/')}"] = count
        self.metrics.log(c.env_steps, record)
        self._window = _Window()
        self._episodes = {"eval": [], "train": []}
        self._last_log = now
        self._logged_steps, self._logged_updates = c.env_steps, c.updates
        return record

    # ---- checkpoints --------------------------------------------------------------------

    def checkpoint(self) -> Path:
        """Buffer (new generation), then the checkpoint naming it, then commit; see the doc."""
        cursors = self.server.cursors()  # the buffer below holds exactly these chunks
        generation = self.counters.generation + 1
        replay_name = f"{REPLAY_PREFIX}{generation:06d}.npz"
        writes = [(self.buffer, self.run_dir / replay_name)]
        prior_name = None
        if self.cfg.interventions_to_prior:  # the demo buffer grows: it is part of the state
            prior_name = f"{PRIOR_PREFIX}{generation:06d}.npz"
            writes.append((self.prior_buffer, self.run_dir / prior_name))

        def write() -> None:
            for buffer, path in writes:
                buffer.save(path)

        _, held = self._answering_actors(write)
        self.counters.generation = generation
        if self._weighted is not None and self.cfg.interventions_to_prior:
            self._weighted.refresh()  # the interventions that joined the prior data
        diagnostics = self.diagnostics()
        if diagnostics:
            self.metrics.log(self.counters.env_steps, diagnostics)
        metadata = {
            "env": self.cfg.env,
            "agent": self.cfg.agent,
            "env_steps": self.counters.env_steps,
            "counters": dict(vars(self.counters)),
            "sampler": self.sampler.state_dict(),
            "cursors": cursors,
            "owners": self.server.owners(),
            "actors": [[a, i, index] for (a, i), index in self.actor_index.items()],
            "replay_file": replay_name,
            "prior_file": prior_name,
            "weights_version": self.server.weights_version,
        }
        save_checkpoint(  # refuses NaN/Inf tensors: a diverged agent never replaces a good file
            self.checkpoint_path,
            self.agent.state_dict(),
            config=config_to_dict(self.cfg),
            config_hash=self.agreement.hash,
            metadata=metadata,
        )
        self._remove_stale_files(keep={replay_name, prior_name})
        self.server.commit(cursors)
        self._last_checkpoint = time.monotonic()
        logger.info(
            "checkpoint %d: %d env steps, %d updates, %d transitions in %s",
            generation,
            self.counters.env_steps,
            self.counters.updates,
            len(self.buffer),
            self.checkpoint_path,
        )
        self.ingest(held)  # after the checkpoint: it holds exactly the chunks of `cursors`
        return self.checkpoint_path

    def _answering_actors(self, work: Callable[[], T]) -> tuple[T, PollResult]:
        """Run `work` on a second thread while this one keeps answering the actors.

        Writing a buffer of camera frames takes seconds, a DrQ update on a CPU half a minute;
        a learner that says nothing that long makes its actors reconnect (their silence
        timeout). So this thread polls the transport meanwhile: PINGs get their PONGs, actors
        their welcomes and acks, and the chunks and episode statistics that arrive are held,
        not ingested (`work` may read the buffer), up to `HOLD_BYTES`. Returns `work`'s result
        and what was held, for the caller to ingest when that is consistent (a checkpoint:
        after it, as its cursors were taken before these chunks arrived). The transport's
        sockets stay on this thread; `work` must not touch them.
        """
        outcome: list[Any] = []

        def run() -> None:
            try:
                outcome.append(work())
            except BaseException as exc:  # re-raised below, in the learner's thread
                outcome.append(exc)

        worker = threading.Thread(target=run, name="learner-work", daemon=True)
        worker.start()
        held, held_bytes = PollResult(), 0
        while worker.is_alive():
            if held_bytes >= HOLD_BYTES:
                worker.join(IDLE_POLL_MS / 1000)
                continue
            got = self.server.poll(IDLE_POLL_MS)
            held.chunks += got.chunks
            held.episode_stats += got.episode_stats
            held_bytes += sum(a.nbytes for chunk in got.chunks for a in chunk.arrays.values())
        worker.join()
        if isinstance(outcome[0], BaseException):
            raise outcome[0]
        return outcome[0], held

    def _remove_stale_files(self, keep: set[str | None]) -> None:
        """Buffer files of older generations and temp files a killed write left behind."""
        for prefix in (REPLAY_PREFIX, PRIOR_PREFIX):
            for path in self.run_dir.glob(f"{prefix}*.npz"):
                if path.name not in keep:
                    path.unlink(missing_ok=True)
        for path in self.run_dir.glob(".*.tmp"):
            path.unlink(missing_ok=True)

    def _check_fresh(self) -> None:
        if self.checkpoint_path.exists():
            raise LearnerError(
                f"{self.checkpoint_path} exists; pass --resume to continue that run, or choose "
                "another --run-dir (a fresh start would overwrite it)"
            )
        # A run killed inside its first checkpoint left temp files (and maybe a buffer file
        # no checkpoint names): a replay buffer's worth of disk, which nothing would read.
        self._remove_stale_files(keep=set())

    def _restore(self) -> dict[str, Any] | None:
        """Load agent, buffer, sampler, counters and actor table; return the checkpoint's
        metadata (its cursors and actor key owners go to the server)."""
        path = self.checkpoint_path
        if not path.exists():
            logger.warning("--resume: no checkpoint in %s yet; starting a new run", self.run_dir)
            self._check_fresh()
            return None
        header, state = read_checkpoint(path)
        if header["config_hash"] != self.agreement.hash:
            diffs = self.agreement.differences(header.get("config", {}))
            raise CheckpointError(
                f"{path} was written with config {header['config_hash']}, this learner has "
                f"{self.agreement.hash} ({'; '.join(diffs) or 'agent settings differ'}); resume "
                "with the run's --env, --agent and --agent-cfg.* flags, or choose a new --run-dir"
            )
        check_compatible(path, state, self.agent.state_dict())
        meta = header["metadata"]
        buffer = ReplayBuffer.load(
            self.run_dir / meta["replay_file"],
            self.observation_space,
            self.action_dim,
            frame_features=self.frame_features,
        )
        if buffer.capacity != self.cfg.buffer_capacity:
            logger.warning(
                "resumed buffer has capacity %d (saved), not --buffer-capacity %d",
                buffer.capacity,
                self.cfg.buffer_capacity,
            )
        if meta.get("prior_file"):
            self.prior_buffer = ReplayBuffer.load(
                self.run_dir / meta["prior_file"],
                self.observation_space,
                self.action_dim,
                frame_features=self.frame_features,
            )
        sampler = self._make_sampler(buffer)
        sampler.load_state_dict(meta["sampler"])
        self.agent.load_state_dict(state)
        self.buffer, self.sampler = buffer, sampler
        self.counters = LearnerCounters(**meta["counters"])
        self.actor_index = {(str(a), int(i)): int(index) for a, i, index in meta["actors"]}
        self._remove_stale_files(keep={meta["replay_file"], meta.get("prior_file")})
        logger.info(
            "resumed from %s: %d env steps, %d updates, %d transitions",
            path,
            self.counters.env_steps,
            self.counters.updates,
            len(self.buffer),
        )
        return meta

    # ---- shutdown -----------------------------------------------------------------------

    def shutdown(self) -> None:
        """Last checkpoint and metrics, the learning curve, then let actors see the commit."""
        try:
            try:
                self.checkpoint()
            except CheckpointError as exc:  # diverged: keep the good checkpoint, say so, go on
                logger.error("%s", exc)
            self.log_metrics()
            if any(r.get("eval/return_mean") is not None for r in read_metrics(self.metrics.path)):
                from serl.plots import plot_learning_curve  # matplotlib: only when needed

                title = f"{self.cfg.agent} on {self.cfg.env}"
                plot_learning_curve(self.metrics.path, self.run_dir / "curve.png", title=title)
            deadline = time.monotonic() + DRAIN_S
            while self.server.live_actors() and time.monotonic() < deadline:
                self.server.poll(IDLE_POLL_MS)  # chunks arriving now are resent to the next run
        finally:
            self.close()

    def close(self) -> None:
        """Close the sockets and the metrics files (no checkpoint; see `shutdown`)."""
        if not self._closed:
            self._closed = True
            self.server.close()
            with contextlib.suppress(Exception):
                self.metrics.close()
