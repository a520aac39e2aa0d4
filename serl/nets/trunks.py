"""Conv trunks: the image networks that the encoders and the frozen backbones are built from.

* `ConvTrunk`: the DrQ encoder (Kostrikov et al. 2021): 3x3 convs, the first with stride 2.
* `ResNetTrunk`: a ResNet-10-shaped trunk (four stages of one residual block, He et al. 2016)
  with GroupNorm, which does not depend on batch statistics (RL batches are not i.i.d.).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


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

    def feature_map(self, x: Tensor) -> Tensor:
        """(B, 8·num_filters, H/16, W/16): the last stage's map before pooling."""
        return self.blocks(self.stem(x))

    def forward(self, x: Tensor) -> Tensor:
        return self.feature_map(x).mean(dim=(-2, -1))
