"""Bad input that docs/bad-input.md lists and no other test file checks, and the check that keeps
that table honest (every test it names exists). Each case must end in a clear error, and the
service must keep serving; none may crash with a traceback from deep inside a library."""

from __future__ import annotations

import ast
import asyncio
import re
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import requests
import torch
from safetensors.torch import save_file
from serve_helpers import ARGS, get, post, serving, wait_for
from typer.testing import CliRunner

from actors.batching import BatchingConfig
from actors.verifier_replica import VerifierReplica
from cluster.cli import app
from cluster.config import ConfigError, load_config
from cluster.verifiers import register_shapes_verifiers
from generators.checkpoint import CheckpointError
from generators.loading import load_infinity, random_infinity
from generators.shapes import model
from search.request import SearchRequest
from verifiers.base import Verifier
from verifiers.registry import load_verifier

TESTS = Path(__file__).resolve().parent
TABLE = TESTS.parent / "docs" / "bad-input.md"
WIDE = {"COLUMNS": "400"}  # error boxes on one line, so messages can be matched
LONG = "a red circle " * 100  # 1300 characters: over the 1000-character prompt limit


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Broken inputs on disk: prompt files, a shapes-world weights folder with a truncated file."""
    root = tmp_path_factory.mktemp("bad")
    made = {name: root / f"{name}.txt" for name in ("latin1", "long_line", "blank")}
    made["latin1"].write_bytes("a red circle\ncaf\xe9 au lait\n".encode("latin-1"))  # not UTF-8
    made["long_line"].write_text(f"a red circle\n{LONG}\n")
    made["blank"].write_text("\n  \n")
    weights = made["weights"] = root / "weights"
    weights.mkdir()
    for name in (model.MANIFEST, model.TEXT_FILE, model.INFINITY_FILE):
        shutil.copy(model.WEIGHTS_DIR / name, weights / name)
    data = (weights / model.INFINITY_FILE).read_bytes()
    (weights / model.INFINITY_FILE).write_bytes(data[: len(data) // 2])  # an interrupted download
    return made


# --- the command line: exit status 2 and a message naming what to fix -------------------------

RUN, STUDY = ["run", "--out", "{out}"], ["study", "shapes-beam", "--out", "{out}"]
CLI_CASES = [
    # (id, arguments with {file} placeholders, text in the error)
    ("negative budget", [*RUN, "--budget", "-5"], "'--budget': Input should be greater than or equal to 1"),
    ("huge budget", [*RUN, "--budget", "2000000"], "'--budget': Input should be less than or equal to 1000000"),
    ("unknown method", [*RUN, "--method", "dfs"], "search.method: Input should be 'base'"),
    ("unknown verifier", [*RUN, "--set", "verifier=nope"], "unknown verifier 'nope'; known: ["),
    ("empty prompt", [*RUN, "--prompt", ""], "prompts must not be empty"),
    ("oversized prompt", [*RUN, "--prompt", LONG], "at most 1000 characters"),
    ("prompt file not UTF-8", [*RUN, "--prompt-file", "{latin1}"], "cannot read prompt file"),
    ("--set without =", [*RUN, "--set", "seeds"], "expected KEY=VALUE"),
    ("unknown backend", [*RUN, "--backend", "spark"], "unknown backend 'spark'; choose ray or local"),
    ("study prompts not UTF-8", [*STUDY, "--prompts", "{latin1}"], "cannot read prompt file"),
    ("study prompt too long", [*STUDY, "--prompts", "{long_line}"], "line 2: the prompt is over 1000 characters"),
    ("study prompt file blank", [*STUDY, "--prompts", "{blank}"], "holds no prompts"),
    ("part size 0", [*STUDY, "--part-size", "0"], "'--part-size': Input should be greater than or equal to 1"),
    ("short serve token", ["serve", "--token", "short"], "token must be at least 8 characters"),
    ("submit env without =", ["submit", "--env", "NOEQUALS", "--", "run"], "--env takes KEY=VALUE"),
    ("unknown train stage", ["shapes", "train", "--stage", "gan"], "unknown stage 'gan'"),
    ("unknown device", ["shapes", "evaluate", "--device", "quantum"], "unknown device 'quantum'"),
    ("beam prune scale not a number", ["shapes", "curve", "--beam-prune-scales", "1,x"], "invalid literal for int()"),
    ("beam prune scale too big", ["shapes", "curve", "--beam-prune-scales", "7"], "non-empty subset of 0..5, got [7]"),
    ("unknown curve verifier", ["shapes", "curve", "--verifier", "clipscore"], "unknown verifier 'clipscore'"),
    (
        "official weights, no T5 folder",
        ["run", "--prompt", "a cat", *("--transformer", "{latin1}", "--vae", "{latin1}", "--t5", "{out}/t5")],
        "T5 directory not found",
    ),
    ("truncated weights", ["shapes", "grid", "--weights-dir", "{weights}", "--out", "{out}.png"], "not a readable"),
]


@pytest.mark.parametrize(("args", "message"), [c[1:] for c in CLI_CASES], ids=[c[0] for c in CLI_CASES])
def test_cli_refuses_bad_input_with_exit_status_2(files: dict[str, Path], tmp_path: Path, args, message) -> None:
    result = CliRunner().invoke(app, [a.format(out=tmp_path / "out", **files) for a in args], env=WIDE)
    assert result.exit_code == 2, (result.output, result.exception)
    assert message in " ".join(result.output.split()), result.output


def test_bad_prompt_files_are_refused_when_the_config_loads(files: dict[str, Path]) -> None:
    """Before any backend or cluster starts: a study must not fail halfway on its prompt suite."""
    for name, message in [("latin1", "cannot read prompt file"), ("long_line", "line 2"), ("blank", "no prompts")]:
        with pytest.raises(ConfigError, match=rf"study\.prompts: .*{message}"):
            load_config("shapes-beam", {"study.prompts": str(files[name])})


# --- the Python API ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"prompt": ""}, "non-empty string"),
        ({"prompt": "   "}, "non-empty string"),
        ({"prompt": "x" * 1001}, "the limit is 1000"),
        ({"prompt": b"a red circle"}, "non-empty string"),
        ({"prompt": "a", "seed": -1}, r"seed must be an integer in \[0, 2\*\*63\)"),
        ({"prompt": "a", "seed": 2**63}, "seed must be an integer"),
        ({"prompt": "a", "verifier": ""}, "registered verifier name"),
    ],
)
def test_search_request_refuses_bad_fields(fields: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SearchRequest(**fields)


def test_broken_infinity_checkpoints_are_refused_naming_the_file(tmp_path: Path) -> None:
    state = random_infinity("infinity-tiny", seed=3).state_dict()
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "full.safetensors")
    data = (tmp_path / "full.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    (tmp_path / "stub.safetensors").write_bytes(data[:5])  # shorter than the header length
    torch.save(state, tmp_path / "full.pth")
    (tmp_path / "cut.pth").write_bytes((tmp_path / "full.pth").read_bytes()[:4096])
    torch.save([state["head.weight"]], tmp_path / "list.pth")
    torch.save({**state, "head.weight": torch.zeros(3, 3)}, tmp_path / "shape.pth")
    cases = [
        ("cut.safetensors", r"cut\.safetensors: not a readable safetensors file"),
        ("stub.safetensors", r"stub\.safetensors: not a readable safetensors file"),
        ("cut.pth", r"cut\.pth: not a readable torch checkpoint"),
        ("list.pth", r"list\.pth: expected a state dict, found list"),
        ("shape.pth", r"wrong shape keys \(1\): \['head\.weight: checkpoint \(3, 3\) vs model"),
    ]
    for name, message in cases:
        with pytest.raises(CheckpointError, match=message):
            load_infinity(tmp_path / name, "infinity-tiny")


def test_broken_shapes_weights_are_refused_naming_the_file(files: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=rf"{model.INFINITY_FILE}: not a readable safetensors file"):
        model.load_engine(files["weights"])
    (tmp_path / model.MANIFEST).write_text('{"vocab": [')
    with pytest.raises(CheckpointError, match="not a readable shapes-world manifest"):
        model.load_engine(tmp_path)


@pytest.fixture(scope="module")
def shapes_clip() -> Verifier:
    register_shapes_verifiers()
    return load_verifier("shapes-clip")


def test_shapes_clip_checks_images_and_resizes_odd_sizes(shapes_clip: Verifier) -> None:
    bad = [
        (np.zeros((1, 64, 64, 3), np.float32), "must be uint8"),
        (np.zeros((1, 64, 64), np.uint8), r"shape \(N, H, W, 3\)"),
        (np.zeros((1, 64, 64, 4), np.uint8), r"shape \(N, H, W, 3\)"),
        (np.zeros((2, 64, 64, 3), np.uint8), "2 images"),
    ]
    for images, message in bad:
        with pytest.raises(ValueError, match=message):
            shapes_clip.score(["a red circle"], images)
    for h, w in [(1, 1), (17, 31), (300, 200)]:  # any RGB size: resized and centre-cropped like the model's own
        scores = shapes_clip.score(["a red circle", "two squares"], np.full((2, h, w, 3), 128, np.uint8))
        assert scores.shape == (2,) and scores.dtype == np.float64 and np.isfinite(scores).all()


def test_a_bad_verifier_request_fails_alone(shapes_clip: Verifier) -> None:
    replica = VerifierReplica(lambda: shapes_clip, BatchingConfig(max_batch=64, max_wait_s=0.05))
    good = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)

    async def together() -> tuple[list, np.ndarray]:  # one event loop: the replica's scheduler lives in it
        calls = [
            replica.score(["a red circle", "two squares"], good),
            replica.score(["a red circle"], good[:1].astype(np.float32)),
            replica.score(["a red circle"], good[:1, :32]),  # another size: scored in its own batch
        ]
        answers = await asyncio.gather(*calls, return_exceptions=True)
        return answers, await replica.score(["two squares"], good[1:])

    (scores, error, other_size), again = asyncio.run(together())
    assert isinstance(error, ValueError) and "uint8" in str(error)
    np.testing.assert_allclose(scores, shapes_clip.score(["a red circle", "two squares"], good), atol=1e-6)
    assert other_size.shape == (1,)
    np.testing.assert_allclose(again, scores[1:], atol=1e-6)  # the replica keeps serving


# --- Serve: many identical requests at once ----------------------------------------------------


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with serving(ARGS) as base:
        yield base


def test_identical_concurrent_requests_get_200_202_or_429_and_the_service_keeps_serving(url: str) -> None:
    body = {"prompts": ["two red circles"], "method": "random", "budget": 60, "seed": 3, "wait": True}
    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(lambda _: post(url, body), range(12)))
    codes = [r.status_code for r in answers]
    assert set(codes) <= {200, 202, 429}, [r.text for r in answers]
    assert 429 in codes and (200 in codes or 202 in codes)
    assert all(r.headers["retry-after"] == str(ARGS.retry_after_s) for r in answers if r.status_code == 429)
    jobs = [r.json() if r.status_code == 200 else wait_for(url, r.json()["id"]) for r in answers if r.status_code < 300]
    assert all(job["status"] == "succeeded" for job in jobs)
    (result, *others) = [job["results"][0] for job in jobs]
    assert all(r["path"] == result["path"] and r["score"] == pytest.approx(result["score"]) for r in others)
    bad_resume = get(url, f"/v1/search/{jobs[0]['id']}/events", headers={"Last-Event-ID": "three"})
    assert bad_resume.status_code == 400 and "must be an event number" in bad_resume.json()["detail"]
    deadline = time.monotonic() + 30
    while requests.get(f"{url}/healthz", timeout=10).json()["jobs_active"]:
        assert time.monotonic() < deadline, "admitted jobs never finished"
        time.sleep(0.1)
    odd = post(url, {"prompts": ["🐱 ünïcødé \u0000 circle"], "method": "base", "wait": True})  # outside the grammar
    assert odd.status_code == 200 and odd.json()["status"] == "succeeded"


# --- the table ---------------------------------------------------------------------------------

NODE_ID = re.compile(r"`(tests/[\w/]+\.py)::(\w+)(?:\[([^\]]*)\])?`")  # file, test, optional parameter id


def test_the_bad_input_table_names_only_tests_that_exist() -> None:
    rows = [line for line in TABLE.read_text().splitlines() if line.startswith("| ") and "::" in line]
    assert len(rows) >= 30
    assert {line.split("|")[1].strip() for line in rows} == {"CLI", "Recipe", "Serve", "Python API"}
    tests: dict[str, set[str]] = {}
    strings: dict[str, set[str]] = {}
    for line in rows:
        named = NODE_ID.findall(line.split("|")[-2])
        assert named, f"a row without a test: {line}"
        for file, name, case in named:
            if file not in tests:
                tree = ast.parse((TESTS.parent / file).read_text())
                tests[file] = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
                strings[file] = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant)}
            assert name in tests[file], f"{file}::{name} (named in docs/bad-input.md) does not exist"
            assert not case or case in strings[file], f"{file}::{name} has no case id {case!r}"
