"""The POST /v1/search body and its conversion into `SearchRequest`s.

Two layers of checks: pydantic checks types and names (strict: "12" is not a number, unknown
fields are errors), then `to_requests` checks the values against the served model and the
server's limits, including what the budget buys (`plan_search`). Every failure is a
`BodyError` listing FastAPI-style errors, so clients see one error format (HTTP 422).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cluster.serve.backend import ModelInfo
from cluster.serve.settings import ServeArgs
from generators.diversevar import DiverseVARConfig
from search.budget import Budget, BudgetError, checked_scales
from search.request import SearchRequest
from search.run import Method, SearchConfig, plan_search


class BodyError(ValueError):
    """Invalid request values; `errors` is a list of {"loc", "msg", "type"} like FastAPI's 422."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors))
        self.errors = errors


class DiversityBody(BaseModel):
    """DiverseVAR: `enabled` turns it on; unset knobs keep DiverseVARConfig's defaults."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    enabled: bool = True
    a: float | None = None  # SSR multiplier
    b: float | None = None  # SSR exponent
    a2: float | None = None  # SAR multiplier
    b2: float | None = None  # SAR exponent
    scales: list[int] | None = None  # 0-based schedule indices; default: the paper's, moved to this schedule
    placement: Literal["block", "model"] | None = None
    blocks: list[int] | None = None
    rows: Literal["cond", "uncond", "both"] | None = None
    relative_strength: bool | None = None

    def to_config(self, num_scales: int, depth: int) -> DiverseVARConfig | None:
        if not self.enabled:
            return None
        knobs = self.model_dump(exclude={"enabled"}, exclude_none=True)
        config = DiverseVARConfig.for_schedule(num_scales, **knobs)
        config.check(num_scales, depth)
        return config


class SearchBody(BaseModel):
    """One search per prompt (prompt i uses seed + i); unset fields take the served model's defaults."""

    model_config = ConfigDict(extra="forbid", strict=True)

    prompts: list[str] = Field(min_length=1)
    method: Method | None = None
    budget: int | None = Field(None, ge=1)  # NFEs per prompt
    verifier: str | None = None
    seed: int = Field(0, ge=0, lt=2**62)
    beam_width: int | None = Field(None, ge=1, le=64)  # beam and partial_beam only
    children: int | None = Field(None, ge=2, le=64)  # beam and partial_beam: children per beam
    prune_scales: list[int] | None = Field(None, min_length=1, max_length=64)  # beam and partial_beam: 0-based
    rollout_tau_scale: float | None = Field(None, gt=0, le=4, allow_inf_nan=False)  # beam and gto: cooler rollouts
    diversity: DiversityBody | None = None
    wait: bool = False  # hold the POST until done (small requests only); else 202 and a job id


def parse_body(data: Any) -> SearchBody:
    try:
        return SearchBody.model_validate(data)
    except ValidationError as err:
        errors = err.errors(include_url=False, include_context=False, include_input=False)
        raise BodyError([{**e, "loc": ["body", *e["loc"]]} for e in errors]) from None


def to_requests(body: SearchBody, info: ModelInfo, args: ServeArgs) -> tuple[list[SearchRequest], dict[str, Any]]:
    """The searches the body asks for, and the plan that every prompt's search follows."""
    errors = []
    if len(body.prompts) > args.max_prompts:
        errors.append(_error("prompts", f"{len(body.prompts)} prompts; the limit is {args.max_prompts}"))
    for i, prompt in enumerate(body.prompts):
        if not prompt.strip():
            errors.append(_error(("prompts", i), "prompt must not be empty"))
        elif len(prompt) > args.max_prompt_chars:
            errors.append(_error(("prompts", i), f"{len(prompt)} characters; the limit is {args.max_prompt_chars}"))
    verifier = body.verifier or info.default_verifier
    if verifier not in info.verifiers:
        errors.append(_error("verifier", f"unknown verifier {verifier!r}; served: {sorted(info.verifiers)}"))
    budget = body.budget or info.default_budget
    if budget > args.max_budget_nfe:
        errors.append(_error("budget", f"{budget} NFEs per prompt; the limit is {args.max_budget_nfe}"))
    method = body.method or info.default_method
    if method not in info.methods:
        errors.append(_error("method", f"method {method!r} is not served; served: {list(info.methods)}"))
    overrides = {
        "beam_width": body.beam_width,
        "children": body.children,
        "prune_scales": None if body.prune_scales is None else tuple(body.prune_scales),
        "rollout_tau_scale": body.rollout_tau_scale,
    }
    for name, value in overrides.items():
        applies_to = ("beam", "gto") if name == "rollout_tau_scale" else ("beam", "partial_beam")
        if value is not None and method not in applies_to:
            errors.append(_error(name, f"{name} applies to {' and '.join(applies_to)}, not {method!r}"))
    if body.prune_scales is not None:
        try:
            checked_scales(body.prune_scales, info.num_scales, default=())
        except BudgetError as err:
            errors.append(_error("prune_scales", str(err)))
    config = SearchConfig(
        method=method, budget=Budget(nfe=budget), **{k: v for k, v in overrides.items() if v is not None}
    )
    try:
        plan = plan_search(config, info.num_scales)
    except ValueError as err:  # BudgetError: too small for one search of this method
        errors.append(_error("budget", str(err)))
    sampling = info.sampling
    if body.diversity is not None:
        try:
            sampling = replace(sampling, diversevar=body.diversity.to_config(info.num_scales, info.depth))
        except ValueError as err:
            errors.append(_error("diversity", str(err)))
    if not errors and body.wait and plan["nfe"] * len(body.prompts) > args.wait_max_nfe:
        total = plan["nfe"] * len(body.prompts)
        msg = f"{total} NFEs is too much to wait for (limit {args.wait_max_nfe}); omit wait and poll the job"
        errors.append(_error("wait", msg))
    if errors:
        raise BodyError(errors)
    requests = [SearchRequest(p, body.seed + i, config, sampling, verifier) for i, p in enumerate(body.prompts)]
    return requests, plan


def _error(loc: str | tuple, msg: str) -> dict[str, Any]:
    loc = (loc,) if isinstance(loc, str) else loc
    return {"loc": ["body", *loc], "msg": msg, "type": "value_error"}
