import torch
import torch.nn.functional as F

from serl.nets.augment import random_shift


def _reference_shift(images: torch.Tensor, pad: int, offsets: torch.Tensor) -> torch.Tensor:
    """Replicate-pad then crop at offset + pad (DrQ's definition), one image at a time."""
    out = []
    x = images.permute(0, 3, 1, 2).float()
    padded = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    h, w = images.shape[1:3]
    for i, (dy, dx) in enumerate(offsets.tolist()):
        out.append(padded[i, :, dy : dy + h, dx : dx + w])
    return torch.stack(out).permute(0, 2, 3, 1).to(images.dtype)


def test_random_shift_equals_replicate_pad_and_crop():
    images = torch.randint(0, 256, (6, 20, 24, 3), dtype=torch.uint8)
    shifted = random_shift(images, 4, torch.Generator().manual_seed(3))
    offsets = torch.randint(0, 9, (6, 2), generator=torch.Generator().manual_seed(3))
    assert shifted.dtype == torch.uint8
    torch.testing.assert_close(shifted, _reference_shift(images, 4, offsets))


def test_random_shift_keeps_frame_stacks_aligned():
    frames = torch.randint(0, 256, (4, 3, 16, 16, 3), dtype=torch.uint8)
    shifted = random_shift(frames, 2, torch.Generator().manual_seed(0))
    assert shifted.shape == frames.shape
    for s in range(3):  # every stacked frame moves by its sample's offset
        alone = random_shift(frames[:, s], 2, torch.Generator().manual_seed(0))
        torch.testing.assert_close(shifted[:, s], alone)


def test_zero_pad_is_the_identity():
    images = torch.randint(0, 256, (2, 8, 8, 3), dtype=torch.uint8)
    assert torch.equal(random_shift(images, 0), images)
