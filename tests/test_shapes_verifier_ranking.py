"""The verifier-ranking report: best-of-k, AUC and oracle on a pool with known verdicts and scores."""

import numpy as np
import pandas as pd
import pytest

from benchmarks.shapes_verifier_ranking import ranking_report


def test_ranking_report_reads_the_verifiers_first_choice_and_pairwise_order():
    pool = pd.DataFrame(
        {
            "prompt_id": [0, 0, 0, 0, 1, 1, 1, 1],
            "sample": [0, 1, 2, 3, 0, 1, 2, 3],
            "category": ["colors"] * 4 + ["position"] * 4,
            "prompt": ["a red circle"] * 4 + ["a circle left of a square"] * 4,
            "correct": [False, True, False, True, False, False, False, False],
        }
    )
    scores = np.array([0.9, 0.1, 0.2, 0.95, 0.3, 0.2, 0.1, 0.0])
    report = ranking_report(pool, scores, ks=(1, 2, 4))
    assert report["best_of_1"] == 0.0 and report["best_of_2"] == 0.0  # prompt 0's first two: 0.9 (wrong) wins
    assert report["best_of_4"] == 0.5 and report["best_of_max_per_category"] == {"colors": 1.0, "position": 0.0}
    assert report["auc"] == pytest.approx(0.5) and report["prompts_with_both"] == 1  # 0.95 beats both, 0.1 neither
    assert report["oracle"] == 0.5 and report["mean_accuracy"] == 0.25
