"""A teleop device driven by a program: a test's "human" or a simulator's scripted expert.

`ScriptedDevice(source)` takes either

* a sequence of commands (`TeleopCommand`s or action arrays), one per `read`, after which it
  says `quit`; or
* a callable ``source(obs) -> TeleopCommand | action array | None`` (None: not intervening),
  e.g. an expert policy, called with the observation of each step.

An action array becomes ``TeleopCommand(action, intervening=True)``: a script that speaks is
acting. `reset_fn` runs at each episode start (an expert's ``reset``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Union

import numpy as np

from serl.teleop.device import TeleopCommand, TeleopDevice

Script = Union[Callable[[Any], Any], Sequence[Any]]
"""What drives a ScriptedDevice: a callable of the observation, or a sequence of commands."""


def as_command(value: Any) -> TeleopCommand:
    """A command from a TeleopCommand, an action array (intervening) or None (idle)."""
    if isinstance(value, TeleopCommand):
        return value
    if value is None:
        return TeleopCommand()
    return TeleopCommand(action=np.asarray(value, dtype=np.float32), intervening=True)


class ScriptedDevice(TeleopDevice):
    """Commands from a callable of the observation or from a sequence (module doc)."""

    name = "scripted"

    def __init__(self, source: Script, reset_fn: Callable[[], None] | None = None) -> None:
        if not callable(source) and not isinstance(source, Sequence):
            raise TypeError(
                f"ScriptedDevice source is {type(source).__name__}; give a callable of the "
                "observation or a sequence of commands"
            )
        self.source = source
        self.reset_fn = reset_fn
        self.reads = 0

    def read(self, obs: Any = None) -> TeleopCommand:
        self.reads += 1
        if callable(self.source):
            return as_command(self.source(obs))
        if self.reads > len(self.source):
            return TeleopCommand(quit=True)
        return as_command(self.source[self.reads - 1])

    def reset(self) -> None:
        if self.reset_fn is not None:
            self.reset_fn()
