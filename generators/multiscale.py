"""Bits, codes and next-scale inputs across a scale schedule (Infinity's multi-scale residual).

Shared by decoding (the engine) and training, so both build transformer inputs identically:
scale si's bits become codes, upsampled onto the final latent grid and summed; the input of
scale si+1 is that sum resized (bilinearly, as upstream) to scale si+1's grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

from generators.bsq_vae import bits_to_codes, upsample_codes
from generators.schedules import ScaleSchedule


@dataclass(frozen=True)
class ScaleCodec:
    schedule: ScaleSchedule
    patchify: bool = False  # 8B: tokens are 2x2 pixel-unshuffled latents with 4x the bits

    def vae_hw(self, hw: tuple[int, int]) -> tuple[int, int]:
        """Token grid -> VAE latent grid (2x with spatial patchify)."""
        return (2 * hw[0], 2 * hw[1]) if self.patchify else hw

    @property
    def latent_hw(self) -> tuple[int, int]:
        return self.vae_hw(self.schedule.final_hw)

    def codes_on_latent(self, bits_BLd: Tensor, si: int) -> Tensor:
        """Bits of scale si [B, h*w, bits] -> codes on the final latent grid [B, d, H, W]."""
        h, w = self.schedule.scales[si]
        bits_Bhwd = bits_BLd.view(bits_BLd.shape[0], h, w, -1)
        if self.patchify:  # [B, h, w, 4d] -> [B, 2h, 2w, d]
            bits_Bhwd = F.pixel_shuffle(bits_Bhwd.permute(0, 3, 1, 2).float(), 2).permute(0, 2, 3, 1)
        codes = bits_to_codes(bits_Bhwd)
        if si == self.schedule.num_scales - 1:
            return codes
        return upsample_codes(codes, self.latent_hw)

    def next_input(self, summed_BdHW: Tensor, si: int) -> Tensor:
        """The input of scale si: summed codes resized to its grid and flattened, [B, h*w, bits]."""
        x = upsample_codes(summed_BdHW, self.vae_hw(self.schedule.scales[si]))
        if self.patchify:
            x = F.pixel_unshuffle(x, 2)  # [B, 4d, h, w]
        return x.flatten(2).transpose(1, 2)

    def teacher_forcing(self, bits: list[Tensor], summed_BdHW: Tensor) -> tuple[list[Tensor], Tensor]:
        """Inputs of scales 1..k-1 given bits of scales 0..k-1, and the summed codes of all k scales.

        `summed_BdHW` is the (zero) starting sum, which fixes batch size, device and dtype.
        """
        inputs = []
        for si, bits_BLd in enumerate(bits):
            summed_BdHW = summed_BdHW + self.codes_on_latent(bits_BLd, si)
            if si + 1 < len(bits):
                inputs.append(self.next_input(summed_BdHW, si + 1))
        return inputs, summed_BdHW
