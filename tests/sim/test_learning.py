"""SAC from the learning core learns PandaReach (the "learns a tiny task" test of the suite)."""

from __future__ import annotations

from pathlib import Path

import pytest

from serl.agents.sac import SACConfig
from serl.local import LocalTrainConfig, train_local


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_sac_learns_panda_reach_to_90_percent_success(tmp_path: Path) -> None:
    # Reach pays -distance/0.1 m per step (about -4 to -0.5), so SAC's default initial
    # temperature of 1.0 lets the entropy bonus swamp the reward near the target for the
    # first few thousand steps; 0.1 learns in ~2000 steps (success 1.0 at 2000-4000 steps
    # for seeds 0 and 1 when this test was written).
    cfg = LocalTrainConfig(
        env="sim:PandaReach-v0",
        agent_cfg=SACConfig(init_temperature=0.1),
        steps=2500,
        random_steps=500,
        start_training=500,
        eval_every=2500,
        eval_episodes=20,
        seed=0,
        run_dir=tmp_path,
        progress=False,
    )
    result = train_local(cfg)
    assert result.final_eval["eval/success_rate"] >= 0.9
