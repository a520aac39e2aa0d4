"""Loading pretrained encoder weights from a local safetensors file (never a download)."""

from __future__ import annotations

from pathlib import Path

from safetensors.torch import load_file
from torch import Tensor, nn


def load_encoder_weights(encoder: nn.Module, path: str | Path) -> None:
    """Copy every tensor of `path` into `encoder`; names and shapes must match exactly."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"encoder weights file {path} does not exist; give a local .safetensors file "
            "saved from an encoder of the same architecture (serl never downloads weights)"
        )
    load_exactly(encoder, load_file(str(path)), str(path))


def load_exactly(
    module: nn.Module,
    tensors: dict[str, Tensor],
    what: str,
    error: type[ValueError] = ValueError,
) -> None:
    """Copy `tensors` into `module`; every tensor must exist on both sides with the same shape
    (a clear `error` naming `what` otherwise, before anything is copied)."""
    own = module.state_dict()
    missing, unexpected = sorted(set(own) - set(tensors)), sorted(set(tensors) - set(own))
    if missing or unexpected:
        raise error(f"{what}: missing tensors {missing[:5]}, unexpected tensors {unexpected[:5]}")
    for name, tensor in tensors.items():
        if tensor.shape != own[name].shape:
            raise error(
                f"{what}: tensor {name!r} has shape {tuple(tensor.shape)}, the module expects "
                f"{tuple(own[name].shape)}; was it saved for another image size or "
                "architecture?"
            )
    module.load_state_dict(tensors)
