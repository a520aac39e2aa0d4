"""serl-suite: torch-native sample-efficient reinforcement learning for real robots.

The learning core (agents, networks, replay, transport) sees only gymnasium environments;
it imports neither `sim` nor `robots`.
"""

__version__ = "0.1.0"
