"""Random-shift image augmentation (DrQ, Kostrikov et al. 2021, Sec. 3.1).

Each image is padded by `pad` pixels with its border values and cropped back to its size at a
random offset. The padding is never built: clamping the gather indices into the image gives the
same pixels as replicate padding, and works on uint8 frames before they become floats.
"""

from __future__ import annotations

import torch
from torch import Tensor


def random_shift(images: Tensor, pad: int, generator: torch.Generator | None = None) -> Tensor:
    """Shift each image of a (B, ..., H, W, C) batch by its own offset in [-pad, pad]^2."""
    if pad <= 0:
        return images
    batch, height, width = images.shape[0], images.shape[-3], images.shape[-2]
    # Drawn where the generator lives (an agent on a GPU owns a CUDA generator).
    where = generator.device if generator is not None else images.device
    offsets = torch.randint(0, 2 * pad + 1, (batch, 2), generator=generator, device=where)
    offsets = offsets.to(images.device) - pad
    rows = (offsets[:, :1] + torch.arange(height, device=images.device)).clamp_(0, height - 1)
    cols = (offsets[:, 1:] + torch.arange(width, device=images.device)).clamp_(0, width - 1)
    # Move H, W to the front so one advanced index picks (row, col) per sample.
    leading = images.dim() - 3  # batch plus any frame-stack axes
    flat = images.movedim((-3, -2), (1, 2))  # (B, H, W, ..., C)
    picked = flat[
        torch.arange(batch, device=images.device)[:, None, None],
        rows[:, :, None],
        cols[:, None, :],
    ]
    return picked.movedim((1, 2), (leading, leading + 1))


def shift_image_keys(obs, keys: list[str], pad: int, generator: torch.Generator | None):
    """Randomly shift the image entries `keys` of a dict observation; other entries pass."""
    if not keys or pad <= 0:
        return obs
    return {k: random_shift(v, pad, generator) if k in keys else v for k, v in obs.items()}
