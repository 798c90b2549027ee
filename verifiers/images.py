"""uint8 RGB batches to normalised model inputs, batched on the verifier's device.

The same steps as CLIP-style PIL pipelines (`Resize(size)` of the shorter side, `CenterCrop`,
`ToTensor`, `Normalize`), done on uint8 tensors with torchvision's antialiased resize, so a
batch is preprocessed in one call; the result matches the PIL path to within rounding.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)

_INTERPOLATION = {"bicubic": InterpolationMode.BICUBIC, "bilinear": InterpolationMode.BILINEAR}


def to_pixels(
    images_NHW3: np.ndarray,
    size: int,
    mean: Sequence[float],
    std: Sequence[float],
    *,
    interpolation: str = "bicubic",
    resize_mode: str = "shortest",
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> normalised float (N, 3, size, size).

    resize_mode "shortest": shorter side to `size`, then centre crop (CLIP, BLIP); "squash":
    straight to size x size.
    """
    if interpolation not in _INTERPOLATION:
        raise ValueError(f"unsupported interpolation {interpolation!r}; choose one of {sorted(_INTERPOLATION)}")
    x_N3HW = torch.from_numpy(np.ascontiguousarray(images_NHW3)).to(device).permute(0, 3, 1, 2)
    mode = _INTERPOLATION[interpolation]
    if resize_mode == "shortest":
        if min(x_N3HW.shape[-2:]) != size:
            x_N3HW = TF.resize(x_N3HW, [size], interpolation=mode, antialias=True)
        x_N3HW = TF.center_crop(x_N3HW, [size, size])
    elif resize_mode == "squash":
        if tuple(x_N3HW.shape[-2:]) != (size, size):
            x_N3HW = TF.resize(x_N3HW, [size, size], interpolation=mode, antialias=True)
    else:
        raise ValueError(f"unsupported resize_mode {resize_mode!r}; choose 'shortest' or 'squash'")
    x_N3HW = x_N3HW.float().div_(255)
    return TF.normalize(x_N3HW, list(mean), list(std)).to(dtype)


def fit_within(images_NHW3: np.ndarray, max_side: int) -> np.ndarray:
    """Downscale (antialiased bicubic) so the longer side is at most max_side; uint8 out."""
    h, w = images_NHW3.shape[1:3]
    if max(h, w) <= max_side:
        return images_NHW3
    scale = max_side / max(h, w)
    x_N3HW = torch.from_numpy(np.ascontiguousarray(images_NHW3)).permute(0, 3, 1, 2)
    size = [max(1, round(h * scale)), max(1, round(w * scale))]
    x_N3HW = TF.resize(x_N3HW, size, interpolation=InterpolationMode.BICUBIC, antialias=True)
    return x_N3HW.permute(0, 2, 3, 1).contiguous().numpy()
