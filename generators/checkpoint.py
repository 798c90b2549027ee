"""Safe, strict checkpoint reading for the official Infinity formats.

Formats understood:
- a plain state dict saved with ``torch.save`` (``.pth``/``.pt``), read with ``weights_only=True``;
- a dict wrapping the state dict under one key (the VAE files keep it under ``"vae"``);
- a single ``.safetensors`` file;
- a directory of sharded safetensors with ``model.safetensors.index.json`` (Infinity-8B).

Nothing here unpickles arbitrary objects: a file that needs pickle to load is refused with a
:class:`CheckpointError`.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

StateDict = dict[str, torch.Tensor]

_MAX_LISTED_KEYS = 20


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable, unsafe or does not match the model."""


def read_state_dict(path: str | Path, wrapper_key: str | None = None) -> StateDict:
    """Read tensors from a checkpoint file or sharded directory without trusting pickle.

    Args:
        path: a ``.pth``/``.pt`` file, a ``.safetensors`` file, or a directory holding
            ``model.safetensors.index.json`` and its shards.
        wrapper_key: when the file holds this entry as a dict, the state dict inside it is
            returned (official VAE files keep theirs under ``"vae"``); otherwise the file itself.
    Returns:
        a flat mapping from key to tensor (on the CPU).
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.is_dir():
        state_dict = _read_sharded_safetensors(path)
    elif path.suffix == ".safetensors":
        state_dict = _read_safetensors(path)
    else:
        state_dict = _read_torch_file(path)
    if wrapper_key is not None and isinstance(state_dict.get(wrapper_key), Mapping):
        state_dict = dict(state_dict[wrapper_key])
    bad = [k for k, v in state_dict.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path}: entries that are not tensors: {bad[:_MAX_LISTED_KEYS]}")
    return state_dict


def _read_torch_file(path: Path) -> dict:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"{path}: refused to load, the file needs arbitrary unpickling (weights_only=True): {err}"
        ) from err
    except (RuntimeError, EOFError, OSError) as err:
        raise CheckpointError(f"{path}: not a readable torch checkpoint ({err})") from err
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: expected a state dict, found {type(obj).__name__}")
    return dict(obj)


def _read_safetensors(path: Path) -> StateDict:
    try:
        return load_file(path, device="cpu")
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{path}: not a readable safetensors file ({err})") from err


def _read_sharded_safetensors(directory: Path) -> StateDict:
    index_path = directory / "model.safetensors.index.json"
    if not index_path.exists():
        raise CheckpointError(f"{directory}: a sharded checkpoint needs model.safetensors.index.json")
    try:
        weight_map: dict[str, str] = json.loads(index_path.read_text())["weight_map"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise CheckpointError(f"{index_path}: malformed index ({err})") from err
    state_dict: StateDict = {}
    for shard in sorted(set(weight_map.values())):
        state_dict.update(_read_safetensors(directory / shard))
    missing = sorted(set(weight_map) - set(state_dict))
    if missing:
        raise CheckpointError(f"{directory}: keys listed in the index but absent from shards: {missing[:20]}")
    return state_dict


def load_strict(module: nn.Module, state_dict: Mapping[str, torch.Tensor], what: str, assign: bool = False) -> None:
    """Copy ``state_dict`` into ``module``; any missing, unexpected or mis-shaped key is an error.

    Without `assign` tensors are copied into the module's parameters (its dtype and device
    decide); with it the module takes the checkpoint's tensors (for modules built on "meta").
    The error lists the offending keys so a user can tell a wrong file from a wrong config.
    """
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    mis_shaped = [
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or mis_shaped:
        parts = [f"{what}: checkpoint does not match the model config"]
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", mis_shaped)):
            if keys:
                more = f" (+{len(keys) - _MAX_LISTED_KEYS} more)" if len(keys) > _MAX_LISTED_KEYS else ""
                parts.append(f"{label} keys ({len(keys)}): {keys[:_MAX_LISTED_KEYS]}{more}")
        raise CheckpointError("\n  ".join(parts))
    module.load_state_dict(dict(state_dict), strict=True, assign=assign)
