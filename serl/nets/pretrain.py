"""Pretraining the `conv` backbone on the user's own camera frames: `serl pretrain-encoder`.

ImageNet features (``efficientnet-lite0``, ``resnet10``) describe photographs of objects; a
wrist camera looking at a gripper and a peg, or a camera above a bin, looks nothing like
them. The suite's own trunk (`ConvBackbone`) can instead learn from the frames a user has
already recorded (demos, rollouts, reward-classifier frame sets), without labels, and is then
used frozen: ``--agent-cfg.encoder.backbone conv --agent-cfg.encoder.backbone-weights FILE``.

Objective: an autoencoder, pixel reconstruction as the auxiliary objective of SAC-AE (Yarats
et al. 2021, "Improving Sample Efficiency in Model-Free Reinforcement Learning from Images").
A decoder, thrown away afterwards, redraws the frame downsampled to a quarter of its side
(32x32 from 128x128; mean squared error in the backbone's input normalisation) from exactly
what the policy's head will see: the backbone's map average-pooled to ``pool x pool`` cells
(`pool_features`, as `FrozenBackbone` pools it). Its first layer is fully connected, as
SAC-AE's is, so to redraw the objects and the gripper where they are, the pooled features
must say where they are, which is what a policy needs from a camera. A convolutional decoder
from the full map was tried first: it can read positions off the map's layout, which the
pooling then discards. On 64x64 frames of a moving red square beside a moving green
distractor, a ridge probe of the red square's position from pool-2 features reached R² 0.99
after this objective, 0.97 after the full-map one and 0.84-0.93 with the random backbone. On
the front camera of 30 scripted PandaPickCube demos at 64x64 (600 steps), a probe of the
gripper's 3-D position on 20 other episodes reached R² 0.95-0.97 against 0.84-0.85 for the
random backbone; redrawing at the full 64x64 reached only 0.89-0.90, hence the quarter.

Reconstruction rather than a contrastive objective (CURL, Laskin et al. 2020): instance
discrimination wants large batches of negatives, and a few thousand frames of one scene are
near-copies of each other; reconstruction gets a dense signal from every pixel of every frame
from small batches, and its decoder costs little beside the backbone. The input is randomly
shifted (DrQ, `serl.nets.augment`) and the shifted frame is the target: the shift multiplies
a few thousand frames as it does in DrQ, and a shift the encoder is not told of could not be
undone.

Frames of every view train the one backbone (the encoder applies it to each camera). The
validation split is by episode (`FrameSet.split`: neighbouring frames are near-copies); data
with too few episodes holds out its last frames instead. The output is a ``.safetensors`` file
with exactly `ConvBackbone`'s tensors, written atomically; its metadata key ``serl_pretrain``
holds JSON saying what it was trained on and how (`PRETRAIN_METADATA_KEY`).

Cost is the backbone's own passes: on the 2-core development machine, shared with other work,
a step of 32 frames took about 0.2 s at 64x64 and a step of 16 frames 1-2 s at 128x128 (the
default 1000 steps of 32 at 128x128: about an hour there); ``--device cuda`` where there is a
GPU.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save
from torch import Tensor, nn
from tqdm import tqdm

from serl.checkpoint import atomic_write_bytes
from serl.nets.augment import random_shift
from serl.nets.backbones import (
    CONV_FILTERS,
    CONV_MEAN,
    CONV_STD,
    ConvBackbone,
    normalise_frames,
    pool_features,
)
from serl.rewards.dataset import FrameSet, concatenate, load_frames

logger = logging.getLogger(__name__)

OBJECTIVE = "autoencoder: reconstruction of the downsampled frame from the pooled features"
DECODER_WIDTH = 32
"""Channels of the decoder's layers (SAC-AE's decoder has 32 filters)."""
MAX_RECONSTRUCTION_SIZE = 64
"""Largest default side of the redrawn frame: the decoder's first layer grows with its square."""
TRAIN_EVAL_FRAMES = 512
"""Training frames the final train loss is measured on (all of them would be another pass)."""
EVAL_BATCH = 256
"""Frames per forward pass when measuring a loss."""
PRETRAIN_METADATA_KEY = "serl_pretrain"
"""safetensors metadata key of the JSON record: objective, files, views, frames, losses, ..."""


class PretrainError(ValueError):
    """The data or the output path cannot be used (names which, and what to do)."""


@dataclass(frozen=True)
class PretrainConfig:
    """Pretrain the `conv` backbone on recorded camera frames and write its weights."""

    data: tuple[Path, ...]
    """Frame sets (serl record-rewards), episode datasets (serl record-demos directories,
    sim.collect .npz) or saved replay buffers whose frames train the encoder."""
    out: Path
    """The .safetensors file to write: the `conv` backbone's weights."""
    views: tuple[str, ...] = ("front",)
    """Camera keys whose frames are used; the one backbone serves every camera."""
    size: int | None = None
    """Resize frames to size x size (None: as recorded). Train at the size the policy sees."""
    pool: int = 2
    """Cells per side the map is pooled to; use the same --agent-cfg.encoder.backbone-pool."""
    reconstruction_size: int | None = None
    """Side of the downsampled frame the decoder redraws, a multiple of 4 (None: a quarter of
    the frame's shorter side, 32 at 128x128, at most 64)."""
    steps: int = 1000
    """Gradient steps."""
    batch_size: int = 32
    """Frames per gradient step."""
    lr: float = 1e-3
    """Adam learning rate."""
    augment_pad: int = 4
    """Random-shift padding in pixels (0 disables the augmentation)."""
    val_fraction: float = 0.1
    """Share of episodes held out to measure the validation loss."""
    seed: int = 0
    """Seed of the split, the initial weights, the batches and the augmentation."""
    device: str = "cpu"
    """Torch device (cpu, cuda)."""
    threads: int = 0
    """torch CPU threads (0 keeps torch's default; 1 where other work keeps the cores busy)."""
    force: bool = False
    """Overwrite --out if it exists."""
    progress: bool = True
    """Show a progress bar."""

    def __post_init__(self) -> None:
        counts = {"--pool": self.pool, "--steps": self.steps, "--batch-size": self.batch_size}
        if self.size is not None:
            counts["--size"] = self.size
        for flag, value in counts.items():
            if value < 1:
                raise PretrainError(f"{flag} {value}; expected at least 1")
        redraw = self.reconstruction_size
        if redraw is not None and (redraw < 4 or redraw % 4):
            raise PretrainError(f"--reconstruction-size {redraw}; expected a multiple of 4")
        if not 0 < self.val_fraction < 1:
            raise PretrainError(f"--val-fraction {self.val_fraction}; expected a share in (0, 1)")


class PooledAutoencoder(nn.Module):
    """`ConvBackbone` -> pooled features -> a decoder redrawing the frame at size x size."""

    def __init__(self, pool: int, size: int) -> None:
        super().__init__()
        self.pool, self.size = pool, size
        self.backbone = ConvBackbone()
        seed, width = size // 4, DECODER_WIDTH  # two x2 upsamplings reach the target size
        self.decoder = nn.Sequential(
            nn.Linear(CONV_FILTERS * 8 * pool * pool, width * seed * seed),
            nn.ReLU(),
            nn.Unflatten(1, (width, seed, seed)),
            nn.Upsample(scale_factor=2),
            nn.Conv2d(width, width, 3, padding=1),
            nn.ReLU(),
            nn.Upsample(scale_factor=2),
            nn.Conv2d(width, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, 3, 3, padding=1),
        )
        self.register_buffer("mean", torch.tensor(CONV_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(CONV_STD).view(1, 3, 1, 1), persistent=False)

    def loss(self, frames: Tensor) -> Tensor:
        """Mean squared reconstruction error of uint8 frames (B, H, W, 3)."""
        x = normalise_frames(frames, self.mean, self.std)
        target = F.adaptive_avg_pool2d(x, self.size)
        features = pool_features(self.backbone(x), self.pool)
        return F.mse_loss(self.decoder(features), target)


@dataclass
class PretrainResult:
    backbone: ConvBackbone
    info: dict
    """What the weights file's metadata records (see `pretrain`)."""


def gather_frames(paths: tuple[Path, ...], views: tuple[str, ...], size: int | None) -> FrameSet:
    """The frames of every path, one frame set; PretrainError when a path or view is unusable."""
    if not paths:
        raise PretrainError("no data: give --data with frame sets, datasets or replay buffers")
    sets, shapes = [], {}
    for path in paths:
        try:
            data = load_frames(path, views, size)
        except (FileNotFoundError, ValueError) as exc:
            raise PretrainError(str(exc)) from exc
        if not len(data):
            raise PretrainError(f"{path}: no frames in it")
        sets.append(data)
        shapes |= {f"{path} {v}": data.frames[v].shape[1:3] for v in views}
    if len(set(shapes.values())) > 1:
        listed = ", ".join(f"{where} {h}x{w}" for where, (h, w) in shapes.items())
        raise PretrainError(f"frames differ in size ({listed}); give --size to resize them all")
    return concatenate(sets)


def split_frames(data: FrameSet, val_fraction: float, seed: int) -> tuple[FrameSet, FrameSet]:
    """(train, validation) by episode; data with too few episodes holds out its last frames."""
    train, val = data.split(val_fraction, seed)
    if len(val) and len(train):
        return train, val
    cut = min(len(data) - 1, int(round(len(data) * (1 - val_fraction))))
    if cut < 1:
        raise PretrainError(f"{len(data)} frame(s): too few to hold out a validation split")
    logger.warning(
        "too few episodes to hold whole ones out: the last %d frames are the validation split",
        len(data) - cut,
    )
    return data.subset(np.arange(cut)), data.subset(np.arange(cut, len(data)))


def _all_views(data: FrameSet) -> np.ndarray:
    return np.concatenate([data.frames[v] for v in data.views])


@torch.no_grad()
def mean_loss(model: PooledAutoencoder, frames: np.ndarray, device: str) -> float:
    """Reconstruction loss over `frames`, without augmentation."""
    total = 0.0
    for i in range(0, len(frames), EVAL_BATCH):
        batch = torch.as_tensor(frames[i : i + EVAL_BATCH], device=device)
        total += model.loss(batch).item() * len(batch)
    return total / len(frames)


def default_reconstruction_size(height: int, width: int) -> int:
    """A quarter of the shorter side, as a multiple of 4 in [4, MAX_RECONSTRUCTION_SIZE]."""
    return min(MAX_RECONSTRUCTION_SIZE, max(4, min(height, width) // 16 * 4))


def pretrain(data: FrameSet, cfg: PretrainConfig) -> PretrainResult:
    """Train a `ConvBackbone` on `data` with the pooled autoencoder objective."""
    train, val = split_frames(data, cfg.val_fraction, cfg.seed)
    train_frames, val_frames = _all_views(train), _all_views(val)
    height, width = train_frames.shape[1:3]
    redraw = cfg.reconstruction_size or default_reconstruction_size(height, width)
    spaced = np.linspace(0, len(train_frames) - 1, min(len(train_frames), TRAIN_EVAL_FRAMES))
    train_sample = train_frames[spaced.astype(int)]
    logger.info("%d training frames, %d validation frames", len(train_frames), len(val_frames))
    with torch.random.fork_rng(devices=[]):  # the seed decides the weights; global RNG untouched
        torch.manual_seed(cfg.seed)
        model = PooledAutoencoder(cfg.pool, redraw)
    model.to(cfg.device)
    generator = torch.Generator().manual_seed(cfg.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    initial_val_loss = mean_loss(model, val_frames, cfg.device)
    bar = tqdm(range(cfg.steps), disable=not cfg.progress, unit="step", dynamic_ncols=True)
    for _ in bar:
        index = torch.randint(0, len(train_frames), (cfg.batch_size,), generator=generator)
        frames = torch.as_tensor(train_frames[index.numpy()], device=cfg.device)
        loss = model.loss(random_shift(frames, cfg.augment_pad, generator))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
    info = {
        "objective": OBJECTIVE,
        "pool": cfg.pool,
        "reconstruction_size": redraw,
        "files": [str(p) for p in cfg.data],
        "views": list(data.views),
        "frame_size": [int(height), int(width)],
        "train_frames": len(train_frames),
        "val_frames": len(val_frames),
        "steps": cfg.steps,
        "batch_size": cfg.batch_size,
        "lr": cfg.lr,
        "augment_pad": cfg.augment_pad,
        "seed": cfg.seed,
        "initial_val_loss": initial_val_loss,
        "val_loss": mean_loss(model, val_frames, cfg.device),
        "train_loss": mean_loss(model, train_sample, cfg.device),
    }
    logger.info("validation loss %.5f -> %.5f", initial_val_loss, info["val_loss"])
    return PretrainResult(model.backbone.cpu(), info)


def save_backbone(path: Path, backbone: ConvBackbone, info: dict) -> None:
    """Write the backbone's state dict (what `build_backbone("conv", path)` loads) atomically."""
    state = {k: v.detach().contiguous() for k, v in backbone.state_dict().items()}
    atomic_write_bytes(path, save(state, metadata={PRETRAIN_METADATA_KEY: json.dumps(info)}))


def pretrain_encoder(cfg: PretrainConfig) -> PretrainResult:
    """The whole command: refuse to overwrite, gather the frames, train, write --out."""
    if cfg.out.exists() and not cfg.force:
        raise PretrainError(f"{cfg.out} exists; pick another --out or pass --force to replace it")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    result = pretrain(gather_frames(cfg.data, cfg.views, cfg.size), cfg)
    save_backbone(cfg.out, result.backbone, result.info)
    return result
