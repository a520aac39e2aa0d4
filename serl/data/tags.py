"""Where a transition came from (DESIGN §3), stored as one uint8 code per transition.

The code of a source is its index in `SOURCES`, so saved buffers stay readable as long as new
sources are only ever appended. "eval" marks evaluation episodes: they are logged but never
trained on, and a training buffer refuses them, so a policy is never fitted to the episodes
that measure it.
"""

from __future__ import annotations

import numpy as np

SOURCES: tuple[str, ...] = ("demo", "offline", "online", "intervention", "sim", "real", "eval")
"""Transition sources; a source's uint8 code is its index here (append only)."""
EVAL_SOURCE = "eval"
"""Tag of evaluation transitions, which no training buffer accepts."""


def source_code(name: str) -> int:
    """The uint8 code of source `name`; ValueError naming it and the allowed ones otherwise."""
    if isinstance(name, str) and name in SOURCES:
        return SOURCES.index(name)
    raise ValueError(f"unknown transition source {name!r}; expected one of {', '.join(SOURCES)}")


def source_name(code: int | np.integer) -> str:
    """The source of uint8 `code`; ValueError naming it and the allowed ones otherwise."""
    if isinstance(code, (int, np.integer)) and not isinstance(code, bool):
        if 0 <= code < len(SOURCES):
            return SOURCES[int(code)]
    allowed = ", ".join(f"{i}={name}" for i, name in enumerate(SOURCES))
    raise ValueError(f"unknown transition source code {code!r}; expected one of {allowed}")
