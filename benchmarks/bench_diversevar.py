"""What DiverseVAR's hooks cost: decode time with the hooks on (documented defaults) / off.

The same batch as `varsearch shapes diversity` times (its first held-out prompts x samples, same
seeds and paths), decoded by the shipped shapes-world model, measured by
`generators.shapes.diversity_eval.overhead_ratio`: back-to-back pairs in alternating order,
median of the pairs' ratios. Headline: overhead_ratio (the issue's bar is <= 1.10).

Usage: python -m benchmarks.bench_diversevar [--json] [--repeats 7] [--samples 16] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, replace

import torch

from benchmarks.common import hardware, write_result
from cluster.diversity_report import OVERHEAD_PROMPTS, OVERHEAD_RATIO_MAX
from generators.diversevar import DiverseVARConfig
from generators.shapes import diversity_eval, evaluate, model, world

N_PER_CATEGORY = 20  # held-out prompts per category in `varsearch shapes diversity` (its default)


def bench(repeats: int, samples: int, device: str = "cpu") -> dict:
    engine = model.load_engine(device=device)
    config = DiverseVARConfig.for_schedule(engine.schedule.num_scales)
    plain = evaluate.DEFAULT_SAMPLING
    prompts = [p for _, p in world.eval_prompts(N_PER_CATEGORY)][:OVERHEAD_PROMPTS]
    batch = [p for p in prompts for _ in range(samples)]
    timed = diversity_eval.overhead_ratio(engine, batch, plain, replace(plain, diversevar=config), repeats)
    return {
        **timed,
        f"overhead_le_{OVERHEAD_RATIO_MAX}": timed["overhead_ratio"] <= OVERHEAD_RATIO_MAX,
        "prompts": prompts,
        "samples_per_prompt": samples,
        "diversevar_config": asdict(config),
        "sampling": repr(plain),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--repeats", type=int, default=7, help="timed (plain, hooked) pairs")
    parser.add_argument("--samples", type=int, default=16, help="samples per prompt in the timed batch")
    parser.add_argument("--device", default="cpu")
    # One thread by default: with two on shared cores single decodes swung from 1.5 s to 47 s, hooked
    # and plain alike, and the ratio from 1.05 to 1.51 between runs; with one it stayed at 0.98.
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    result = {
        "benchmark": "bench_diversevar",
        "hardware": hardware(),  # torch_threads records the setting used
        **bench(args.repeats, args.samples, args.device),
    }
    path = write_result("bench_diversevar", result)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"overhead_ratio {result['overhead_ratio']:.3f} (decode {result['decode_s_hooked']:.2f} s hooked vs "
            f"{result['decode_s_plain']:.2f} s plain, batch {result['batch']}) -> {path}"
        )


if __name__ == "__main__":
    main()
