"""Observation encoders: everything between a gymnasium observation and the MLP heads.

* State observations (a Box, or a Dict of vectors) are flattened and concatenated: no weights.
* Image observations (uint8 Boxes shaped (H, W, C) or frame-stacked (S, H, W, C)) each get a
  conv encoder — the DrQ encoder (Kostrikov et al. 2021) or a small ResNet — whose output goes
  through Linear -> LayerNorm -> tanh (DrQ / SAC-AE); vectors in the same Dict (proprioception)
  are concatenated to the image features. Dict keys are always taken in sorted order.
* With a frozen backbone (`EncoderConfig.backbone`, `serl.nets.backbones`) a camera's trunk is
  fixed and only the Linear -> LayerNorm -> tanh head trains. A learner's replay buffer stores
  each frame's backbone features once (`frame_features`); its batches carry them under the key
  ``<camera>@<backbone digest>`` instead of the frames, and the encoder skips the backbone for
  them. An actor passes frames and the backbone runs on them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn

from serl.data.batch import Obs
from serl.data.replay import FrameFeatures
from serl.nets.backbones import BACKBONES, FrozenBackbone
from serl.nets.trunks import ConvTrunk, ResNetTrunk


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
    backbone: Literal["none", "efficientnet-lite0", "resnet10", "resnet18", "conv"] = "none"
    """A frozen pretrained trunk per camera ('none' trains `kind` end to end, DrQ): each frame
    is encoded once, when the learner stores it, and only a small head trains. efficientnet-lite0
    (ImageNet, the 'pretrained' extra), resnet10/resnet18 (your torchvision-named state dict in
    backbone_weights), conv (the suite's trunk from `serl pretrain-encoder`, or random without
    weights: the control)."""
    backbone_weights: str | None = None
    """Local weights of the backbone (.safetensors, or .pth read with weights_only=True)."""
    backbone_pool: int = 2
    """The backbone's map is average-pooled to pool x pool cells (C·pool² features a frame)."""

    def __post_init__(self) -> None:
        if self.backbone != "none" and self.backbone not in BACKBONES:
            raise ValueError(
                f"backbone={self.backbone!r}; choose none or one of {', '.join(BACKBONES)}"
            )


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


def images_to_float(images: Tensor) -> Tensor:
    """(B, [S,] H, W, C) uint8 -> (B, S*C, H, W) float in [-0.5, 0.5]."""
    x = images.float().div_(255.0).sub_(0.5)
    if x.dim() == 5:  # frame stack: fold frames into channels
        x = x.movedim(1, -2).flatten(-2)
    return x.permute(0, 3, 1, 2)


class CameraEncoder(nn.Module):
    """One camera's frames -> a feature vector: a trunk (trained, or a frozen backbone), then
    Linear -> LayerNorm -> tanh (`project`, always trained)."""

    def __init__(self, space: gym.spaces.Box, cfg: EncoderConfig) -> None:
        super().__init__()
        *stack, height, width, channels = space.shape
        in_channels = channels * (stack[0] if stack else 1)
        self.backbone: FrozenBackbone | None = None
        if cfg.backbone != "none":
            self.backbone = FrozenBackbone(cfg.backbone, cfg.backbone_weights, cfg.backbone_pool)
            flat = self.backbone.out_dim
        elif cfg.kind == "drq":
            self.trunk: nn.Module = ConvTrunk(in_channels, cfg.num_filters)
        else:
            self.trunk = ResNetTrunk(in_channels, cfg.num_filters)
        if self.backbone is None:
            with torch.no_grad():
                flat = self.trunk(torch.zeros(1, in_channels, height, width)).shape[-1]
        self.project = nn.Sequential(
            nn.Linear(flat, cfg.feature_dim), nn.LayerNorm(cfg.feature_dim), nn.Tanh()
        )

    def forward(self, images: Tensor) -> Tensor:
        if self.backbone is not None:
            return self.project(self.backbone(images))
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

    def feature_key(self, camera: str) -> str | None:
        """Where a batch carries `camera`'s stored backbone features, if it has a backbone."""
        backbone = self.cameras[camera].backbone
        return None if backbone is None else f"{camera}@{backbone.digest}"

    def frame_features(self) -> dict[str, FrameFeatures]:
        """What a replay buffer needs to store each camera's backbone features once per frame."""
        specs = {}
        for camera in self.image_keys:
            backbone = self.cameras[camera].backbone
            if backbone is not None:
                specs[camera] = FrameFeatures(
                    self.feature_key(camera), backbone.out_dim, _numpy_encoder(backbone)
                )
        return specs

    def _camera(self, obs: dict[str, Tensor], camera: str) -> Tensor:
        key = self.feature_key(camera)
        if key is not None and key in obs:
            return self.cameras[camera].project(obs[key].float())
        if camera not in obs:
            raise KeyError(
                f"observation has neither camera {camera!r} nor its features {key!r} (keys: "
                f"{sorted(obs)}); features of another backbone are never used in its place"
            )
        return self.cameras[camera](obs[camera])

    def forward(self, obs: Obs) -> Tensor:
        if not isinstance(obs, dict):
            return obs.flatten(1).float()
        parts = [self._camera(obs, key) for key in self.image_keys]
        parts += [obs[key].flatten(1).float() for key in self.vector_keys]
        return torch.cat(parts, dim=-1)


def _numpy_encoder(backbone: FrozenBackbone, batch: int = 64):
    """uint8 frames (n, H, W, 3) -> float32 features (n, D), in slices of `batch` frames."""

    def encode(frames: np.ndarray) -> np.ndarray:
        device = backbone.digest_bytes.device
        out = [
            backbone(torch.from_numpy(frames[i : i + batch]).to(device)).cpu().numpy()
            for i in range(0, len(frames), batch)
        ]
        return np.concatenate(out) if out else np.zeros((0, backbone.out_dim), np.float32)

    return encode
