"""Robust RL: policies that hold up when the real dynamics differ from the simulator's.

* `search`: worst-case search over a box of dynamics parameters (grid, CMA-ES).
* `tabular`: exact IWOCS and robust value iteration on small MDPs (the reference of §7).
* `linear_drrpo`: DR-RPO with linear function approximation, exactly (§8).
* `iwocs`: the deep IWOCS outer loop over actor-learner runs; `evaluate`: return over a grid.

The deep learners themselves are agents: `serl.agents.drrpo`, `serl.agents.iwocs`.
"""
