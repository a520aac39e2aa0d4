"""The actor process: run an env with the learner's newest policy, stream transitions back.

Control loop (one thread; all network I/O happens on `ActorClient`'s own thread)::

    swap in the newest weights (between control steps, never during one)
    action = random (warm-up) | policy(obs) | the human's action (`action_override`)
    NaN/Inf action -> held (zero or previous action), counted, never passed to env.step
    wait for the next tick (fixed-rate loop when control_hz > 0; jitter measured)
    env.step(action); the transition joins the current chunk; full chunks are queued

* Warm-up: the first `random_steps` training steps take uniform random actions, before and
  while the handshake happens. After that the actor waits for the learner's weights before
  its first policy action (a new incarnation therefore never acts with an untrained policy
  when the learner already has a trained one).
* Evaluation: every `eval_every`-th episode runs the deterministic policy, is tagged eval,
  and only its statistics go to the learner (never its transitions).
* Interventions: `action_override(obs, policy_action)` may return a human's action, which
  replaces the policy's, is the one stored, and is tagged `intervention`.
* Outbox: bounded; a simulator blocks when it is full, a real robot (`spill_dir`) spills
  chunks to disk instead (ActorClient, DESIGN §4), up to `spill_limit_mb`, then waits too.
  Nothing is dropped. The actor keeps each
  chunk until a learner checkpoint holds it (exactly-once across learner crashes), so the
  outbox must hold a checkpoint period of data: `outbox_limit` × `chunk_size` transitions.
* `sync_steps` (simulation only): after that many policy steps on one weights version the
  actor waits (at most `sync_timeout_s`) for a newer one, so a fast simulator cannot run far
  ahead of a slow learner and fill the buffer with data of stale policies. `serl train`
  sets it so the actors' data rate matches the learner's update-to-data ratio.
* Episode statistics (return, length, success, interventions, held actions, p50/p99 of the
  control period error) go to the learner, which logs them.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import torch
from tqdm import tqdm

from serl.agents.sac import SACConfig
from serl.agreement import (
    Agreement,
    actor_policy,
    load_policy_weights,
    observation_for_wire,
    transition_spec,
)
from serl.config import config_to_dict
from serl.envs import episode_success
from serl.processes import StopSignal, limit_threads
from serl.rewards.config import ClassifierRewardConfig
from serl.rewards.wrapper import make_classified_env
from serl.transport.auth import load_client_keys
from serl.transport.client import ActorClient, Weights
from serl.transport.protocol import SOURCES, HandshakeRefused, chunk_arrays

logger = logging.getLogger(__name__)

ActionOverride = Callable[[Any, np.ndarray], "np.ndarray | None"]
"""(observation, policy action) -> the human's action, or None to keep the policy's."""

RANDOM_VERSION = -1
"""`policy_version` tag of warm-up transitions (random actions, no policy)."""
WAIT_LOG_S = 5.0
"""How often a waiting actor says what it waits for."""
FLUSH_POLL_S = 0.5
"""While the outbox is full, how often `flush` looks for a stop request."""


@dataclass(frozen=True)
class ActorConfig:
    env: str = "Pendulum-v1"
    """Environment id: a gymnasium id or a prefixed one (sim:..., robot:...)."""
    env_params: dict[str, float] = field(default_factory=dict)
    """Dynamics parameters of a `sim:` env (e.g. {"friction": 0.5}); empty: the env's own."""
    randomize: str = ""
    """Domain randomisation of a `sim:` env: a named uncertainty set of its package (e.g.
    friction-mass) or a box name=low:high,...; each training episode's dynamics are drawn
    uniformly from it by the env's seeded rng, evaluation episodes run under env_params (or the
    env's nominal values). Empty: off."""
    reward: ClassifierRewardConfig = field(default_factory=ClassifierRewardConfig)
    """Reward classifier (serl train-reward) whose decision replaces the env's reward and
    termination; off unless --reward.checkpoint is given."""
    success_key: str = ""
    """Info key the env reports success under (e.g. gym-hil's succeed); empty: success,
    is_success or succeed, whichever the env has. Envs without one get no success rate."""
    agent: str = "sac"
    """Agent preset; must match the learner's (it defines the policy network)."""
    agent_cfg: SACConfig = field(default_factory=SACConfig)
    """Agent hyper-parameters; must match the learner's (checked in the handshake)."""
    learner_host: str = "127.0.0.1"
    """Host name or address of the learner."""
    data_port: int = 5555
    """The learner's data port (transitions, handshake)."""
    weights_port: int = 5556
    """The learner's weights port."""
    keys_dir: Path | None = None
    """CURVE key directory holding server.key and <key-name>.key_secret (with a CURVE learner)."""
    key_name: str = "actor"
    """Name of this actor's keypair in keys_dir."""
    actor_id: str = "actor-0"
    """Stable name of this actor (one per robot or simulator process)."""
    seed: int = 0
    """Seed of the env, the random warm-up actions and the policy's sampling."""
    random_steps: int = 1_000
    """Uniformly random actions for the first training steps (exploration warm-up)."""
    control_hz: float = 0.0
    """Fixed control rate in Hz; 0 runs as fast as possible (simulation)."""
    chunk_size: int = 64
    """Transitions per chunk sent to the learner (also sent at each episode end)."""
    eval_every: int = 10
    """Every this many episodes, one deterministic evaluation episode (0: never)."""
    spill_dir: Path | None = None
    """Real robots: spill chunks to this directory instead of blocking when the outbox is full."""
    spill_limit_mb: float = 2048.0
    """At most this much disk for spilled chunks; beyond it the actor waits for the learner
    (a real arm holds still: the robot server's watchdog), so an outage cannot fill a disk."""
    outbox_limit: int = 1024
    """Chunks held in memory until the learner commits them (at its checkpoints). Without
    spill_dir, hold at least a checkpoint period's worth or the actor waits for the next one;
    with it, older chunks go to disk, and this is the most a killed actor process loses."""
    silence_timeout_s: float = 10.0
    """Reconnect when the learner has been silent this long (it answers pings every second
    while it runs); lower it on a LAN to notice a pulled cable sooner, raise it for a learner
    whose single update takes seconds."""
    max_steps: int = 0
    """Stop after this many training env steps (0: run until stopped)."""
    source: Literal["online", "sim", "real"] = "online"
    """Source tag of this actor's transitions (interventions are tagged intervention)."""
    hold: Literal["zero", "previous"] = "zero"
    """Action sent instead of a NaN/Inf policy action: zero, or the previous finite one."""
    sync_steps: int = 0
    """Simulation only: policy steps per weights version before waiting for a newer one (0: off)."""
    sync_timeout_s: float = 2.0
    """Longest wait for newer weights when sync_steps is reached."""
    close_timeout_s: float = 10.0
    """At exit, seconds to wait for the learner to commit (checkpoint) the last chunks."""
    threads: int = 1
    """torch CPU threads for the policy (0 keeps torch's default)."""
    progress: bool = True
    """A progress bar (steps, and whether the learner is reachable and what is spilled) when
    stderr is a terminal; logs only otherwise."""


@dataclass
class ActorCounters:
    """What this actor did, for its log line at exit and for tests."""

    steps: int = 0
    """Training env steps (sent to the learner)."""
    episodes: int = 0
    """Finished training episodes."""
    eval_episodes: int = 0
    """Finished evaluation episodes."""
    random_steps: int = 0
    """Training steps with a random warm-up action."""
    nonfinite_actions: int = 0
    """Policy (or human) actions with NaN/Inf, replaced by the hold action."""
    interventions: int = 0
    """Steps whose action came from `action_override`."""
    weights_loaded: int = 0
    """Weights versions swapped into the policy."""
    weights_failed: int = 0
    """Weights that did not fit the policy network (kept the old ones)."""
    nonfinite_transitions: int = 0
    """Transitions with NaN/Inf observations or reward, not sent."""
    chunks: int = 0
    """Chunks queued for the learner."""
    first_policy_version: int = RANDOM_VERSION
    """Weights version of the first policy action (-1 before any)."""


def randomization(
    env: gym.Env, env_id: str, spec: str
) -> tuple[dict[str, tuple[float, float]] | None, dict[str, float]]:
    """The box of `--randomize spec` and the parameters evaluation episodes restore.

    The box goes to the env as ``reset(options={"randomize": box})`` (the `sim:` tasks draw
    from it with their seeded rng); evaluation resets pass ``{"params": ...}`` with the values
    in force before any draw, so they always see the same dynamics.
    """
    if not spec:
        return None, {}
    from serl.robust.uncertainty import uncertainty_bounds

    box = uncertainty_bounds(env_id, spec)
    get_params = getattr(env.unwrapped, "get_params", None)
    if get_params is None:
        raise ValueError(
            f"--randomize {spec!r}: {env_id} has no dynamics parameters to draw; domain "
            "randomisation needs a sim: env"
        )
    current = get_params()
    unknown = sorted(set(box) - set(current))
    if unknown:
        raise ValueError(
            f"--randomize {spec!r}: {env_id} has no parameter {', '.join(unknown)}; "
            f"its parameters are {', '.join(sorted(current))}"
        )
    return box, {name: float(current[name]) for name in box}


def sanitize_action(
    action: np.ndarray, previous: np.ndarray | None, space: gym.spaces.Box, hold: str
) -> tuple[np.ndarray, bool]:
    """(action to send, whether it was held): NaN/Inf never reaches the env.

    A non-finite or misshaped action is replaced by zeros (`hold="zero"`) or by `previous`
    when that is finite; a finite one is clipped into the action space's bounds.
    """
    action = np.asarray(action, dtype=space.dtype)
    if action.shape == space.shape and np.isfinite(action).all():
        return np.clip(action, space.low, space.high), False
    if hold == "previous" and previous is not None and np.isfinite(previous).all():
        return np.array(previous, dtype=space.dtype), True
    return np.zeros(space.shape, dtype=space.dtype), True


class _Timer:
    """Fixed-rate ticks and the error of each measured period (seconds)."""

    def __init__(self, hz: float) -> None:
        self.period = 1.0 / hz if hz > 0 else 0.0
        self.errors: list[float] = []
        self.overruns = 0
        self._next: float | None = None
        self._last: float | None = None

    def restart(self) -> None:
        """Forget the last tick (an env reset is not a control period)."""
        self._next = self._last = None
        self.errors = []

    def wait(self) -> None:
        if not self.period:
            return
        now = time.perf_counter()
        if self._next is None:
            self._next = now
        if self._next > now:
            time.sleep(self._next - now)
            now = time.perf_counter()
        if self._last is not None:
            self.errors.append(now - self._last - self.period)
        self._last = now
        self._next += self.period
        if self._next < now:  # missed a whole tick: keep the rate, do not burst to catch up
            self.overruns += 1
            self._next = now + self.period

    def percentiles_ms(self) -> dict[str, float]:
        if not self.errors:
            return {}
        p50, p99 = np.percentile(np.abs(self.errors), [50, 99]) * 1e3
        return {"jitter_p50_ms": float(p50), "jitter_p99_ms": float(p99)}


class _ChunkBuilder:
    """Transitions of the current chunk, as lists of per-step copies."""

    def __init__(self) -> None:
        self.rows: dict[str, list[Any]] = {}

    def __len__(self) -> int:
        return len(self.rows.get("action", []))

    def add(self, **fields: Any) -> None:
        for name, value in fields.items():
            self.rows.setdefault(name, []).append(value)

    def build(self, obs_keys: list[str]) -> dict[str, np.ndarray]:
        rows = self.rows
        self.rows = {}
        return chunk_arrays(
            obs={k: np.stack([o[k] for o in rows["obs"]]) for k in obs_keys},
            next_obs={k: np.stack([o[k] for o in rows["next_obs"]]) for k in obs_keys},
            action=np.stack(rows["action"]).astype(np.float32),
            reward=np.asarray(rows["reward"], np.float32),
            terminated=np.asarray(rows["terminated"], bool),
            truncated=np.asarray(rows["truncated"], bool),
            source=np.asarray(rows["source"], np.uint8),
            episode_id=np.asarray(rows["episode_id"], np.int64),
            t=np.asarray(rows["t"], np.int64),
            policy_version=np.asarray(rows["policy_version"], np.int64),
        )


class Actor:
    """The actor loop; see the module docstring. `run()` until stopped or `max_steps`.

    `env` and `client` may be injected (tests, custom robots); by default they are made from
    the config. Missing key files raise AuthError before anything is opened.
    """

    def __init__(
        self,
        cfg: ActorConfig,
        *,
        env: gym.Env | None = None,
        client: ActorClient | None = None,
        action_override: ActionOverride | None = None,
        stop: StopSignal | None = None,
    ) -> None:
        limit_threads(cfg.threads)
        if cfg.chunk_size < 1:
            raise ValueError(f"chunk_size={cfg.chunk_size}; expected at least 1")
        self.cfg = cfg
        curve = load_client_keys(cfg.keys_dir, cfg.key_name) if cfg.keys_dir is not None else None
        self.stop = stop or StopSignal()
        self.action_override = action_override
        env_kwargs = {"params": dict(cfg.env_params)} if cfg.env_params else {}
        self.env = (
            env if env is not None else make_classified_env(cfg.env, cfg.reward, **env_kwargs)
        )
        space = self.env.action_space
        if not isinstance(space, gym.spaces.Box):
            raise ValueError(f"action space {space} is not a Box; actors drive continuous control")
        self.action_space: gym.spaces.Box = space
        self.agreement = Agreement(cfg.env, cfg.agent, cfg.agent_cfg)
        self.spec = transition_spec(self.env.observation_space, self.action_space)
        self.obs_keys = list(self.spec.obs)
        self.policy = actor_policy(cfg.agent_cfg, self.env.observation_space, self.action_space)
        self.policy.eval()
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.action_space.seed(cfg.seed)
        if client is None:
            host = cfg.learner_host
            client = ActorClient(
                f"tcp://{host}:{cfg.data_port}",
                f"tcp://{host}:{cfg.weights_port}",
                self.spec,
                self.agreement.hash,
                cfg.actor_id,
                curve=curve,
                outbox_limit=cfg.outbox_limit,
                spill_dir=cfg.spill_dir,
                spill_limit_bytes=int(cfg.spill_limit_mb * 2**20),
                silence_timeout_s=cfg.silence_timeout_s,
                seed=cfg.seed,
            )
        self.client = client
        self.counters = ActorCounters()
        self.weights: Weights | None = None
        self._rejected_weights: Weights | None = None
        self._steps_on_version = 0
        self._chunk = _ChunkBuilder()
        self._source = SOURCES.index(cfg.source)
        self._intervention = SOURCES.index("intervention")
        self._timer = _Timer(cfg.control_hz)
        self._reset_seed: int | None = cfg.seed
        self._randomize, self._eval_params = randomization(self.env, cfg.env, cfg.randomize)
        self._bar = tqdm(
            total=cfg.max_steps or None,
            unit="step",
            desc=f"actor {cfg.actor_id}",
            disable=not (cfg.progress and sys.stderr.isatty()),
            mininterval=1.0,
        )
        self._bar_note_at = 0.0

    # ---- loop ---------------------------------------------------------------------------

    def run(self) -> ActorCounters:
        """Episodes until stopped or `max_steps` training steps; then flush and close."""
        logger.info(
            "actor %s on %s, learner %s (config %s)",
            self.cfg.actor_id,
            self.cfg.env,
            self.client.data_endpoint,
            self.agreement.hash,
        )
        try:
            while not self._done():
                self.run_episode()
        except HandshakeRefused as exc:
            raise HandshakeRefused(
                f"{exc}. The config hash covers env, agent and agent_cfg; this actor has "
                f"{config_to_dict(self.agreement)}: start it with the learner's settings "
                "(e.g. the same --config file)"
            ) from None
        finally:
            self.close()
        return self.counters

    def _done(self) -> bool:
        return self.stop.stop_requested or self._max_steps_reached()

    def run_episode(self) -> dict[str, Any] | None:
        """One episode; returns its statistics, or None when it was cut short by a stop."""
        is_eval = self._eval_due()
        options = None
        if self._randomize is not None:
            options = {"params": self._eval_params} if is_eval else {"randomize": self._randomize}
        obs, _ = self.env.reset(seed=self._reset_seed, options=options)
        self._reset_seed = None  # seed the first reset only; the env's RNG carries on
        if hasattr(self.policy, "reset_episode"):  # stateful policies (IWOCS's composite)
            self.policy.reset_episode()
        self._timer.restart()
        ret, t, interventions, held = 0.0, 0, 0, 0
        previous: np.ndarray | None = None
        info: dict[str, Any] = {}
        finished = False
        while not (self.stop.stop_requested or (not is_eval and self._max_steps_reached())):
            self._swap_weights()
            action, version = self._choose(obs, is_eval)
            if action is None:  # stopped while waiting for weights
                break
            action, was_held = sanitize_action(action, previous, self.action_space, self.cfg.hold)
            if was_held and not held:  # once per episode; the count goes to the learner
                logger.warning(
                    "NaN/Inf policy action at step %d (weights version %d); sending the %s "
                    "action instead",
                    t,
                    version,
                    self.cfg.hold,
                )
            held += was_held
            source = self._source
            human = self._human_action(obs, action)
            if human is not None:
                action, source = human, self._intervention
                interventions += 1
            self._timer.wait()
            next_obs, reward, terminated, truncated, info = self.env.step(action)
            if not is_eval:
                transition = (obs, action, reward, next_obs, terminated, truncated)
                self._record(*transition, t=t, source=source, version=version)
            previous, obs = action, next_obs
            ret += float(reward)
            t += 1
            if terminated or truncated:
                finished = True
                break
        self.counters.nonfinite_actions += held
        self.counters.interventions += interventions
        self.flush()
        if not finished:
            return None
        stats = {
            "eval": is_eval,
            "return": ret,
            "length": t,
            "interventions": interventions,
            "nonfinite_actions": held,
            "policy_version": self.weights.version if self.weights is not None else -1,
            **self._timer.percentiles_ms(),
        }
        success = episode_success(info, self.cfg.success_key)
        if success is not None:  # envs without a success flag report none (no 0 % rate)
            stats["success"] = success
        if is_eval:
            self.counters.eval_episodes += 1
        else:
            self.counters.episodes += 1
        self.client.send_episode_stats(stats)
        return stats

    def _max_steps_reached(self) -> bool:
        return bool(self.cfg.max_steps) and self.counters.steps >= self.cfg.max_steps

    def _eval_due(self) -> bool:
        """An evaluation episode after every `eval_every` training episodes (with weights)."""
        every = self.cfg.eval_every
        if not every or self.client.latest_weights() is None:
            return False
        return self.counters.episodes >= every * (self.counters.eval_episodes + 1)

    def _human_action(self, obs: Any, policy_action: np.ndarray) -> np.ndarray | None:
        """The override hook's action, if it gave a usable one (a bad one is counted, unused)."""
        if self.action_override is None:
            return None
        human = self.action_override(obs, policy_action)
        if human is None:
            return None
        human, bad = sanitize_action(human, None, self.action_space, "zero")
        if bad:
            self.counters.nonfinite_actions += 1
            logger.warning("the action override gave a NaN/Inf or misshaped action; ignored")
            return None
        return human

    def _record(
        self,
        obs: Any,
        action: np.ndarray,
        reward: float,
        next_obs: Any,
        terminated: bool,
        truncated: bool,
        *,
        t: int,
        source: int,
        version: int,
    ) -> None:
        """Add one training transition to the chunk (copies); send the chunk when full."""
        wire_obs = {k: np.array(v) for k, v in observation_for_wire(obs, self.spec).items()}
        wire_next = {k: np.array(v) for k, v in observation_for_wire(next_obs, self.spec).items()}
        finite = np.isfinite(reward) and all(
            np.isfinite(a).all() for a in (*wire_obs.values(), *wire_next.values())
            if a.dtype.kind == "f"
        )  # fmt: skip
        if not finite:  # the learner would reject the whole chunk; drop this step only
            self.counters.nonfinite_transitions += 1
            logger.warning("step %d: NaN/Inf in the observation or reward; not sent", t)
            return
        self._chunk.add(
            obs=wire_obs,
            next_obs=wire_next,
            action=np.array(action, np.float32),
            reward=float(reward),
            terminated=bool(terminated),
            truncated=bool(truncated),
            source=source,
            episode_id=self.counters.episodes,
            t=t,
            policy_version=version,
        )
        self.counters.steps += 1
        self._show_progress()
        if len(self._chunk) >= self.cfg.chunk_size:
            self.flush()

    def _show_progress(self) -> None:
        """One step on the bar; once a second, the link's state beside it (the bar keeps
        counting through an outage: the robot goes on, its chunks wait or spill)."""
        self._bar.update(1)
        now = time.monotonic()
        if self._bar.disable or now < self._bar_note_at:
            return
        self._bar_note_at = now + 1.0
        outage = self.client.unreachable_for()
        spilled = self.client.counters().get("spilled", 0)
        if outage is None:
            version = self.weights.version if self.weights is not None else "none yet"
            note = f"learner ok, weights {version}, {self.client.pending()} uncommitted"
        else:
            note = f"learner UNREACHABLE {outage:.0f} s, {self.client.pending()} held"
        self._bar.set_postfix_str(note + (f", {spilled} spilled so far" if spilled else ""))

    def flush(self) -> None:
        """Queue the transitions gathered so far as one chunk (no-op when there are none).

        With a full outbox (a simulator without `spill_dir`) this waits for the learner's
        next commit, checking for a stop meanwhile; a chunk still unqueued at a stop is lost
        with the process, like every chunk the learner has not committed.
        """
        if not len(self._chunk):
            return
        arrays = self._chunk.build(self.obs_keys)
        started = time.monotonic()
        while True:
            try:
                self.client.send_chunk(arrays, copy=False, timeout_s=FLUSH_POLL_S)
                break
            except TimeoutError:
                if self.stop.stop_requested:
                    lost = len(arrays["reward"])
                    logger.warning("stopping with a full outbox: %d steps not sent", lost)
                    return
                if time.monotonic() - started > WAIT_LOG_S:
                    started = time.monotonic()
                    logger.info("outbox full; waiting for the learner to commit (checkpoint)")
        self.counters.chunks += 1

    # ---- acting -------------------------------------------------------------------------

    def _choose(self, obs: Any, is_eval: bool) -> tuple[np.ndarray | None, int]:
        """(action, weights version) for this step; random during the warm-up."""
        c = self.counters
        if not is_eval and c.steps < self.cfg.random_steps:
            c.random_steps += 1
            return self.action_space.sample(), RANDOM_VERSION
        if self.weights is None and not self._await_weights():
            return None, RANDOM_VERSION
        if not is_eval and self.cfg.sync_steps and self._steps_on_version >= self.cfg.sync_steps:
            self._await_newer_weights()
        assert self.weights is not None
        if c.first_policy_version == RANDOM_VERSION:
            c.first_policy_version = self.weights.version
            logger.info("first policy action with weights version %d", self.weights.version)
        if not is_eval:
            self._steps_on_version += 1
        action = self.policy.act(obs, deterministic=is_eval, generator=self.generator)
        return action, self.weights.version

    def _swap_weights(self) -> bool:
        """Load the newest received weights into the policy; True when they changed."""
        weights = self.client.latest_weights()
        if weights is None or weights is self.weights or weights is self._rejected_weights:
            return False
        try:
            load_policy_weights(self.policy, weights.tensors)
        except (RuntimeError, KeyError, ValueError) as exc:
            self._rejected_weights = weights
            self.counters.weights_failed += 1
            logger.error("weights version %d do not fit the policy: %s", weights.version, exc)
            return False
        self.weights = weights
        self._steps_on_version = 0
        self.counters.weights_loaded += 1
        return True

    def _await_weights(self) -> bool:
        """Block until the learner's weights are loaded; False when stopped first."""
        self.flush()  # the learner may need these transitions before it publishes
        started = last_note = time.monotonic()
        while not self.stop.stop_requested:
            try:
                self.client.wait_for_weights(timeout_s=0.5)
            except TimeoutError:
                if time.monotonic() - last_note > WAIT_LOG_S:
                    last_note = time.monotonic()
                    logger.info(
                        "waiting %.0f s for the learner's weights at %s",
                        last_note - started,
                        self.client.weights_endpoint,
                    )
                continue
            if self._swap_weights():
                return True
        return False

    def _await_newer_weights(self) -> None:
        """`sync_steps` reached: wait (bounded) for a newer version than the one in use."""
        assert self.weights is not None
        self.flush()
        deadline = time.monotonic() + self.cfg.sync_timeout_s
        while not self.stop.stop_requested and time.monotonic() < deadline:
            try:
                self.client.wait_for_weights(timeout_s=0.05, newer_than=self.weights.version)
            except TimeoutError:
                if self.client.latest_weights() is self.weights:
                    continue  # else: another learner incarnation's weights (lower version)
            if self._swap_weights():
                return
        self._steps_on_version = 0  # go on with these weights; wait again after sync_steps

    # ---- shutdown -----------------------------------------------------------------------

    def close(self) -> None:
        """Send what is left, wait (bounded) for the learner's commit, stop the I/O thread."""
        try:
            self.flush()
        except (HandshakeRefused, RuntimeError) as exc:  # the transport failed: nothing to send
            logger.debug("last chunk not sent: %s", exc)
        finally:
            self._bar.close()
            self.client.close(timeout_s=self.cfg.close_timeout_s)  # logs what is uncommitted
            self.env.close()
            logger.info(
                "actor %s done: %d steps, %d episodes, %d eval episodes, %d held actions, "
                "%d interventions",
                self.cfg.actor_id,
                self.counters.steps,
                self.counters.episodes,
                self.counters.eval_episodes,
                self.counters.nonfinite_actions,
                self.counters.interventions,
            )
