"""Verifiers: scores of (prompt, image) pairs that search optimises and studies report.

Images cross every boundary as numpy uint8 RGB arrays (N, H, W, 3) and prompts as strings;
`score` returns float64 [N], higher is better. verifiers/ knows nothing of generators/.

    from verifiers import load_verifier
    v = load_verifier("clipscore", checkpoint="open_clip_model.safetensors")
    scores = v.score(prompts, images)
"""

from verifiers.base import Verifier, VerifierInfo
from verifiers.registry import list_verifiers, load_verifier, register

__all__ = ["Verifier", "VerifierInfo", "list_verifiers", "load_verifier", "register"]
