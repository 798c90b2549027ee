"""The Serve app's parts without Ray: request checks, the job store, events and summaries."""

from __future__ import annotations

import base64
import json
from dataclasses import replace

import pytest

from cluster.serve.backend import ModelInfo, load_factory
from cluster.serve.http import sse_format
from cluster.serve.jobs import Job, JobStore
from cluster.serve.schema import BodyError, parse_body, to_requests
from cluster.serve.settings import ServeArgs
from cluster.serve.worker import trace_summary
from generators.diversevar import paper_scales
from generators.sampling import SamplingParams
from search.run import plan_search

INFO = ModelInfo(
    model="test", num_scales=6, depth=4, verifiers={"clip": False, "judge": True}, sampling=SamplingParams(),
    default_method="beam", default_budget=84, default_verifier="clip",
)  # fmt: skip
ARGS = ServeArgs(max_prompts=3, max_budget_nfe=5000, max_active_jobs=2, max_running_jobs=1, wait_max_nfe=100)


def requests_for(**body):
    return to_requests(parse_body(body), INFO, ARGS)


def error_locs(**body) -> list[str]:
    with pytest.raises(BodyError) as err:
        requests_for(**body)
    return [".".join(map(str, e["loc"])) for e in err.value.errors]


def test_defaults_come_from_the_served_model() -> None:
    requests, plan = requests_for(prompts=["a red circle", "two squares"], seed=7)
    assert [r.prompt for r in requests] == ["a red circle", "two squares"]
    assert [r.seed for r in requests] == [7, 8]
    assert all(r.config.method == "beam" and r.config.budget.nfe == 84 and r.verifier == "clip" for r in requests)
    assert plan == plan_search(requests[0].config, INFO.num_scales)
    assert requests[0].sampling == INFO.sampling


def test_diversity_knobs_reach_the_sampling_params() -> None:
    (request,), _ = requests_for(prompts=["a"], method="random", budget=12, diversity={"b": 0.8})
    assert request.sampling.diversevar.b == 0.8
    assert request.sampling.diversevar.scales == paper_scales(INFO.num_scales)
    (off,), _ = requests_for(prompts=["a"], method="random", budget=12, diversity={"enabled": False})
    assert off.sampling.diversevar is None


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"prompts": []}, "body.prompts"),
        ({"prompts": ["  "]}, "body.prompts.0"),
        ({"prompts": ["ok", "x" * 1001]}, "body.prompts.1"),
        ({"prompts": ["a"] * 4}, "body.prompts"),
        ({"prompts": ["a"], "budget": 0}, "body.budget"),
        ({"prompts": ["a"], "budget": 5001}, "body.budget"),
        ({"prompts": ["a"], "budget": 5}, "body.budget"),  # less than one sample (6 scales)
        ({"prompts": ["a"], "budget": "12"}, "body.budget"),  # strict: no string numbers
        ({"prompts": ["a"], "method": "dfs"}, "body.method"),
        ({"prompts": ["a"], "verifier": "imagereward"}, "body.verifier"),
        ({"prompts": ["a"], "seed": -1}, "body.seed"),
        ({"prompts": ["a"], "budgte": 12}, "body.budgte"),
        ({"prompts": ["a"], "method": "random", "beam_width": 2}, "body.beam_width"),
        ({"prompts": ["a"], "method": "gto", "children": 3}, "body.children"),
        ({"prompts": ["a"], "children": 1}, "body.children"),
        ({"prompts": ["a"], "method": "random", "prune_scales": [1]}, "body.prune_scales"),
        ({"prompts": ["a"], "prune_scales": [6]}, "body.prune_scales"),
        ({"prompts": ["a"], "prune_scales": []}, "body.prune_scales"),
        ({"prompts": ["a"], "method": "random", "rollout_tau_scale": 0.5}, "body.rollout_tau_scale"),
        ({"prompts": ["a"], "rollout_tau_scale": 0.0}, "body.rollout_tau_scale"),
        ({"prompts": ["a"], "rollout_tau_scale": 9.0}, "body.rollout_tau_scale"),
        ({"prompts": ["a"], "diversity": {"scales": [6]}}, "body.diversity"),
        ({"prompts": ["a"], "diversity": {"blocks": [4]}}, "body.diversity"),
        ({"prompts": ["a"], "diversity": {"b": -1.0}}, "body.diversity"),
        ({"prompts": ["a"], "diversity": {"b": float("nan")}}, "body.diversity.b"),
        ({"prompts": ["a", "b"], "method": "random", "budget": 60, "wait": True}, "body.wait"),
    ],
)
def test_bad_bodies_name_the_field(body: dict, loc: str) -> None:
    assert loc in error_locs(**body)


def test_beam_knobs_reach_the_search_config() -> None:
    body = {"prompts": ["a"], "budget": 84, "beam_width": 2, "children": 2, "prune_scales": [1, 3]}
    (request,), plan = to_requests(parse_body({**body, "rollout_tau_scale": 0.5}), INFO, ARGS)
    assert (request.config.beam_width, request.config.children, request.config.prune_scales) == (2, 2, (1, 3))
    assert request.config.rollout_tau_scale == 0.5
    assert plan["prune_scales"] == [1, 3] and plan["nfe"] <= 84


def test_a_backend_may_serve_fewer_methods() -> None:
    few = replace(INFO, methods=("base", "random"), default_method="random")
    with pytest.raises(BodyError, match="'beam' is not served"):
        to_requests(parse_body({"prompts": ["a"], "method": "beam"}), few, ARGS)
    (request,), _ = to_requests(parse_body({"prompts": ["a"], "budget": 12}), few, ARGS)
    assert request.config.method == "random"


def test_settings_must_be_consistent() -> None:
    with pytest.raises(ValueError, match="max_running_jobs"):
        ServeArgs(max_active_jobs=2, max_running_jobs=3)
    with pytest.raises(ValueError, match="max_active_jobs"):
        ServeArgs(max_active_jobs=10, max_jobs_kept=5)
    with pytest.raises(ValueError, match="Extra inputs"):
        ServeArgs(max_promts=3)
    assert "token" not in ServeArgs(token="secret-token").limits()


def test_backend_import_paths_are_checked() -> None:
    assert callable(load_factory("cluster.serve.backend:shapes_world"))
    for bad in ("cluster.serve.backend", "no.such.module:f", "cluster.serve.backend:nothing_here"):
        with pytest.raises(ValueError, match="backend"):
            load_factory(bad)


def make_job(max_events: int = 100, prompts: int = 2) -> Job:
    requests, plan = requests_for(prompts=["a"] * prompts, method="random", budget=12)
    return Job("j", requests, {"budget": 12}, plan, max_events)


def score_row(nfe: int) -> dict:
    return {"event": "score", "branch_scale": 0, "path": "0", "score": 0.5, "complete": True, "nfe_so_far": nfe}


def test_job_numbers_events_and_keeps_results_past_the_event_limit() -> None:
    job = make_job(max_events=3)
    job.set_status("running")
    for nfe in (6, 12, 18, 24):
        job.progress(0, score_row(nfe))
    job.add_result(0, {"index": 0, "totals": {"nfe": 24}}, b"png")
    assert [e.seq for e in job.events] == [4, 5, 6]  # the oldest dropped, numbering continues
    assert [e.kind for e in job.events_after(4)] == ["progress", "result"]
    job.set_status("succeeded")
    job.set_status("cancelled")  # a late cancel does not change a finished job
    state = job.describe()
    assert state["status"] == "succeeded" and job.events[-1].kind == "end"
    assert state["progress"]["nfe"] == 24 and state["progress"]["prompts_done"] == 1
    assert base64.b64decode(state["results"][0]["image_png_base64"]) == b"png"
    assert "image_png_base64" not in job.describe(with_images=False)["results"][0]


def test_sse_frames_are_json_lines() -> None:
    job = make_job()
    job.progress(1, score_row(6))
    frame = sse_format(job.events[0])
    head, kind, data, *_ = frame.split("\n")
    assert head == "id: 1" and kind == "event: progress" and frame.endswith("\n\n")
    assert json.loads(data.removeprefix("data: "))["index"] == 1


def test_store_evicts_finished_jobs_oldest_first_never_active_ones() -> None:
    store = JobStore(max_jobs=3, ttl_s=60)
    jobs = [make_job() for _ in range(3)]
    for i, job in enumerate(jobs):
        job.id = f"j{i}"
        store.add(job)
    with pytest.raises(RuntimeError, match="full"):
        store.add(make_job())  # all three still queued
    jobs[1].set_status("failed", "boom")
    jobs[2].set_status("succeeded")
    newcomer = make_job()
    newcomer.id = "new"
    store.add(newcomer)
    assert store.get("j1") is None and store.get("j2") is not None and store.get("j0") is not None
    assert store.num_active() == 2
    assert store.evict(now=jobs[2].finished + 61) == ["j2"]  # past the time to live


def test_trace_summary_counts_what_the_search_did() -> None:
    trace = [score_row(6), {**score_row(6), "complete": False}]
    trace.append({"event": "prune", "branch_scale": 2, "kept": ["0"], "dropped": ["1", "2"], "threshold": 0.4})
    summary = trace_summary(trace)
    assert summary["scored"] == 2 and summary["complete_scored"] == 1
    assert summary["prune_rounds"] == [{"scale": 2, "kept": 1, "dropped": 2, "threshold": 0.4}]
