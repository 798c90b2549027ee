"""The config tree: YAML recipes, validation errors that name the key, overrides, resolution, the shipped recipes."""

from __future__ import annotations

import pytest
import yaml

from cluster.config import (
    RECIPES_DIR,
    ConfigError,
    RunConfig,
    apply_overrides,
    dump_config,
    load_config,
    merge_overrides,
    parse_set,
    validate,
)
from generators.diversevar import paper_scales
from generators.shapes.evaluate import DEFAULT_SAMPLING
from search.budget import rollout_nfe_per_slot
from search.run import plan_search

# (recipe data, a fragment the error must contain); every message names the key to fix
BAD_CONFIGS = [
    ({"searhc": {}}, "searhc: unknown key (known here: diversity, model, prompts, sampling, search, seeds, study"),
    ({"search": {"budegt_nfe": 84}}, "search.budegt_nfe: unknown key (known here: beam_width, budget_nfe"),
    ({"model": {"weights": "x"}}, "model.weights: unknown key"),
    ({"study": {"promtps": "shapes:heldout:1"}}, "study.promtps: unknown key (known here: budgets, diversity"),
    ({"search": 3}, "search: Input should be a valid dictionary"),
    ({"search": {"budget_nfe": "84"}}, "search.budget_nfe: Input should be a valid integer (got '84')"),
    ({"search": {"budget_nfe": -1}}, "search.budget_nfe: Input should be greater than 0 (got -1)"),
    ({"search": {"budget_nfe": 0}}, "search.budget_nfe: Input should be greater than 0"),
    ({"search": {"budget_nfe": 10**7}}, "search.budget_nfe: Input should be less than or equal to 1000000"),
    ({"search": {"budget_verifier_calls": -5}}, "search.budget_verifier_calls: Input should be greater than 0"),
    ({"search": {"budget_nfe": None}}, "search: a search needs budget_nfe or budget_verifier_calls"),
    ({"search": {"beam_width": 0}}, "search.beam_width: Input should be greater than 0"),
    ({"search": {"children": 1}}, "search.children: Input should be greater than or equal to 2"),
    ({"search": {"rollout_tau_scale": 0}}, "search.rollout_tau_scale: Input should be greater than 0"),
    ({"search": {"prune_scales": [6]}}, "prune scales must be a non-empty subset of 0..5, got [6]"),
    ({"search": {"method": "bam"}}, "search.method: Input should be 'base', 'random', 'gto', 'beam' or 'partial_beam'"),
    ({"search": {"selection": "last"}}, "search.selection: Input should be 'best_ever' or 'final'"),
    ({"search": {"budget_nfe": 30}}, "budget too small for beam search: 2 candidates per scale need 42 NFEs"),
    ({"search": {"method": "gto"}, "study": {"budgets": [21, 42]}}, "budget too small for GTO"),
    ({"verifier": "nope"}, "verifier: unknown verifier 'nope'; known: ["),
    ({"verifier_options": {"nope": {}}}, "verifier_options: unknown verifier 'nope'"),
    ({"model": {"world": "infinity"}}, "model: world 'infinity' needs transformer, vae, t5"),
    ({"model": {"world": "mars"}}, "model.world: Input should be 'shapes' or 'infinity'"),
    ({"model": {"transformer": "w.pth"}}, "model: transformer: only for world 'infinity'"),
    ({"model": {"preset": "infinity-3b"}}, "model.preset: unknown Infinity preset 'infinity-3b'; known: ["),
    ({"model": {"vae_preset": "vae-d99"}}, "model.vae_preset: unknown VAE preset 'vae-d99'"),
    ({"model": {"pixel_budget": "2M"}}, "model.pixel_budget: unknown pixel budget '2M'"),
    ({"model": {"aspect_ratio": 9.0}}, "model.aspect_ratio: unsupported aspect ratio"),
    ({"model": {"dtype": "int8"}}, "model.dtype: Input should be 'float32', 'bfloat16' or 'float16'"),
    ({"sampling": {"cfg": "high"}}, "sampling.cfg: Input should be a valid number (got 'high'), or"),
    ({"sampling": {"tau": 0.0}}, "sampling: tau must be > 0, got 0.0"),
    ({"sampling": {"tau": [1.0, 1.0]}}, "sampling: tau lists 2 values but the schedule has 6 scales"),
    ({"sampling": {"top_p": 1.5}}, "sampling.top_p: Input should be less than or equal to 1"),
    ({"sampling": {"top_k": -1}}, "sampling.top_k: Input should be greater than or equal to 0"),
    ({"diversity": {"enabled": "yes"}}, "diversity.enabled: Input should be a valid boolean (got 'yes')"),
    ({"diversity": {"b": -1.0}}, "diversity: exponents b and b2 must be >= 0"),
    ({"diversity": {"scales": [9]}}, "diversity: diversevar scales (9,) exceed the schedule's 6 scales"),
    ({"diversity": {"blocks": [7]}}, "diversity: diversevar blocks (7,) exceed the model's 6 blocks"),
    ({"diversity": {"placement": "model", "blocks": [0]}}, "diversity: blocks select blocks for placement='block'"),
    ({"seeds": [1, 1]}, "seeds: seeds must be a non-empty list of distinct integers"),
    ({"seeds": [-1]}, "seeds: seeds must be a non-empty list of distinct integers"),
    ({"seeds": []}, "seeds: seeds must be a non-empty list"),
    ({"seeds": 3}, "seeds: Input should be a valid list (got 3)"),
    ({"prompts": ["a circle", "  "]}, "prompts: prompt 1 must be non-empty"),
    ({"prompts": ["x" * 1001]}, "prompts: prompt 0 must be non-empty and at most 1000 characters"),
    ({"study": {"prompts": "shapes:heldout:0"}}, "study.prompts: unknown suite 'shapes:heldout:0'"),
    ({"study": {"prompts": "shapes:train:3"}}, "study.prompts: unknown suite"),
    ({"study": {"prompts": "no/such/prompts.txt"}}, "study.prompts: prompt file"),
    ({"study": {"methods": ["beam", "beam"]}}, "study.methods: must be a non-empty list without repeats"),
    ({"study": {"methods": []}}, "study.methods: must be a non-empty list without repeats"),
    ({"study": {"methods": ["bam"]}}, "study.methods.0: Input should be 'base'"),
    ({"study": {"budgets": [84, -84]}}, "study.budgets: NFE budgets must be in [1, 1000000]"),
    ({"study": {"verifiers": ["shapes-clip", "nope"]}}, "study.verifiers: unknown verifier 'nope'"),
    ({"study": {"diversity": [True, True]}}, "study.diversity: must be a non-empty list without repeats"),
]


@pytest.mark.parametrize(("data", "message"), BAD_CONFIGS)
def test_bad_config_is_an_error_naming_the_key(data: dict, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        validate(data, "recipe.yaml")
    assert str(err.value).startswith("recipe.yaml: ")
    assert message in str(err.value)


BAD_FILES = [
    ("search: {method: beam}\nsearch: {method: gto}\n", "duplicate key(s) ['search']"),
    ("search:\n  method: beam\n  method: gto\n", "duplicate key(s) ['method']"),
    ("search: {method: beam\n", "not valid YAML"),
    ("", "empty recipe"),
    ("# only a comment\n", "empty recipe"),
    ("- beam\n- gto\n", "a recipe is a mapping of keys"),
    ("beam\n", "a recipe is a mapping of keys"),
]


@pytest.mark.parametrize(("text", "message"), BAD_FILES)
def test_bad_recipe_file_is_an_error_naming_the_file(tmp_path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"bad\.yaml") as err:
        load_config(path)
    assert message in str(err.value)


def test_unreadable_and_missing_recipes(tmp_path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("verifier: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(path)
    with pytest.raises(
        ConfigError, match=r"no recipe 'nope': not a file, and cluster/recipes has only \[.*shapes-beam"
    ):
        load_config("nope")


def test_bad_overrides() -> None:
    config = RunConfig()
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        parse_set(["search.budget_nfe"])
    with pytest.raises(ConfigError, match="--set seeds is given twice"):
        parse_set(["seeds=[1]", "seeds=[2]"])
    with pytest.raises(ConfigError, match="not valid YAML"):
        parse_set(["seeds=[1"])
    with pytest.raises(ConfigError, match=r"command line: search\.budegt: unknown key"):
        apply_overrides(config, parse_set(["search.budegt=3"]))
    with pytest.raises(ConfigError, match=r"seeds is a value, not a section; cannot set seeds\.first"):
        apply_overrides(config, {"seeds.first": 1})
    with pytest.raises(ConfigError, match=r"search\.method is set twice"):
        merge_overrides({"search.method": "gto"}, parse_set(["search.method=beam"]))


def test_env_vars_expand_only_when_files_are_needed(tmp_path, monkeypatch) -> None:
    data = {"world": "infinity", "transformer": "${VS_T}", "vae": "${VS_DIR}/vae.pth", "t5": str(tmp_path)}
    options = {"clipscore": {"checkpoint": "${VS_CLIP}"}}
    config = validate({"model": data, "search": {"budget_nfe": 182}, "verifier_options": options}, "x")
    monkeypatch.delenv("VS_T", raising=False)
    with pytest.raises(ConfigError, match=r"model.transformer: environment variable VS_T is not set.*--transformer"):
        config.model.model_files()
    with pytest.raises(ConfigError, match=r"verifier_options\.clipscore\.checkpoint: environment variable VS_CLIP"):
        config.options_for("clipscore")
    (tmp_path / "t.pth").write_bytes(b"")
    monkeypatch.setenv("VS_T", str(tmp_path / "t.pth"))
    monkeypatch.setenv("VS_DIR", str(tmp_path))
    with pytest.raises(ConfigError, match=rf"model.vae: {tmp_path}/vae.pth does not exist; pass --vae PATH"):
        config.model.model_files()
    (tmp_path / "vae.pth").write_bytes(b"")
    files = config.model.model_files()
    assert files == {"transformer": tmp_path / "t.pth", "vae": tmp_path / "vae.pth", "t5": tmp_path}
    monkeypatch.setenv("VS_CLIP", "/weights/clip.safetensors")
    assert config.options_for("clipscore") == {"checkpoint": "/weights/clip.safetensors"}


def test_defaults_resolve_to_the_shapes_world_beam_search() -> None:
    config = load_config(None, {"prompts": ["a red circle", "two squares"], "seeds": [0, 5]})
    requests = config.resolve()
    pairs = [("a red circle", 0), ("a red circle", 5), ("two squares", 0), ("two squares", 5)]
    assert [(r.prompt, r.seed) for r in requests] == pairs
    r = requests[0]
    assert (r.config.method, r.config.budget.nfe, r.verifier) == ("beam", 84, "shapes-clip")
    assert r.sampling == DEFAULT_SAMPLING  # the shapes world's default, DiverseVAR off
    with pytest.raises(ConfigError, match="no prompts"):
        RunConfig().resolve()


def test_overrides_reach_the_requests() -> None:
    sets = [
        "search.method=random",
        "search.budget_nfe=24",
        "sampling.tau=[1, 1, 1, 1, 0.5, 0.5]",
        "sampling.top_k=1",
        "diversity.enabled=true",
        "diversity.b=1.5",
        "prompts=[a red circle]",
    ]
    (r,) = load_config("shapes-beam", parse_set(sets)).resolve()
    assert (r.config.method, r.config.budget.nfe) == ("random", 24)
    assert r.sampling.tau == (1.0, 1.0, 1.0, 1.0, 0.5, 0.5) and r.sampling.top_k == 1
    assert r.sampling.cfg == DEFAULT_SAMPLING.cfg  # untouched fields keep the model's default
    assert r.sampling.diversevar.b == 1.5 and r.sampling.diversevar.scales == paper_scales(6)


def test_resolved_config_round_trips(tmp_path) -> None:
    config = load_config("shapes-study", parse_set(["diversity.b=2.0", "seeds=[3, 4]"]))
    dump_config(config, tmp_path / "saved.yaml")
    text = (tmp_path / "saved.yaml").read_text()
    assert text.startswith("# config: cluster.config.RunConfig")
    saved = yaml.safe_load(text)
    d = DEFAULT_SAMPLING
    assert saved["sampling"] == {"cfg": list(d.cfg), "tau": list(d.tau), "top_k": d.top_k, "top_p": d.top_p}
    assert saved["diversity"]["scales"] == list(paper_scales(6))
    assert saved["study"]["verifiers"] == ["shapes-clip"]  # an axis left out holds the run's value
    reloaded = load_config(tmp_path / "saved.yaml")
    assert reloaded == config.resolved()
    assert reloaded.resolved() == reloaded


RECIPES = sorted(RECIPES_DIR.glob("*.yaml"))


def test_recipes_exist() -> None:
    names = {p.stem for p in RECIPES}
    paper = {"infinity-2b-beam", "infinity-2b-random", "infinity-2b-gto"}
    assert {"shapes-beam", "shapes-study", "infinity-2b-diversevar-on", "infinity-2b-diversevar-off"} | paper <= names


@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_every_recipe_loads_and_resolves(path) -> None:
    lines = path.read_text().splitlines()
    assert lines[0].startswith("# config: cluster.config.RunConfig") and len(lines) <= 15
    config = load_config(path, None if yaml.safe_load(path.read_text()).get("prompts") else {"prompts": ["a corgi"]})
    if config.study is None:
        assert config.resolve()
    for method, budget in config.method_budgets():
        assert plan_search(config.search.to_search_config(method, budget), config.model.num_scales())


@pytest.mark.parametrize("method", ["beam", "random", "gto"])
def test_infinity_2b_recipes_are_the_papers_settings(method: str) -> None:
    config = load_config(f"infinity-2b-{method}")
    assert (config.model.world, config.model.preset, config.verifier) == ("infinity", "infinity-2b", "imagereward")
    plan = plan_search(config.search.to_search_config(), config.model.num_scales())
    assert config.model.num_scales() == 13 and plan["nfe"] == 1365
    if method == "beam":
        assert plan["candidates_per_scale"] == 15 and plan["verifier_calls"] == 195
    if method == "random":
        assert plan["samples"] == 1365 // 13
    if method == "gto":
        assert plan["children"] * rollout_nfe_per_slot(13) == 1365


def test_diversevar_recipes_differ_only_in_diversevar() -> None:
    on, off = (load_config(f"infinity-2b-diversevar-{s}", {"prompts": ["a corgi"]}) for s in ("on", "off"))
    assert on.model_dump(exclude={"diversity"}) == off.model_dump(exclude={"diversity"})
    assert on.resolve()[0].sampling.diversevar.scales == (3, 5)  # the paper's "scales 4 and 6", 1-indexed, on 13 scales
    assert off.resolve()[0].sampling.diversevar is None
