"""Safe, strict weight loading for verifiers, with errors that say which file to get and where to pass it.

Verifiers know nothing of generators/, so this is their own small loader: `torch.load` with
`weights_only=True` (plain state dicts; nothing is unpickled beyond tensors) or safetensors,
then a strict key check. Every error names the file a user must provide and the option to
pass it with.
"""

from __future__ import annotations

import hashlib
import pickle
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

StateDict = dict[str, torch.Tensor]

_MAX_LISTED_KEYS = 12


class CheckpointError(ValueError):
    """A verifier's weights or support files are missing, unreadable or do not match the model."""


@dataclass(frozen=True)
class FileSpec:
    """A file a verifier needs: the option that takes its path, its official name, where to get it."""

    option: str
    filename: str
    source: str

    def describe(self) -> str:
        return f"{self.option}={self.filename} ({self.source})"


def require_file(path: str | Path | None, spec: FileSpec, verifier: str, directory: bool = False) -> Path:
    """The path, checked to exist; otherwise an error naming the file and the option."""
    kind = "directory" if directory else "file"
    if path is None:
        raise CheckpointError(
            f"{verifier} needs {spec.filename} ({spec.source}); pass {spec.option}=/path/to/{spec.filename}"
        )
    path = Path(path)
    if not path.exists() or path.is_dir() != directory:
        raise CheckpointError(
            f"{verifier}: {kind} not found: {path} (option {spec.option}; expected {spec.filename} from {spec.source})"
        )
    return path


def read_state_dict(path: Path, spec: FileSpec, verifier: str) -> StateDict:
    """Tensors of a `.safetensors` file or a plain torch state dict (`.pt`, `.pth`, `.bin`)."""
    where = f"{verifier}: {path} (option {spec.option}, expected {spec.filename})"
    if path.suffix == ".safetensors":
        try:
            return load_file(path, device="cpu")
        except (SafetensorError, OSError) as err:
            raise CheckpointError(f"{where}: not a readable safetensors file ({err})") from err
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(f"{where}: refused, the file needs arbitrary unpickling ({err})") from err
    except (RuntimeError, EOFError, OSError) as err:
        raise CheckpointError(f"{where}: not a readable torch state dict ({err})") from err
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{where}: expected a plain state dict of tensors, found {type(obj).__name__}")
    return dict(obj)


def load_strict(module: nn.Module, state_dict: Mapping[str, torch.Tensor], path: Path, spec: FileSpec) -> None:
    """Copy weights into `module`; a missing, unexpected or mis-shaped key is an error listing them."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    mis_shaped = [
        f"{k}: file {tuple(state_dict[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state_dict and state_dict[k].shape != v.shape
    ]
    if missing or unexpected or mis_shaped:
        parts = [f"{path} does not match the model; is it {spec.filename} ({spec.source}), passed as {spec.option}?"]
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", mis_shaped)):
            if keys:
                more = f" (+{len(keys) - _MAX_LISTED_KEYS} more)" if len(keys) > _MAX_LISTED_KEYS else ""
                parts.append(f"{label} keys ({len(keys)}): {keys[:_MAX_LISTED_KEYS]}{more}")
        raise CheckpointError("\n  ".join(parts))
    module.load_state_dict(dict(state_dict), strict=True)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 24):
            digest.update(block)
    return digest.hexdigest()
