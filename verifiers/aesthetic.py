"""LAION improved aesthetic predictor v2 (christophschuhmann/improved-aesthetic-predictor).

Score: the MLP's regression of the mean human rating (1-10 scale, AVA-style; typical web
images 4-7) from the L2-normalised CLIP ViT-L/14 image embedding (OpenAI weights, the 768-d
projected `encode_image` output). The MLP is linear (no activations: "linearMSE"), with
dropouts that do nothing at inference but keep the official key names (layers.0, 2, 4, 6, 7).

The CLIP comes from `verifiers.clip.shared_open_clip`, so an aesthetic and a CLIPScore verifier
loaded on the same CLIP file hold one model and run one image forward per batch.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from torch import nn

from verifiers.base import Verifier, VerifierInfo
from verifiers.checkpoint import FileSpec, load_strict, read_state_dict, require_file, sha256_file
from verifiers.clip import OpenCLIP

AESTHETIC_FILE = FileSpec(
    "checkpoint",
    "sac+logos+ava1-l14-linearMSE.pth",
    "github.com/christophschuhmann/improved-aesthetic-predictor",
)
SCORE_DEFINITION = (
    "LAION improved aesthetic predictor v2: linear MLP 768-1024-128-64-16-1 on the L2-normalised "
    "CLIP ViT-L/14 image embedding; predicted mean rating on a 1-10 scale"
)


class AestheticMLP(nn.Module):
    def __init__(self, input_size: int = 768) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(input_size, 1024),
            nn.Dropout(0.2),
            nn.Linear(1024, 128),
            nn.Dropout(0.2),
            nn.Linear(128, 64),
            nn.Dropout(0.1),
            nn.Linear(64, 16),
            nn.Linear(16, 1),
        )

    def forward(self, x_ND: torch.Tensor) -> torch.Tensor:
        return self.layers(x_ND).squeeze(-1)  # [N]


class AestheticVerifier(Verifier):
    def __init__(
        self, clip: OpenCLIP, checkpoint: str | Path | None, *, batch_size: int = 32, name: str = "aesthetic"
    ) -> None:
        self.clip, self.batch_size, self.name = clip, batch_size, name
        self.checkpoint = require_file(checkpoint, AESTHETIC_FILE, name)
        state_dict = read_state_dict(self.checkpoint, AESTHETIC_FILE, name)
        head = AestheticMLP(clip.model.visual.output_dim)
        load_strict(head, state_dict, self.checkpoint, AESTHETIC_FILE)
        self.head = head.to(clip.device).eval().requires_grad_(False)  # float32: 1M parameters

    @cached_property
    def info(self) -> VerifierInfo:
        return VerifierInfo(
            name=self.name,
            version=f"improved-aesthetic-predictor v2 linearMSE on {self.clip.version}",
            score_definition=SCORE_DEFINITION,
            files_needed=[str(self.checkpoint), str(self.clip.checkpoint)],
            checkpoint_sha256=sha256_file(self.checkpoint),
        )

    @torch.inference_mode()
    def _score(self, prompts: list[str], images: np.ndarray) -> np.ndarray:
        return self.head(self.clip.image_embeddings(images, self.batch_size)).double().cpu().numpy()
