"""Why RLPD's critic steps/s on a CPU are what they are: prints the figures docs/benchmarks.md
quotes under "Why RLPD is at 35, not 70".

1. `torch.bmm` GFLOP/s on the critic ensemble's shape: (10, 256, 256) @ (10, 256, 256), the
   batched hidden-layer product of 10 critics at batch 256 (2 * 10 * 256^3 FLOP per call).
2. The share of an eager RLPD update's CPU time spent in bmm/baddbmm (`torch.profiler`).
3. RLPD critic steps/s, eager against `torch.compile` of the two critic ensembles (online and
   target), two agents in this one process, alternating rounds of 2 update calls, medians;
   the first compiled call's time is reported as the compile time.

Run: `.venv/bin/python scripts/rlpd_cpu_ceiling.py [--threads 2] [--rounds 5]`. Same sizes as
`serl bench learner` (17-D observations, 6-D actions, batch 256, `SACConfig.rlpd()`).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.profiler import ProfilerActivity, profile

from serl.agents.sac import SACAgent, SACConfig
from serl.bench.learner import ACTION_SPACE, BATCH, STATE_SPACE, filled_buffer, rate
from serl.data.samplers import UniformSampler

ENSEMBLE = 10
HIDDEN = 256


def bmm_gflops(seconds: float) -> float:
    a = torch.randn(ENSEMBLE, BATCH, HIDDEN)
    b = torch.randn(ENSEMBLE, HIDDEN, HIDDEN)
    calls_per_s = rate(lambda: torch.bmm(a, b), seconds, warmup=10)
    return calls_per_s * 2 * ENSEMBLE * BATCH * HIDDEN * HIDDEN / 1e9


def rlpd_agent(seed: int) -> tuple[SACAgent, UniformSampler]:
    cfg = SACConfig.rlpd()
    agent = SACAgent(cfg, STATE_SPACE, ACTION_SPACE, seed=seed)
    sampler = UniformSampler(filled_buffer(STATE_SPACE, 20_000), BATCH * cfg.utd, seed=seed)
    return agent, sampler


def bmm_share(agent: SACAgent, sampler: UniformSampler, calls: int = 3) -> float:
    """Fraction of the update's self CPU time in aten::bmm and aten::baddbmm."""
    agent.update(sampler.sample())
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(calls):
            agent.update(sampler.sample())
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    bmm = sum(e.self_cpu_time_total for e in events if e.key in ("aten::bmm", "aten::baddbmm"))
    return bmm / total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--rounds", type=int, default=5, help="alternating eager/compiled rounds")
    opts = parser.parse_args()
    torch.set_num_threads(opts.threads)
    utd = SACConfig.rlpd().utd
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"bmm (10, 256, 256) @ (10, 256, 256): {bmm_gflops(3.0):.1f} GFLOP/s")

    eager, eager_sampler = rlpd_agent(0)
    print(f"share of an eager RLPD update in bmm/baddbmm: {bmm_share(eager, eager_sampler):.0%}")

    compiled, compiled_sampler = rlpd_agent(0)
    compiled.critic.compile()
    compiled.target_critic.compile()
    start = time.perf_counter()
    compiled.update(compiled_sampler.sample())
    print(f"first compiled update (compilation): {time.perf_counter() - start:.1f} s")
    rates: dict[str, list[float]] = {"eager": [], "compiled": []}
    for _ in range(opts.rounds):
        for name, (agent, sampler) in (
            ("eager", (eager, eager_sampler)),
            ("compiled", (compiled, compiled_sampler)),
        ):
            start = time.perf_counter()
            for _ in range(2):
                agent.update(sampler.sample())
            rates[name].append(2 * utd / (time.perf_counter() - start))
    e, c = statistics.median(rates["eager"]), statistics.median(rates["compiled"])
    print(f"RLPD critic steps/s, median of {opts.rounds} rounds: eager {e:.1f}, compiled {c:.1f}")
    print(f"compiled / eager: {c / e:.2f}")


if __name__ == "__main__":
    main()
