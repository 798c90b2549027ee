"""One config tree for a run or a study: YAML recipes set it, CLI flags override it, `resolve()` runs it.

A recipe (cluster/recipes/*.yaml) sets some fields of `RunConfig`; the rest keep their defaults.
`load_config` reads one: unknown or duplicate keys, wrong types and bad values are errors that
name the key path and the file. `apply_overrides` sets fields from the command line (`--set
search.budget_nfe=168`, or named flags). `resolve()` turns the config into `SearchRequest`s, and
`resolved()` fills every default that depends on the model (sampling, DiverseVAR scales) so that
`dump_config` saves exactly what ran next to every output.

Checkpoint paths and verifier options may hold `${ENV_VAR}`s. They are expanded, and the files
checked, only when a model or verifier is built (`model_files`, `options_for`), so a recipe
for weights you do not have still loads and validates.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cluster.verifiers import register_shapes_verifiers
from generators.bsq_vae import VAE_PRESETS
from generators.diversevar import DiverseVARConfig, paper_scales
from generators.infinity import INFINITY_CONFIGS
from generators.sampling import SamplingParams
from generators.schedules import PIXEL_BUDGETS, get_schedule, snap_h_div_w
from search.budget import Budget, BudgetError
from search.request import MAX_PROMPT_CHARS, SearchRequest
from search.run import Method, SearchConfig, plan_search
from verifiers.registry import list_verifiers

RECIPES_DIR = Path(__file__).resolve().parent / "recipes"
MAX_BUDGET = 1_000_000  # NFEs or verifier calls per search; far beyond any paper setting
_DIVERSEVAR = DiverseVARConfig()  # the knobs' defaults live in generators/diversevar.py only
_ENV_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
SHAPES_SUITE = re.compile(r"shapes:heldout:([1-9][0-9]*)")  # the shapes world's held-out prompts, N per category


class ConfigError(ValueError):
    """A recipe, a study spec or an override that cannot describe a run; the message names the key."""


class _Section(BaseModel):
    # strict: "84" is not a number and 1 is not a bool; YAML already gives typed values
    model_config = ConfigDict(extra="forbid", strict=True)


class ModelSection(_Section):
    """Which generator: the shipped shapes world, or an official Infinity checkpoint from local files."""

    world: Literal["shapes", "infinity"] = "shapes"
    preset: str = "infinity-2b"  # infinity: generators.infinity.INFINITY_CONFIGS
    vae_preset: str = "vae-d32"  # infinity: generators.bsq_vae.VAE_PRESETS
    transformer: str | None = None  # infinity: .pth file or sharded dir; ${ENV_VAR}s allowed
    vae: str | None = None  # infinity: VAE .pth
    t5: str | None = None  # infinity: local Flan-T5-XL directory
    aspect_ratio: float = Field(1.0, gt=0)  # infinity: image height / width, snapped to a template
    pixel_budget: str = "1M"  # infinity: 0.06M | 0.25M | 0.60M | 1M
    device: str = "cpu"  # the generator's; verifiers take theirs from verifier_options
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"  # infinity: block dtype (the shapes world: fp32)

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, v: str) -> str:
        return _one_of(v, INFINITY_CONFIGS, "Infinity preset")

    @field_validator("vae_preset")
    @classmethod
    def _known_vae(cls, v: str) -> str:
        return _one_of(v, VAE_PRESETS, "VAE preset")

    @field_validator("pixel_budget")
    @classmethod
    def _known_pixel_budget(cls, v: str) -> str:
        return _one_of(v, PIXEL_BUDGETS, "pixel budget")

    @field_validator("aspect_ratio")
    @classmethod
    def _templated_ratio(cls, v: float) -> float:
        snap_h_div_w(v)  # raises outside Infinity's templates
        return v

    @model_validator(mode="after")
    def _files_match_world(self) -> ModelSection:
        files = {"transformer": self.transformer, "vae": self.vae, "t5": self.t5}
        if self.world == "infinity":
            missing = [k for k, v in files.items() if not v]
            if missing:
                raise ValueError(f"world 'infinity' needs {', '.join(missing)} (local paths; --{missing[0]} PATH)")
        elif any(files.values()):
            given = [k for k, v in files.items() if v]
            raise ValueError(f"{', '.join(given)}: only for world 'infinity'; the shapes world ships its weights")
        return self

    def num_scales(self) -> int:
        if self.world == "shapes":
            from generators.shapes.model import SCHEDULE

            return SCHEDULE.num_scales
        return get_schedule(self.aspect_ratio, self.pixel_budget).num_scales

    def depth(self) -> int:
        if self.world == "shapes":
            from generators.shapes.model import INFINITY_CONFIG

            return INFINITY_CONFIG.depth
        return INFINITY_CONFIGS[self.preset].depth

    def default_sampling(self) -> SamplingParams:
        if self.world == "shapes":
            from generators.shapes.evaluate import DEFAULT_SAMPLING

            return DEFAULT_SAMPLING
        return SamplingParams()  # Infinity-2B's notebook settings

    def model_files(self) -> dict[str, Path]:
        """The checkpoint paths with ${ENV_VAR}s expanded; each must exist (infinity only)."""
        out = {}
        for name in ("transformer", "vae", "t5"):
            path = Path(expand_env(getattr(self, name), f"model.{name}", f"--{name} PATH"))
            if not path.exists():
                raise ConfigError(f"model.{name}: {path} does not exist; pass --{name} PATH or fix the recipe")
            out[name] = path
        return out


class SearchSection(_Section):
    """How each search spends its budget (search/run.py)."""

    method: Method = "beam"
    budget_nfe: int | None = Field(84, gt=0, le=MAX_BUDGET)  # transformer NFEs per search
    budget_verifier_calls: int | None = Field(None, gt=0, le=MAX_BUDGET)  # scored images per search
    beam_width: int = Field(3, gt=0)  # beam, partial_beam: w (the paper's 15 per scale split is not published)
    # beam, partial_beam: scales (0-based) whose children are scored and pruned; default: every
    # scale (beam), every scale but the first (partial_beam)
    prune_scales: list[int] | None = None
    children: int | None = Field(None, ge=2, le=1024)  # beam, partial_beam: per beam; default: what the budget pays
    rollout_tau_scale: float = Field(1.0, gt=0, le=4)  # beam, gto: rollouts sample at the temperatures times this
    selection: Literal["best_ever", "final"] = "best_ever"

    @model_validator(mode="after")
    def _some_budget(self) -> SearchSection:
        if self.budget_nfe is None and self.budget_verifier_calls is None:
            raise ValueError("a search needs budget_nfe or budget_verifier_calls")
        return self

    def to_search_config(self, method: str | None = None, budget_nfe: int | None = None) -> SearchConfig:
        prune = None if self.prune_scales is None else tuple(self.prune_scales)
        budget = Budget(nfe=budget_nfe or self.budget_nfe, verifier_calls=self.budget_verifier_calls)
        return SearchConfig(
            method=method or self.method,
            budget=budget,
            beam_width=self.beam_width,
            prune_scales=prune,
            children=self.children,
            rollout_tau_scale=self.rollout_tau_scale,
            selection=self.selection,
        )


class SamplingSection(_Section):
    """How logits become bits; None = the model's default (shapes: cfg 4, tau 1, top_k 0, top_p 0.97)."""

    cfg: float | list[float] | None = None  # one value, or one per scale
    tau: float | list[float] | None = None  # temperature, > 0
    top_k: int | None = Field(None, ge=0)  # 1 = greedy bits; 0 = off
    top_p: float | None = Field(None, ge=0, le=1)


class DiversitySection(_Section):
    """DiverseVAR (generators/diversevar.py, which documents every knob)."""

    enabled: bool = False
    a: float = _DIVERSEVAR.a  # SSR multiplier
    b: float = _DIVERSEVAR.b  # SSR exponent
    a2: float = _DIVERSEVAR.a2  # SAR multiplier
    b2: float = _DIVERSEVAR.b2  # SAR exponent
    scales: list[int] | None = None  # 0-based; None = the paper's "4 and 6" carried to the schedule
    placement: Literal["block", "model"] = _DIVERSEVAR.placement
    blocks: list[int] | None = None  # placement block; None = every block
    rows: Literal["cond", "uncond", "both"] = _DIVERSEVAR.rows
    relative_strength: bool = _DIVERSEVAR.relative_strength

    @model_validator(mode="after")
    def _valid_knobs(self) -> DiversitySection:
        self._config(self.scales or [0])  # the schedule is checked in RunConfig
        return self

    def _config(self, scales: list[int] | tuple[int, ...]) -> DiverseVARConfig:
        return DiverseVARConfig(**self.model_dump(exclude={"enabled", "scales"}), scales=tuple(scales))

    def to_diversevar(self, num_scales: int, depth: int) -> DiverseVARConfig:
        config = self._config(paper_scales(num_scales) if self.scales is None else self.scales)
        try:
            config.check(num_scales, depth)
        except ValueError as err:
            raise ValueError(f"diversity: {err}") from None
        return config


class StudySection(_Section):
    """The axes of a study; an axis left out takes the one value of the run config."""

    prompts: str | None = None  # a text file (one prompt a line) or shapes:heldout:N (N per category)
    methods: list[Method] | None = None  # default: [search.method]
    budgets: list[int] | None = None  # NFEs; default: [search.budget_nfe]. base always costs K
    verifiers: list[str] | None = None  # default: [verifier]
    diversity: list[bool] | None = None  # default: [diversity.enabled]

    @field_validator("prompts")
    @classmethod
    def _suite_or_file(cls, v: str | None) -> str | None:
        if v is None or SHAPES_SUITE.fullmatch(v):
            return v
        if v.startswith("shapes:"):
            raise ValueError(f"unknown suite {v!r}; the shapes world's is shapes:heldout:N (N prompts per category)")
        path = Path(v).expanduser().resolve()  # absolute, so a resumed study finds it from any folder
        if not path.is_file():
            raise ValueError(f"prompt file {path} does not exist (or use shapes:heldout:N)")
        read_prompt_file(path)  # refuse a bad file when the recipe loads, not after the cluster started
        return str(path)

    @field_validator("methods", "budgets", "verifiers", "diversity")
    @classmethod
    def _distinct(cls, v: list | None) -> list | None:
        if v is not None and (not v or len(set(v)) != len(v)):
            raise ValueError(f"must be a non-empty list without repeats, got {v}")
        return v

    @field_validator("budgets")
    @classmethod
    def _positive(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and not all(0 < b <= MAX_BUDGET for b in v):
            raise ValueError(f"NFE budgets must be in [1, {MAX_BUDGET}], got {v}")
        return v

    @field_validator("verifiers")
    @classmethod
    def _registered(cls, v: list[str] | None) -> list[str] | None:
        for name in v or []:
            _known_verifier(name)
        return v


class RunConfig(_Section):
    """Everything that decides what a run or a study computes."""

    model: ModelSection = Field(default_factory=ModelSection)
    search: SearchSection = Field(default_factory=SearchSection)
    sampling: SamplingSection = Field(default_factory=SamplingSection)
    diversity: DiversitySection = Field(default_factory=DiversitySection)
    verifier: str = "shapes-clip"  # a name from `varsearch verifiers`
    verifier_options: dict[str, dict[str, Any]] = Field(default_factory=dict)  # verifier name -> load options
    seeds: list[int] = Field(default_factory=lambda: [0])  # every prompt is searched once per seed
    prompts: list[str] = Field(default_factory=list)  # `run` only; a study's prompts are study.prompts
    study: StudySection | None = None

    @field_validator("verifier")
    @classmethod
    def _registered(cls, v: str) -> str:
        return _known_verifier(v)

    @field_validator("verifier_options")
    @classmethod
    def _options_for_known(cls, v: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for name in v:
            _known_verifier(name)
        return v

    @field_validator("seeds")
    @classmethod
    def _valid_seeds(cls, v: list[int]) -> list[int]:
        if not v or len(set(v)) != len(v) or not all(0 <= s < 2**63 for s in v):
            raise ValueError(f"seeds must be a non-empty list of distinct integers in [0, 2**63), got {v}")
        return v

    @field_validator("prompts")
    @classmethod
    def _valid_prompts(cls, v: list[str]) -> list[str]:
        for i, p in enumerate(v):
            if not p.strip() or len(p) > MAX_PROMPT_CHARS:
                raise ValueError(f"prompt {i} must be non-empty and at most {MAX_PROMPT_CHARS} characters")
        return v

    @model_validator(mode="after")
    def _budgets_buy_methods(self) -> RunConfig:
        """Every (method, budget) the config can run must be affordable: fail at load, not mid-study."""
        num_scales = self.model.num_scales()
        for method, budget in self.method_budgets():
            try:
                plan_search(self.search.to_search_config(method, budget), num_scales)
            except BudgetError as err:
                raise ValueError(f"{err} (raise search.budget_nfe or study.budgets)") from None
        self.diversity.to_diversevar(num_scales, self.model.depth())  # knobs checked even while off
        try:
            self.sampling_params(False).check_scales(num_scales)
        except ValueError as err:
            raise ValueError(f"sampling: {err}") from None
        return self

    def axes(self) -> dict[str, list]:
        """The study's axes, each left-out one holding the run config's single value."""
        study = self.study or StudySection()
        return {
            "methods": study.methods or [self.search.method],
            "budgets": study.budgets or [self.search.budget_nfe],  # [None]: verifier-call budget only
            "verifiers": study.verifiers or [self.verifier],
            "diversity": study.diversity or [self.diversity.enabled],
        }

    def method_budgets(self) -> list[tuple[str, int | None]]:
        """(method, NFE budget) pairs this config runs; base runs once, at its cost of K NFEs."""
        methods, budgets = self.axes()["methods"], self.axes()["budgets"]
        pairs = [(m, b) for m in methods if m != "base" for b in budgets]
        return ([("base", self.model.num_scales())] if "base" in methods else []) + pairs

    def sampling_params(self, diversity: bool) -> SamplingParams:
        """The model's default sampling with this config's overrides, DiverseVAR on or off."""
        given = {k: tuple(v) if isinstance(v, list) else v for k, v in self.sampling.model_dump().items()}
        params = replace(self.model.default_sampling(), **{k: v for k, v in given.items() if v is not None})
        if diversity:
            dv = self.diversity.to_diversevar(self.model.num_scales(), self.model.depth())
            params = replace(params, diversevar=dv)
        return params

    def resolve(self) -> list[SearchRequest]:
        """One request per (prompt, seed): what `varsearch run` executes."""
        if not self.prompts:
            raise ConfigError("no prompts: pass --prompt / --prompt-file or set prompts in the recipe")
        config = self.search.to_search_config()
        sampling = self.sampling_params(self.diversity.enabled)
        return [SearchRequest(p, s, config, sampling, self.verifier) for p in self.prompts for s in self.seeds]

    def resolved(self) -> RunConfig:
        """This config with the model-dependent defaults written out: what gets saved with results."""
        params = self.sampling_params(False)
        sampling = {k: list(v) if isinstance(v, tuple) else v for k, v in vars(params).items() if k != "diversevar"}
        scales = list(self.diversity.to_diversevar(self.model.num_scales(), self.model.depth()).scales)
        update = {"sampling": sampling, "diversity": {**self.diversity.model_dump(), "scales": scales}}
        if self.study is not None:
            axes = self.axes()
            axes["budgets"] = None if axes["budgets"] == [None] else axes["budgets"]
            update["study"] = {**self.study.model_dump(), **axes}
        return RunConfig.model_validate({**self.model_dump(), **update})

    def options_for(self, verifier: str) -> dict[str, Any]:
        """Load options of `verifier` with ${ENV_VAR}s expanded."""
        options = self.verifier_options.get(verifier, {})
        where = f"verifier_options.{verifier}"
        return {k: expand_env(v, f"{where}.{k}") if isinstance(v, str) else v for k, v in options.items()}


def read_prompt_file(path: str | Path) -> list[str]:
    """The prompts of a UTF-8 text file, one a line, blank lines skipped; a ValueError says what is wrong."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"cannot read prompt file {path}: {err}") from None
    for number, line in enumerate(lines, start=1):
        if len(line.strip()) > MAX_PROMPT_CHARS:
            raise ValueError(f"{path}, line {number}: the prompt is over {MAX_PROMPT_CHARS} characters")
    prompts = [line.strip() for line in lines if line.strip()]
    if not prompts:
        raise ValueError(f"{path} holds no prompts (one per line)")
    return prompts


def _one_of(value: str, known: Iterable[str], what: str) -> str:
    if value not in known:
        raise ValueError(f"unknown {what} {value!r}; known: {sorted(known)}")
    return value


def _known_verifier(name: str) -> str:
    register_shapes_verifiers()
    return _one_of(name, [info.name for info in list_verifiers()], "verifier")


def expand_env(value: str, where: str, flag: str | None = None) -> str:
    """Replace ${NAME} with the environment variable's value; an unset one is an error naming `where`."""

    def sub(match: re.Match) -> str:
        name = match.group(1)
        if name not in os.environ:
            hint = f" or pass {flag}" if flag else f" or override it (--set {where}=...)"
            raise ConfigError(f"{where}: environment variable {name} is not set; export {name}=...{hint}")
        return os.environ[name]

    return _ENV_VAR.sub(sub, value)


def find_recipe(name_or_path: str | Path) -> Path:
    """A YAML path, or the name of a recipe in cluster/recipes (with or without .yaml)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    for candidate in (RECIPES_DIR / path.name, RECIPES_DIR / f"{path.name}.yaml"):
        if candidate.is_file():
            return candidate
    known = sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))
    raise ConfigError(f"no recipe {str(name_or_path)!r}: not a file, and cluster/recipes has only {known}")


def load_config(path: str | Path | None = None, overrides: Mapping[str, Any] | None = None) -> RunConfig:
    """The config a recipe describes (the defaults if `path` is None), with `overrides` applied.

    overrides: {"search.budget_nfe": 168, ...}, e.g. from `parse_set` and named CLI flags.
    A relative study.prompts file in a recipe is taken relative to the recipe's folder.
    """
    data: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        path = find_recipe(path)
        source = str(path)
        data = _read_yaml(path)
        study = data.get("study")
        prompts = study.get("prompts") if isinstance(study, dict) else None
        if isinstance(prompts, str) and not prompts.startswith("shapes:"):
            study["prompts"] = str(path.parent / prompts)
    config = validate(data, source)
    return apply_overrides(config, overrides or {}) if overrides else config


def apply_overrides(config: RunConfig, overrides: Mapping[str, Any], source: str = "command line") -> RunConfig:
    """A new config with dotted keys set (`{"search.method": "gto"}`); revalidated as a whole."""
    data = config.model_dump()
    for key, value in overrides.items():
        *parents, leaf = key.split(".")
        node = data
        for i, part in enumerate(parents):
            if node.get(part) is None:
                node[part] = {}
            if not isinstance(node[part], dict):
                raise ConfigError(f"{source}: {'.'.join(parents[: i + 1])} is a value, not a section; cannot set {key}")
            node = node[part]
        node[leaf] = value
    return validate(data, source)


def merge_overrides(*sources: Mapping[str, Any]) -> dict[str, Any]:
    """One override dict from several (named flags, --set items); a key given twice is an error."""
    out: dict[str, Any] = {}
    for source in sources:
        for key, value in source.items():
            if key in out:
                raise ConfigError(f"{key} is set twice on the command line (by a named flag and by --set?)")
            out[key] = value
    return out


def parse_set(items: Iterable[str]) -> dict[str, Any]:
    """`--set key.path=value` items -> {key.path: value}; values are YAML (84, true, [0, 1], beam)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set search.budget_nfe=168")
        if key in out:
            raise ConfigError(f"--set {key} is given twice")
        try:
            out[key] = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError as err:
            raise ConfigError(f"--set {key}: value {text!r} is not valid YAML: {err}") from None
    return out


def validate(data: Any, source: str) -> RunConfig:
    """RunConfig from plain data; every problem is reported with its key path and `source`."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a config is a mapping of keys (model, search, ...), got {type(data).__name__}")
    try:
        return RunConfig.model_validate(data)
    except ValidationError as err:
        problems: dict[str, list[str]] = {}  # key path -> what is wrong (several for a union: "number, or list")
        for error in err.errors():
            where, message = _describe(error)
            problems.setdefault(where, []).append(message)
        text = "; ".join(f"{w}: {', or '.join(m)}" if w else ", or ".join(m) for w, m in problems.items())
        raise ConfigError(f"{source}: {text}") from None


def dump_config(config: RunConfig, path: Path) -> None:
    """Save the resolved config (YAML) next to a run's or a study's outputs."""
    text = yaml.safe_dump(config.resolved().model_dump(mode="json"), sort_keys=False)
    path.write_text(f"# config: cluster.config.RunConfig (resolved: every default written out)\n{text}")


def _describe(error: dict) -> tuple[str, str]:
    """One pydantic error as (key path a user can type, what is wrong)."""
    loc = [str(p) for p in error["loc"] if isinstance(p, int) or (p.isidentifier() and p not in _TYPE_NAMES)]
    where = ".".join(loc)  # empty for a check across sections; its message names the keys
    if error["type"] == "extra_forbidden":
        return where, f"unknown key (known here: {', '.join(_known_keys(error['loc'][:-1]))})"
    message = error["msg"].removeprefix("Value error, ")
    return where, message if error["type"] == "value_error" else f"{message} (got {error['input']!r})"


_TYPE_NAMES = {"int", "float", "str", "bool", "list", "dict", "none"}  # pydantic names union branches by type


def _known_keys(loc: tuple) -> list[str]:
    model: type[BaseModel] = RunConfig
    for part in loc:
        annotation = model.model_fields[part].annotation if isinstance(part, str) else None
        nested = [a for a in getattr(annotation, "__args__", (annotation,)) if isinstance(a, type)]
        models = [a for a in nested if issubclass(a, BaseModel)]
        if not models:
            return []
        model = models[0]
    return sorted(model.model_fields)


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML keeps the last of duplicate keys silently; a recipe with one is an error here."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        keys = [self.construct_object(k, deep=deep) for k, _ in node.value]
        duplicates = sorted({str(k) for k in keys if keys.count(k) > 1})
        if duplicates:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key(s) {duplicates}", node.start_mark)
        return super().construct_mapping(node, deep=deep)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read {path}: {err}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if data is None:
        raise ConfigError(f"{path}: empty recipe; a recipe sets at least one of {sorted(RunConfig.model_fields)}")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a recipe is a mapping of keys (model, search, ...), got {type(data).__name__}")
    return data
