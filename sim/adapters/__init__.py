"""Adapters that give other simulators' tasks the gymnasium API and ``prefix:name`` ids.

* ``dmc:<domain>-<task>`` (`sim.adapters.dmc`): the DeepMind Control Suite (dm-control);
* ``robosuite:<Env>-<Robot>`` (`sim.adapters.robosuite`): robosuite environments.

Each module's `make(name, render_mode=None, **kwargs)` is a ``serl.envs`` entry point; the
simulator package is imported only when an env is made (the `sim` extra installs them).
"""
