"""Search algorithms on a tiny random generator with a deterministic fake verifier."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from generators.engine import InfinityEngine
from generators.loading import tiny_random_engine
from generators.sampling import SamplingParams
from generators.schedules import custom_schedule
from search.budget import Budget, BudgetError
from search.partial_beam import cost as partial_cost
from search.run import SearchConfig, plan_search, run_search

# 13 scales like Infinity-2B at 1024x1024, on tiny grids.
THIRTEEN = custom_schedule(
    [(1, 1), (1, 1), (2, 2), (2, 2), (2, 2), (3, 3), (3, 3), (3, 3), (4, 4), (4, 4), (4, 4), (4, 4), (4, 4)]
)
SAMPLING = SamplingParams(cfg=1.5, tau=1.0, top_k=0, top_p=0.0)


class RednessVerifier:
    """Deterministic fake: mean red minus mean blue of the image."""

    def __init__(self) -> None:
        self.calls = 0

    def score(self, prompts, images: np.ndarray) -> np.ndarray:
        self.calls += len(images)
        return images[..., 0].mean(axis=(1, 2)) - images[..., 2].mean(axis=(1, 2))


@pytest.fixture(scope="module")
def engine13() -> InfinityEngine:
    return tiny_random_engine(seed=1, schedule=THIRTEEN)


@pytest.fixture(scope="module")
def engine4() -> InfinityEngine:
    return tiny_random_engine(seed=1)


def search(engine, method: str, nfe: int | None = None, calls: int | None = None, seed: int = 0, **kw):
    config = SearchConfig(method=method, budget=Budget(nfe=nfe, verifier_calls=calls), **kw)
    verifier = RednessVerifier()
    return run_search(engine, verifier, "a red circle", seed, config, SAMPLING), verifier


def test_paper_nfe_accounting(engine13: InfinityEngine) -> None:
    beam, v = search(engine13, "beam", nfe=1365)
    assert beam.params["candidates_per_scale"] == 15
    assert beam.totals["nfe"] == 1365 and beam.totals["verifier_calls"] == 195 == v.calls
    random, _ = search(engine13, "random", nfe=1365)
    assert random.params["samples"] == 105 and random.totals["nfe"] == 1365 and random.totals["verifier_calls"] == 105
    base, _ = search(engine13, "base", nfe=13)
    assert base.totals["nfe"] == 13 and base.totals["verifier_calls"] == 1
    gto, _ = search(engine13, "gto", nfe=1365)
    assert gto.params["children"] == 15 and gto.totals["nfe"] == 1365 and gto.totals["verifier_calls"] == 195


def test_token_weighted_cost_is_recorded(engine13: InfinityEngine) -> None:
    result, _ = search(engine13, "random", nfe=26)
    assert result.totals["tokens"] == 2 * THIRTEEN.total_tokens


@pytest.mark.parametrize("method", ["random", "gto", "beam", "partial_beam"])
@pytest.mark.parametrize("nfe", [60, 97, 200])
def test_budget_is_never_exceeded(engine4: InfinityEngine, method: str, nfe: int) -> None:
    planned = plan_search(SearchConfig(method=method, budget=Budget(nfe=nfe)), 4)
    result, _ = search(engine4, method, nfe=nfe)
    assert result.totals["nfe"] == planned["nfe"] <= nfe
    assert result.totals["verifier_calls"] == planned["verifier_calls"]


def test_verifier_call_budget(engine4: InfinityEngine) -> None:
    result, verifier = search(engine4, "beam", calls=24)
    assert result.totals["verifier_calls"] == verifier.calls <= 24


@pytest.mark.parametrize(("method", "nfe"), [("random", 3), ("gto", 19), ("beam", 19), ("partial_beam", 5)])
def test_too_small_budgets_are_refused(engine4: InfinityEngine, method: str, nfe: int) -> None:
    with pytest.raises(BudgetError, match="budget too small"):
        search(engine4, method, nfe=nfe)


def test_bad_budgets_and_methods() -> None:
    with pytest.raises(BudgetError, match="positive integer"):
        Budget(nfe=-5)
    with pytest.raises(BudgetError, match="needs an NFE budget"):
        Budget()
    with pytest.raises(ValueError, match="unknown search method 'annealing'"):
        SearchConfig(method="annealing")


def test_beam_pruning_keeps_the_best_rollouts(engine4: InfinityEngine) -> None:
    result, _ = search(engine4, "beam", nfe=100)
    scores = [r for r in result.trace if r["event"] == "score"]
    prunes = [r for r in result.trace if r["event"] == "prune"]
    assert len(prunes) == 4
    for prune in prunes:
        round_scores = {r["path"]: r["score"] for r in scores if r["branch_scale"] == prune["branch_scale"]}
        ranked = sorted(round_scores, key=lambda p: -round_scores[p])
        assert sorted(prune["kept"]) == sorted(ranked[: len(prune["kept"])])
        assert min(round_scores[p] for p in prune["kept"]) >= max(round_scores[p] for p in prune["dropped"])
    # beams at the next scale descend from the kept prefixes
    for prev, nxt in itertools.pairwise(prunes):
        assert all(any(k.startswith(p + ".") for p in prev["kept"]) for k in nxt["kept"])
    best_ever = max(r["score"] for r in scores if r["complete"])
    assert result.score == best_ever


def test_same_seed_same_result_and_seeds_differ(engine4: InfinityEngine) -> None:
    a, _ = search(engine4, "beam", nfe=100, seed=3)
    b, _ = search(engine4, "beam", nfe=100, seed=3)
    c, _ = search(engine4, "beam", nfe=100, seed=4)
    assert a.path == b.path and a.score == b.score and np.array_equal(a.image, b.image)
    assert [r.get("score") for r in a.trace] == [r.get("score") for r in b.trace]
    assert [r.get("score") for r in a.trace] != [r.get("score") for r in c.trace]


class OneByOne:
    """The same engine, but every batch is stepped one candidate at a time."""

    def __init__(self, engine: InfinityEngine) -> None:
        self.engine, self.schedule = engine, engine.schedule

    def __getattr__(self, name):
        return getattr(self.engine, name)

    def advance(self, batch, to_scale=None):
        parts = [self.engine.advance(self.engine.select(batch, [i]), to_scale) for i in range(len(batch))]
        cost = parts[0][1]
        for _, c in parts[1:]:
            cost = cost + c
        return self.engine.concat([p for p, _ in parts]), cost


@pytest.mark.parametrize("method", ["gto", "beam", "partial_beam", "random"])
def test_stepping_together_equals_one_by_one(engine4: InfinityEngine, method: str) -> None:
    together, _ = search(engine4, method, nfe=100)
    config = SearchConfig(method=method, budget=Budget(nfe=100))
    alone = run_search(OneByOne(engine4), RednessVerifier(), "a red circle", 0, config, SAMPLING)
    assert together.path == alone.path and together.score == alone.score
    assert together.totals == alone.totals
    assert [r.get("score") for r in together.trace] == [r.get("score") for r in alone.trace]


def test_partial_beam_scores_previews_and_finals(engine4: InfinityEngine) -> None:
    result, _ = search(engine4, "partial_beam", nfe=40, prune_scales=(1, 2))
    kinds = {r["kind"] for r in result.trace if r["event"] == "score"}
    assert kinds == {"preview", "final"}
    p = result.params
    assert (result.totals["nfe"], result.totals["verifier_calls"]) == partial_cost(4, (1, 2), p["width"], p["children"])


def test_final_selection_rule(engine4: InfinityEngine) -> None:
    final, _ = search(engine4, "beam", nfe=100, selection="final")
    last_round = [r for r in final.trace if r["event"] == "score" and r["branch_scale"] == 3]
    assert final.score == max(r["score"] for r in last_round)


def test_trace_is_ready_for_parquet(engine4: InfinityEngine, tmp_path) -> None:
    import pandas as pd

    from search.context import flat_trace

    result, _ = search(engine4, "beam", nfe=100)
    pd.DataFrame(flat_trace(result.trace, prompt_id=0)).to_parquet(tmp_path / "t.parquet")
    back = pd.read_parquet(tmp_path / "t.parquet")
    assert len(back) == len(result.trace) and set(back["event"]) == {"score", "prune"}
    assert {"path", "score", "nfe_so_far", "tokens_so_far", "verifier_calls_so_far", "kept", "dropped"} <= set(back)


def test_beam_plan_uses_the_budget() -> None:
    def plan(per_scale: int) -> tuple[int, int]:
        p = plan_search(SearchConfig(method="beam", budget=Budget(nfe=per_scale * 91)), 13)
        return p["width"], p["children"]

    assert plan(15) == (3, 5)  # the paper's 1365 NFEs
    assert plan(8) == (2, 4)  # rather than 3 x 2 = 6 of the 8 candidates paid for
    assert plan(16) == (2, 8)
    assert plan(4) == (2, 2)
    assert plan(2) == (1, 3)  # one beam: the mid scales 1-6 prune instead, 58 NFEs a slot


def test_beam_prunes_the_mid_scales_when_the_budget_pays_every_scale_for_one_beam_only() -> None:
    def plan(nfe: int, **kw) -> dict:
        return plan_search(SearchConfig(method="beam", budget=Budget(nfe=nfe), **kw), 6)

    # 6 scales: every-scale pruning costs 21 NFEs a candidate slot, 42 NFEs pays 2 (one beam, 2 children);
    # the mid scales 1-3 cost 6 + 4 + 3 = 13 a slot, so 42 NFEs pays 3 candidates at each of them.
    small = plan(42)
    assert (small["prune_scales"], small["width"], small["children"], small["nfe"]) == ([1, 2, 3], 1, 3, 39)
    assert plan(84)["prune_scales"] == [0, 1, 2, 3, 4, 5]  # 4 candidates: 2 beams x 2 children
    assert plan(42, prune_scales=(0, 1, 2, 3, 4, 5))["prune_scales"] == [0, 1, 2, 3, 4, 5]  # given: kept
    assert plan(42, children=2, beam_width=1)["prune_scales"] == [0, 1, 2, 3, 4, 5]
    with pytest.raises(BudgetError, match="42 NFEs"):
        plan(41)  # too small for the paper's beam is still refused, not searched on fewer scales


def test_beam_prunes_only_at_its_pruning_scales(engine13: InfinityEngine) -> None:
    # Pruning after scales 0, 4 and 8 of 13: children branch at 0, 1 and 5, so each of 15 candidate
    # slots costs 13 + 12 + 8 = 33 NFEs and is scored 3 times.
    result, verifier = search(engine13, "beam", nfe=495, prune_scales=(8, 0, 4))
    assert result.params["prune_scales"] == [0, 4, 8] and result.params["candidates_per_scale"] == 15
    assert result.totals["nfe"] == 495 and result.totals["verifier_calls"] == 45 == verifier.calls
    prunes = [r for r in result.trace if r["event"] == "prune"]
    assert [r["branch_scale"] for r in prunes] == [0, 4, 8]
    assert all(r["scales_done"] == r["branch_scale"] + 1 for r in prunes)  # kept prefixes end at the pruning scale
    # each round's children descend from the previous round's kept beams, one path step deeper
    for prev, nxt in itertools.pairwise(prunes):
        assert all(
            any(k.startswith(p + ".") and k.count(".") == p.count(".") + 1 for p in prev["kept"]) for k in nxt["kept"]
        )
    assert result.score == max(r["score"] for r in result.trace if r["event"] == "score" and r["complete"])


def test_beam_pruning_at_every_scale_is_the_default(engine4: InfinityEngine) -> None:
    default, _ = search(engine4, "beam", nfe=100)
    explicit, _ = search(engine4, "beam", nfe=100, prune_scales=(0, 1, 2, 3))
    assert default.params == explicit.params and default.path == explicit.path
    assert np.array_equal(default.image, explicit.image)


@pytest.mark.parametrize("method", ["beam", "partial_beam"])
def test_children_per_beam_are_taken_as_given_or_refused(engine4: InfinityEngine, method: str) -> None:
    result, _ = search(engine4, method, nfe=200, beam_width=2, children=3)
    assert (result.params["width"], result.params["children"]) == (2, 3)
    assert result.totals["nfe"] == result.params["nfe"] <= 200
    with pytest.raises(BudgetError, match="2 beams x 40 children"):
        plan_search(SearchConfig(method=method, budget=Budget(nfe=200), beam_width=2, children=40), 4)
    with pytest.raises(BudgetError, match=r"subset of 0\.\.3"):
        plan_search(SearchConfig(method=method, budget=Budget(nfe=200), prune_scales=(4,)), 4)
    with pytest.raises(ValueError, match="children must be >= 2"):
        SearchConfig(method=method, children=1)


@pytest.mark.parametrize("method", ["beam", "gto"])
def test_cooler_rollouts_cost_the_same_and_change_what_is_scored(engine4: InfinityEngine, method: str) -> None:
    plain, _ = search(engine4, method, nfe=100)
    cool, _ = search(engine4, method, nfe=100, rollout_tau_scale=0.25)
    assert cool.totals == plain.totals and cool.params == plain.params
    rollout_scores = [[r["score"] for r in res.trace if r["event"] == "score"] for res in (plain, cool)]
    assert rollout_scores[0] != rollout_scores[1]
    with pytest.raises(ValueError, match=r"rollout_tau_scale must be in \(0, 4\]"):
        SearchConfig(method=method, rollout_tau_scale=0.0)


def test_batch_relative_verifiers_are_refused(engine4: InfinityEngine) -> None:
    from types import SimpleNamespace

    verifier = RednessVerifier()
    verifier.info = SimpleNamespace(name="ensemble", batch_relative=True)
    with pytest.raises(ValueError, match="relative to their batch"):
        run_search(engine4, verifier, "a red circle", 0, SearchConfig(method="random", budget=Budget(nfe=8)), SAMPLING)
