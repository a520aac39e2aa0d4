"""Splitting a learner batch by data source: prior (offline, demos, H2O's "real") vs online.

The learner marks every row with `Batch.prior` (1.0 prior dataset, 0.0 online). The hybrid
learners (H2O, MOORL, FamO2O) treat the two sources differently, so they all cut a batch the
same way here; a batch without the tag counts as all online.
"""

from __future__ import annotations

import torch
from torch import Tensor

from serl.data.batch import Batch


def select_rows(batch: Batch, index: Tensor) -> Batch:
    """The rows of `batch` at `index` (a bool mask or integer indices), tags included."""
    return batch._map(lambda t: t[index])


def prior_mask(batch: Batch) -> Tensor:
    """(B,) bool, True for rows from the prior dataset; all False when `prior` is None."""
    if batch.prior is None:
        return torch.zeros(len(batch), dtype=torch.bool, device=batch.action.device)
    return batch.prior > 0.5


def split_sources(batch: Batch) -> tuple[Batch, Batch]:
    """(prior rows, online rows) of `batch`, each keeping the rows' original order."""
    mask = prior_mask(batch)
    return select_rows(batch, mask), select_rows(batch, ~mask)


def concat_batches(first: Batch, second: Batch) -> Batch:
    """Rows of `first` then rows of `second` (same observation layout)."""

    def cat(a: Tensor | dict | None, b: Tensor | dict | None):
        if a is None or b is None:
            return None
        if isinstance(a, dict):
            return {key: torch.cat([a[key], b[key]]) for key in a}
        return torch.cat([a, b])

    return Batch(
        obs=cat(first.obs, second.obs),
        action=cat(first.action, second.action),
        reward=cat(first.reward, second.reward),
        next_obs=cat(first.next_obs, second.next_obs),
        terminated=cat(first.terminated, second.terminated),
        prior=cat(first.prior, second.prior),
    )
