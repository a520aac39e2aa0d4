"""Observation encoders: everything between a gymnasium observation and the MLP heads.

* State observations (a Box, or a Dict of vectors) are flattened and concatenated: no weights.
* Image observations (uint8 Boxes shaped (H, W, C) or frame-stacked (S, H, W, C)) each get a
  conv encoder — the DrQ encoder (Kostrikov et al. 2021) or a small ResNet — whose output goes
  through Linear -> LayerNorm -> tanh (DrQ / SAC-AE); vectors in the same Dict (proprioception)
  are concatenated to the image features. Dict keys are always taken in sorted order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from serl.data.batch import Obs


@dataclass(frozen=True)
class EncoderConfig:
    kind: Literal["drq", "resnet"] = "drq"
    """Conv trunk for image keys: the 4-layer DrQ encoder or a small ResNet."""
    num_filters: int = 32
    """Channels of the DrQ conv layers (the ResNet doubles from this per stage)."""
    feature_dim: int = 50
    """Size of each camera's feature vector after Linear -> LayerNorm -> tanh."""
    augment_pad: int = 4
    """Random-shift padding in pixels applied on the learner (0 disables augmentation)."""
    weights_path: str | None = None
    """Local safetensors file with pretrained encoder weights (never downloaded)."""
    freeze: bool = False
    """Keep the encoder fixed (use with weights_path); features are then computed once per batch."""


def is_image_space(space: gym.Space) -> bool:
    return (
        isinstance(space, gym.spaces.Box) and space.dtype == np.uint8 and len(space.shape) in (3, 4)
    )


def image_keys(space: gym.Space) -> list[str]:
    if isinstance(space, gym.spaces.Dict):
        return sorted(k for k, s in space.spaces.items() if is_image_space(s))
    return []


def vector_keys(space: gym.Space) -> list[str]:
    if isinstance(space, gym.spaces.Dict):
        return sorted(k for k, s in space.spaces.items() if not is_image_space(s))
    return []


def check_supported(space: gym.Space) -> None:
    """Raise a clear error for observation spaces the encoders cannot take."""
    if isinstance(space, gym.spaces.Box):
        if is_image_space(space):
            raise ValueError(
                f"image observation space {space} must sit inside a gymnasium Dict "
                "(e.g. {'front': <image>}); wrap the env so cameras are named"
            )
        return
    if isinstance(space, gym.spaces.Dict):
        for key, sub in space.spaces.items():
            if not isinstance(sub, gym.spaces.Box):
                raise ValueError(
                    f"observation key {key!r} is {sub}; only Box entries are supported"
                )
        return
    raise ValueError(f"observation space {space} is not a Box or a Dict of Boxes")


class ConvTrunk(nn.Module):
    """DrQ encoder: 3x3 convs (first with stride 2), ReLU, flattened."""

    def __init__(self, in_channels: int, num_filters: int, num_layers: int = 4) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, num_filters, 3, stride=2), nn.ReLU()]
        for _ in range(num_layers - 1):
            layers += [nn.Conv2d(num_filters, num_filters, 3, stride=1), nn.ReLU()]
        self.net = nn.Sequential(*layers, nn.Flatten())

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class ResidualBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, bias=False)
        self.norm1 = nn.GroupNorm(min(8, out_channels), out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, padding=1, bias=False)
        self.norm2 = nn.GroupNorm(min(8, out_channels), out_channels)
        self.skip: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.skip = nn.Conv2d(in_channels, out_channels, 1, stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        h = F.relu(self.norm1(self.conv1(x)))
        return F.relu(self.norm2(self.conv2(h)) + self.skip(x))


class ResNetTrunk(nn.Module):
    """A ResNet-10-shaped trunk (four stages of one block) with GroupNorm and average pooling."""

    def __init__(self, in_channels: int, num_filters: int) -> None:
        super().__init__()
        widths = [num_filters * 2**i for i in range(4)]
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 3, stride=2, padding=1, bias=False),
            nn.GroupNorm(min(8, widths[0]), widths[0]),
            nn.ReLU(),
        )
        blocks, width = [], widths[0]
        for i, out in enumerate(widths):
            blocks.append(ResidualBlock(width, out, stride=1 if i == 0 else 2))
            width = out
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x: Tensor) -> Tensor:
        return self.blocks(self.stem(x)).mean(dim=(-2, -1))


def images_to_float(images: Tensor) -> Tensor:
    """(B, [S,] H, W, C) uint8 -> (B, S*C, H, W) float in [-0.5, 0.5]."""
    x = images.float().div_(255.0).sub_(0.5)
    if x.dim() == 5:  # frame stack: fold frames into channels
        x = x.movedim(1, -2).flatten(-2)
    return x.permute(0, 3, 1, 2)


class CameraEncoder(nn.Module):
    def __init__(self, space: gym.spaces.Box, cfg: EncoderConfig) -> None:
        super().__init__()
        *stack, height, width, channels = space.shape
        in_channels = channels * (stack[0] if stack else 1)
        if cfg.kind == "drq":
            self.trunk: nn.Module = ConvTrunk(in_channels, cfg.num_filters)
        else:
            self.trunk = ResNetTrunk(in_channels, cfg.num_filters)
        with torch.no_grad():
            flat = self.trunk(torch.zeros(1, in_channels, height, width)).shape[-1]
        self.project = nn.Sequential(
            nn.Linear(flat, cfg.feature_dim), nn.LayerNorm(cfg.feature_dim), nn.Tanh()
        )

    def forward(self, images: Tensor) -> Tensor:
        return self.project(self.trunk(images_to_float(images)))


class ObservationEncoder(nn.Module):
    """Maps a batched observation (tensor or dict of tensors) to one feature vector per sample."""

    def __init__(self, space: gym.Space, cfg: EncoderConfig | None = None) -> None:
        super().__init__()
        check_supported(space)
        cfg = cfg or EncoderConfig()
        self.image_keys = image_keys(space)
        self.vector_keys = vector_keys(space)
        self.cameras = nn.ModuleDict(
            {key: CameraEncoder(space.spaces[key], cfg) for key in self.image_keys}
        )
        if isinstance(space, gym.spaces.Dict):
            vector_dim = sum(int(np.prod(space.spaces[k].shape)) for k in self.vector_keys)
        else:
            vector_dim = int(np.prod(space.shape))
        self.out_dim = vector_dim + cfg.feature_dim * len(self.image_keys)

    @property
    def has_images(self) -> bool:
        return bool(self.image_keys)

    def forward(self, obs: Obs) -> Tensor:
        if not isinstance(obs, dict):
            return obs.flatten(1).float()
        parts = [self.cameras[key](obs[key]) for key in self.image_keys]
        parts += [obs[key].flatten(1).float() for key in self.vector_keys]
        return torch.cat(parts, dim=-1)
