"""The explorer pages in a real headless browser: Debian's Chromium driven by Playwright (`make test-browser`).

One local Ray + Serve app with a token (so the pages' fetch-with-bearer path is the one tested) and
one small study under its studies_dir. The tests run in file order on one page: the first enters
the token. Screenshots go to $VARSEARCH_SCREENSHOT_DIR (docs/ for the README) or a temp folder.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from small_study import make_study

from cluster.local_ray import LOCAL_RAY_ENV
from cluster.serve.settings import ServeArgs

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"  # Debian's package `chromium`; Playwright never downloads a browser here
CHROMIUM_FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]  # fmt: skip
TOKEN = "browser-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
BUDGET = 84  # beam search: 2 beams x 2 children per scale over the shapes world's 6 scales, ~2 s
SEARCH_TIMEOUT_MS = 120_000  # Ray on a busy machine can take far longer


@pytest.fixture(scope="module")
def studies_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("studies")
    prompts = ("a red circle", "two squares", "a blue triangle")
    make_study(root / "small", prompts, methods="[base, random, beam]", budgets="[42, 84]", seeds="[0]")
    return root


@pytest.fixture(scope="module")
def url(studies_root: Path) -> Iterator[str]:
    with pytest.MonkeyPatch.context() as mp:
        for key, value in LOCAL_RAY_ENV.items():
            mp.setenv(key, value)
        import ray
        from ray import serve

        from cluster.serve.app import build_app

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
        try:
            serve.start(http_options={"host": "127.0.0.1", "port": port})
            args = ServeArgs(token=TOKEN, studies_dir=str(studies_root))
            serve.run(build_app(args), name="explorer", route_prefix="/")
            yield f"http://127.0.0.1:{port}"
        finally:
            serve.shutdown()
            ray.shutdown()


@pytest.fixture(scope="module")
def page(url: str):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no {CHROMIUM}: `make test-browser` installs Debian's chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("no Playwright: `make test-browser` installs it (pip install -e '.[browser]')")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)  # a fresh profile each launch
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda err: errors.append(str(err)))
        page.goto(f"{url}/")
        yield page
        browser.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = os.environ.get("VARSEARCH_SCREENSHOT_DIR")
    return Path(out) if out else tmp_path_factory.mktemp("screenshots")


def api(url: str, path: str, body: dict | None = None) -> requests.Response:
    if body is None:
        return requests.get(f"{url}{path}", headers=AUTH, timeout=30)
    return requests.post(f"{url}{path}", data=json.dumps(body), headers={**AUTH, "Content-Type": "application/json"})


def test_the_page_asks_for_the_token_then_shows_the_served_defaults(page, url: str) -> None:
    page.wait_for_selector("#form-error:not([hidden])")
    assert "needs a bearer token" in page.inner_text("#form-error")
    page.fill("#token", TOKEN)
    page.press("#token", "Tab")  # a change event: the page reloads GET /v1/models with the token
    page.wait_for_selector("#method option", state="attached")
    models = api(url, "/v1/models").json()
    assert page.input_value("#method") == models["defaults"]["method"]
    assert page.input_value("#verifier") == models["defaults"]["verifier"]
    assert page.input_value("#budget") == str(models["defaults"]["budget"])
    assert page.locator("#method option").all_inner_texts() == models["methods"]
    assert page.is_hidden("#form-error")


@pytest.mark.parametrize(
    ("prompts", "method", "budget", "field"),
    [("a red circle", "beam", "10", "budget"), ("  ", "random", "12", "prompts")],
    ids=["budget too small for beam", "no prompt"],
)
def test_bad_input_shows_the_api_error_next_to_the_form(
    page, url: str, prompts: str, method: str, budget: str, field: str
) -> None:
    page.fill("#prompts", prompts)
    page.select_option("#method", method)
    page.fill("#budget", budget)
    page.click("#run")
    page.wait_for_selector("#form-error:not([hidden])")
    body = {"prompts": [p for p in [prompts.strip()] if p], "method": method, "budget": int(budget)}
    expected = api(url, "/v1/search", body)
    assert expected.status_code == 422
    shown = page.inner_text("#form-error")
    assert all(f"{e['loc'][1]}: {e['msg']}" in shown for e in expected.json()["detail"])
    assert page.get_attribute(f"#{field}", "aria-invalid") == "true"


def test_a_beam_search_runs_and_its_tree_and_images_appear(page, url: str, shots: Path) -> None:
    page.fill("#prompts", "a red circle")
    page.select_option("#method", "beam")
    page.fill("#budget", str(BUDGET))
    page.click("#run")
    page.wait_for_selector("#job-status.succeeded", timeout=SEARCH_TIMEOUT_MS)
    page.wait_for_selector(".final figure.chosen img")
    assert page.is_hidden("#form-error")
    job_id = page.inner_text("#job-id")
    job = api(url, f"/v1/search/{job_id}?images=false").json()
    (result,) = job["results"]
    summary = result["trace_summary"]
    rows = [e["data"] for e in read_events(url, job_id) if e["event"] == "progress" and e["data"]["event"] == "score"]
    # one card per scored candidate, the pruned ones greyed, one chosen, a line from each to its parent
    assert page.locator(".node").count() == summary["scored"] == len(rows)
    assert page.locator(".node.pruned").count() == sum(r["dropped"] for r in summary["prune_rounds"])
    assert page.locator(".node.kept").count() == sum(r["kept"] for r in summary["prune_rounds"])
    assert page.locator(".node.chosen").get_attribute("data-path") == result["path"]
    first_scale = min(r["branch_scale"] for r in rows)
    assert page.locator("svg.edges path").count() == sum(r["branch_scale"] > first_scale for r in rows)
    assert page.locator(".column").count() == len({r["branch_scale"] for r in rows})
    assert page.locator(".node.pruned .why").first.inner_text().startswith("pruned")
    assert all(page.locator(".node img").evaluate_all("imgs => imgs.map(i => i.naturalWidth > 0)"))
    # the chosen image at full size next to the best rejected complete candidates
    chosen_width = page.locator(".final figure.chosen img").evaluate("img => img.naturalWidth")
    assert chosen_width == result["image_shape"][1]
    assert page.locator(".final figure.rejected").count() == min(3, summary["complete_scored"] - 1)
    assert f"{result['totals']['nfe']} / {BUDGET} NFEs spent" in page.inner_text(".prompt .meter")
    page.screenshot(path=shots / "explorer.png", full_page=True)


def test_the_beam_knobs_follow_the_method_and_reach_the_api(page, url: str) -> None:
    page.select_option("#method", "random")
    assert all(page.is_disabled(f"#{i}") for i in ("beam-width", "children", "prune-scales", "rollout-tau-scale"))
    page.select_option("#method", "gto")
    assert page.is_enabled("#rollout-tau-scale") and page.is_disabled("#children")
    page.select_option("#method", "beam")
    knobs = {"#budget": "168", "#children": "3", "#prune-scales": "1, 2", "#rollout-tau-scale": "0.5"}
    for selector, value in knobs.items():  # 3 beams x 3 children at 2 pruning scales: 90 NFEs
        page.fill(selector, value)
    with page.expect_response(lambda r: r.url.endswith("/v1/search") and r.request.method == "POST") as answer:
        page.click("#run")
    body = answer.value.request.post_data_json
    assert (body["children"], body["prune_scales"], body["rollout_tau_scale"]) == (3, [1, 2], 0.5)
    assert answer.value.status == 202, answer.value.text()
    job_id = answer.value.json()["id"]
    page.wait_for_function(  # the page still shows the last test's finished job until it follows this one
        "id => document.getElementById('job-id').textContent === id", arg=job_id, timeout=SEARCH_TIMEOUT_MS
    )
    page.wait_for_selector("#job-status.succeeded", timeout=SEARCH_TIMEOUT_MS)
    job = api(url, f"/v1/search/{job_id}?images=false").json()
    rounds = job["results"][0]["trace_summary"]["prune_rounds"]
    assert [r["scale"] for r in rounds] == [1, 2]  # pruned at the scales typed, nowhere else
    for selector in ("#children", "#prune-scales", "#rollout-tau-scale"):
        page.fill(selector, "")
    page.fill("#budget", str(BUDGET))


def test_the_study_viewer_draws_the_plot_and_the_winners(page, url: str, shots: Path) -> None:
    page.goto(f"{url}/studies")  # the token is kept for the session
    page.wait_for_selector("#winners img")
    study = api(url, "/v1/studies/small").json()
    loaded = "n => [...document.querySelectorAll('#winners img')].filter(i => i.naturalWidth > 0).length === n"
    page.wait_for_function(loaded, arg=sum(cell is not None for w in study["winners"] for cell in w["cells"]))
    lines = {r["method"] for r in study["summary"]}
    panels = 1 + any(r["judged"] for r in study["summary"])  # one verifier, and the evaluator's accuracy
    assert page.locator(".plot").count() == panels
    assert page.locator(".plot polyline").count() == panels * len(lines)
    assert page.locator(".plot circle").count() == panels * len(study["summary"])
    assert page.locator("#summary tr").count() == 1 + len(study["summary"])
    assert page.locator("#winners tr").count() == 1 + len(study["winners"])
    assert page.locator(".studies a[aria-current='true']").inner_text().startswith("small")
    page.screenshot(path=shots / "explorer-studies.png", full_page=True)


def read_events(url: str, job_id: str) -> list[dict]:
    """The job's Server-Sent Events, replayed from the start (the job has ended)."""
    with requests.get(f"{url}/v1/search/{job_id}/events", headers=AUTH, stream=True, timeout=30) as r:
        events, event = [], {}
        for line in r.iter_lines(decode_unicode=True):
            if not line:
                if event:
                    events.append(event)
                event = {}
            elif not line.startswith(":"):
                key, _, value = line.partition(": ")
                event[key] = json.loads(value) if key == "data" else value
    return events
