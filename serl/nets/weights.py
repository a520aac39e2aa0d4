"""Loading pretrained encoder weights from a local safetensors file (never a download)."""

from __future__ import annotations

from pathlib import Path

from safetensors.torch import load_file
from torch import nn


def load_encoder_weights(encoder: nn.Module, path: str | Path) -> None:
    """Copy every tensor of `path` into `encoder`; names and shapes must match exactly."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"encoder weights file {path} does not exist; give a local .safetensors file "
            "saved from an encoder of the same architecture (serl never downloads weights)"
        )
    tensors = load_file(str(path))
    own = encoder.state_dict()
    missing, unexpected = sorted(set(own) - set(tensors)), sorted(set(tensors) - set(own))
    if missing or unexpected:
        raise ValueError(
            f"{path}: missing tensors {missing[:5]}, unexpected tensors {unexpected[:5]}"
        )
    for name, tensor in tensors.items():
        if tensor.shape != own[name].shape:
            raise ValueError(
                f"{path}: tensor {name!r} has shape {tuple(tensor.shape)}, the encoder expects "
                f"{tuple(own[name].shape)}; was it saved for another image size or --num-filters?"
            )
    encoder.load_state_dict(tensors)
