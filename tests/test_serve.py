"""The Serve app over real HTTP on 127.0.0.1, searching the shapes world.

One local Ray instance and one Serve application (small limits, a token) for the module.
The tests run in file order: the last one checks the server still answers after all the
errors and the overload before it.
"""

from __future__ import annotations

import base64
import io
import json
import math
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from PIL import Image
from serve_helpers import ARGS, AUTH, TOKEN, get, post, serving, wait_for
from small_study import make_study

from cluster.serve.studies import study_view
from cluster.study_store import read_table


@pytest.fixture(scope="module")
def studies_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The server's studies_dir, holding one small study."""
    root = tmp_path_factory.mktemp("studies")
    make_study(root / "small")
    return root


@pytest.fixture(scope="module")
def url(studies_root: Path) -> Iterator[str]:
    with serving(ARGS.model_copy(update={"studies_dir": str(studies_root)})) as base:
        yield base


def read_events(response: requests.Response) -> list[dict]:
    """Parse an SSE stream into {"id", "event", "data"} dicts (comments skipped)."""
    events, event = [], {}
    for line in response.iter_lines(decode_unicode=True):
        if not line:
            if event:
                events.append(event)
            event = {}
        elif not line.startswith(":"):
            key, _, value = line.partition(": ")
            event[key] = json.loads(value) if key == "data" else int(value) if key == "id" else value
    return events


def decode_png(b64: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(b64)))
    image.load()
    return image


def test_healthz_needs_no_token(url: str) -> None:
    r = requests.get(f"{url}/healthz", timeout=10)
    assert r.status_code == 200 and r.json()["status"] == "ok"


def test_models_lists_the_model_verifiers_and_limits(url: str) -> None:
    models = get(url, "/v1/models").json()
    assert models["num_scales"] == 6  # the shapes world's schedule
    assert {"name": "shapes-clip", "is_judge": False} in models["verifiers"]
    assert models["defaults"]["verifier"] == "shapes-clip" and "beam" in models["methods"]
    assert models["limits"]["max_prompts"] == ARGS.max_prompts and "token" not in models["limits"]


def test_small_search_waits_and_returns_a_png(url: str) -> None:
    t0 = time.perf_counter()
    r = post(url, {"prompts": ["a red circle"], "method": "random", "budget": 12, "wait": True})
    latency = time.perf_counter() - t0
    assert r.status_code == 200, r.text
    job = r.json()
    assert job["status"] == "succeeded" and job["request"]["verifier"] == "shapes-clip"
    (result,) = job["results"]
    image = decode_png(result["image_png_base64"])
    assert image.mode == "RGB" and image.size == (64, 64)
    assert result["totals"]["nfe"] == job["plan"]["nfe"] <= 12 and job["plan"]["samples"] == 2
    assert result["trace_summary"]["scored"] == 2 and math.isfinite(result["score"])
    png = get(url, result["image_url"])
    assert png.headers["content-type"] == "image/png"
    assert png.content == base64.b64decode(result["image_png_base64"])
    print(f"wait=true random/12 NFEs round trip: {latency * 1000:.0f} ms")


def test_post_returns_a_job_id_to_poll(url: str) -> None:
    r = post(url, {"prompts": ["two squares", "a blue circle"], "method": "base", "seed": 5})
    assert r.status_code == 202 and r.headers["location"] == f"/v1/search/{r.json()['id']}"
    job = wait_for(url, r.json()["id"])
    assert job["status"] == "succeeded" and job["progress"]["prompts_done"] == 2
    assert [(res["prompt"], res["seed"]) for res in job["results"]] == [("two squares", 5), ("a blue circle", 6)]
    assert job["progress"]["nfe"] == 2 * job["plan"]["nfe"]
    brief = get(url, f"/v1/search/{job['id']}", params={"images": "false"}).json()
    assert all("image_png_base64" not in res for res in brief["results"])


def test_events_stream_progress_and_resume(url: str) -> None:
    budget = 42
    job_id = post(url, {"prompts": ["a red circle"], "method": "beam", "budget": budget}).json()["id"]
    with get(url, f"/v1/search/{job_id}/events", stream=True) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        events = read_events(r)
    assert [e["id"] for e in events] == list(range(1, len(events) + 1))
    assert events[-1]["event"] == "end" and events[-1]["data"]["status"] == "succeeded"
    progress = [e["data"] for e in events if e["event"] == "progress"]
    scores = [row for row in progress if row["event"] == "score"]
    prunes = [row for row in progress if row["event"] == "prune"]
    assert prunes and all(row["kept"] and row["dropped"] for row in prunes)
    assert all(row["budget_nfe"] == budget and {"path", "score", "branch_scale"} <= set(row) for row in scores)
    nfes = [row["nfe_so_far"] for row in progress]
    assert nfes == sorted(nfes) and nfes[-1] <= budget
    job = get(url, f"/v1/search/{job_id}").json()
    assert len(scores) == job["results"][0]["trace_summary"]["scored"]
    assert [e["data"]["index"] for e in events if e["event"] == "result"] == [0]
    with get(url, f"/v1/search/{job_id}/events", stream=True, headers={"Last-Event-ID": "3"}) as r:
        assert [e["id"] for e in read_events(r)] == [e["id"] for e in events[3:]]


TOO_BIG = {"prompts": ["a red circle " * 400]}  # over the 4096-byte body limit
BAD_REQUESTS = [
    # (name, body, extra headers, status, text in the error)
    ("no prompts", {"prompts": []}, {}, 422, "at least 1 item"),
    ("empty prompt", {"prompts": [""]}, {}, 422, "must not be empty"),
    ("blank prompt", {"prompts": ["   "]}, {}, 422, "must not be empty"),
    ("oversized prompt", {"prompts": ["x" * 1001]}, {}, 422, "limit is 1000"),
    ("too many prompts", {"prompts": ["a", "b", "c", "d"]}, {}, 422, "limit is 3"),
    ("negative budget", {"prompts": ["a"], "budget": -5}, {}, 422, "greater than or equal to 1"),
    ("huge budget", {"prompts": ["a"], "budget": 10**12}, {}, 422, "limit is 6000"),
    ("budget below one sample", {"prompts": ["a"], "method": "base", "budget": 3}, {}, 422, "budget"),
    ("string budget", {"prompts": ["a"], "budget": "12"}, {}, 422, "valid integer"),
    ("unknown method", {"prompts": ["a"], "method": "dfs"}, {}, 422, "'beam'"),
    ("unknown verifier", {"prompts": ["a"], "verifier": "imagereward"}, {}, 422, "unknown verifier"),
    ("unknown field", {"prompts": ["a"], "budgte": 12}, {}, 422, "Extra inputs"),
    ("bad diversity scale", {"prompts": ["a"], "diversity": {"scales": [9]}}, {}, 422, "exceed"),
    ("too big to wait", {"prompts": ["a"], "method": "random", "budget": 600, "wait": True}, {}, 422, "poll"),
    ("not an object", [1, 2], {}, 422, "valid dictionary"),
    ("NaN knob", b'{"prompts": ["a"], "diversity": {"b": NaN}}', {}, 422, "finite number"),
    ("malformed JSON", b'{"prompts": [', {}, 400, "malformed JSON"),
    ("invalid UTF-8", b'{"prompts": ["\xff\xfe"]}', {}, 400, "UTF-8"),
    ("body too large", TOO_BIG, {}, 413, "limit is 4096"),
    ("not JSON", b"prompts=a", {"Content-Type": "application/x-www-form-urlencoded"}, 415, "application/json"),
    ("missing token", {"prompts": ["a"]}, {"Authorization": ""}, 401, "token"),
    ("wrong token", {"prompts": ["a"]}, {"Authorization": "Bearer nope-nope-nope"}, 401, "token"),
    ("wrong scheme", {"prompts": ["a"]}, {"Authorization": f"Basic {TOKEN}"}, 401, "token"),
]


@pytest.mark.parametrize(
    ("body", "headers", "status", "text"), [c[1:] for c in BAD_REQUESTS], ids=[c[0] for c in BAD_REQUESTS]
)
def test_bad_requests_get_clear_errors(url: str, body, headers: dict, status: int, text: str) -> None:
    r = post(url, body, headers)
    assert r.status_code == status, r.text
    assert text in json.dumps(r.json()["detail"])
    if status == 401:
        assert r.headers["www-authenticate"] == "Bearer"


def test_body_limit_holds_without_content_length(url: str) -> None:
    chunks = (b'{"prompts": ["' + b"x" * 1000 for _ in range(5))  # chunked: no Content-Length to check
    r = requests.post(f"{url}/v1/search", data=chunks, headers={"Content-Type": "application/json", **AUTH})
    assert r.status_code == 413 and "over 4096 bytes" in r.json()["detail"]


def test_unknown_job_and_token_on_reads(url: str) -> None:
    assert get(url, "/v1/search/nope").status_code == 404
    assert requests.get(f"{url}/v1/models", timeout=10).status_code == 401


def test_overload_answers_429_and_jobs_cancel(url: str) -> None:
    long = {"prompts": ["three triangles"], "method": "random", "budget": 1800}  # 300 samples
    running = post(url, long)
    assert running.status_code == 202
    small = {"prompts": ["a red circle"], "method": "base", "wait": True}
    t0 = time.perf_counter()
    queued = post(url, small)  # behind the long one (one running job at a time): the wait gives up
    assert queued.status_code == 202 and queued.json()["status"] == "queued"
    assert time.perf_counter() - t0 >= ARGS.wait_timeout_s
    refused = post(url, long)
    assert refused.status_code == 429 and refused.headers["retry-after"] == str(ARGS.retry_after_s)
    for job_id in (queued.json()["id"], running.json()["id"]):
        r = requests.delete(f"{url}/v1/search/{job_id}", headers=AUTH, timeout=30)
        assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert get(url, f"/v1/search/{running.json()['id']}").json()["progress"]["nfe"] < 1800
    assert requests.get(f"{url}/healthz", timeout=10).json()["jobs_active"] == 0


def test_explorer_pages_need_no_token_and_fetch_nothing_from_outside(url: str) -> None:
    for page, marker in [("/", 'id="search-form"'), ("/studies", 'id="winners"')]:
        r = requests.get(f"{url}{page}", timeout=10)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html") and marker in r.text
        assets = [a for a in re.findall(r'(?:src|href)="([^"]+)"', r.text) if a.startswith("/static/")]
        assert len(assets) == 3  # the stylesheet, api.js and the page's script
        for text in [r.text, *(requests.get(f"{url}{a}", timeout=10).text for a in assets)]:
            assert set(re.findall(r"https?://[^\s\"')]+", text)) <= {"http://www.w3.org/2000/svg"}  # no CDN
    assert requests.get(f"{url}/static/%2e%2e/app.py", timeout=10).status_code == 404


def test_studies_api_reads_the_studies_dir(url: str, studies_root: Path) -> None:
    assert requests.get(f"{url}/v1/studies", timeout=10).status_code == 401
    (listed,) = get(url, "/v1/studies").json()["studies"]
    assert (listed["name"], listed["searches"]) == ("small", len(read_table(studies_root / "small", "searches")))
    study = get(url, "/v1/studies/small").json()
    assert study == json.loads(json.dumps(study_view(studies_root, "small")))
    cell = study["winners"][0]["cells"][0]
    png = get(url, cell["image_url"])
    assert png.headers["content-type"] == "image/png"
    assert png.content == (studies_root / "small" / "images" / f"{cell['row_id']}.png").read_bytes()
    for path, status, text in [
        ("/v1/studies/nope", 404, "no study named 'nope'"),
        ("/v1/studies/small/images/study.yaml", 404, "has no image"),
        ("/v1/studies/small/images/%2e%2e%2fstudy.yaml", 404, ""),
        ("/v1/studies/small?max_prompts=0", 422, "greater than or equal to 1"),
    ]:
        r = get(url, path)
        assert r.status_code == status and text in json.dumps(r.json()["detail"]), path


def test_still_serving_after_errors(url: str) -> None:
    assert requests.get(f"{url}/healthz", timeout=10).status_code == 200
    r = post(url, {"prompts": ["a green square"], "method": "base", "budget": 6, "wait": True})
    assert r.status_code == 200 and r.json()["status"] == "succeeded"
