"""The typed parameters of the Prefect deployments `rarl/train` and `rarl/evaluate`, and their validation.

Two layers, both before any work starts:

* pydantic (these models): types and shapes. Prefect builds each deployment's parameter schema from them, so the
  server already rejects a misspelt field or a wrong type when a run is created (UI, CLI or API).
* `validate_against(project)`: what needs the project. Every stage named must be a stage of dvc.yaml; the overrides
  are applied to a copy of params.yaml exactly as `dvc exp run -S key=value` applies them (DVC's own Hydra-based
  code) and the result must load through rarl_core.config, so an unknown key or an impossible value fails with the
  key named, before DVC, MLflow or any model is touched.

Overrides are `{"sft.learning_rate": 0.001, "evaluate.prompts": ["reasoning"]}`: a params.yaml key in dotted form and
a JSON value. `set_param_args` turns them into the `-S` arguments DVC records in the experiment.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator

Scalar = Union[bool, int, float, str, None]
Value = Union[Scalar, list[Scalar], dict[str, Union[Scalar, list[Scalar], dict[str, Scalar]]]]

# Stages that call a remote service: retried with a delay. Training stages are never retried automatically (a retry
# would redo hours of work that a human should look at first); they resume from their checkpoint when re-run.
NETWORK_STAGES = ("judge",)
# Seconds a stage may run before it is stopped (its process group killed) and the run fails naming it. Generous on
# purpose: the real model on one GPU. Override per stage with `timeouts_s`.
DEFAULT_TIMEOUT_S = 2 * 3600.0
STAGE_TIMEOUTS_S = {"sft": 24 * 3600.0, "grpo": 24 * 3600.0, "evaluate": 12 * 3600.0, "judge": 6 * 3600.0,
                    "compare_grpo": 24 * 3600.0, "compare_control": 24 * 3600.0, "compare_eval_sft": 12 * 3600.0,
                    "compare_eval_grpo": 12 * 3600.0, "compare_eval_control": 12 * 3600.0}
# The comparison lives in a pipeline file of its own, so that `rarl run` (dvc repro) does not include it; its last
# stage, the analysis, reads every unit.
COMPARE_PIPELINE = "compare/dvc.yaml"
COMPARE_STAGE = f"{COMPARE_PIPELINE}:compare"

_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*$")
_EXP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


class ParametersError(ValueError):
    """The flow's parameters do not fit this project: the message names the parameter and what to do."""


class RunParameters(BaseModel):
    """What a pipeline run may change. Every field is optional: `{}` runs the pipeline on params.yaml as it is."""

    model_config = ConfigDict(extra="forbid")

    experiment: str | None = Field(
        None,
        description="Name of the DVC experiment (dvc exp show). Default: the Prefect flow-run name when the run has "
        "overrides. Letters, digits, '.', '_' and '-'.",
    )
    overrides: dict[str, Value] = Field(
        default_factory=dict,
        description="params.yaml values to change, by dotted key, e.g. {\"sft.learning_rate\": 0.001}. Applied like "
        "`dvc exp run -S key=value`: the run becomes a DVC experiment in its own temporary workspace.",
    )
    stages: list[str] | None = Field(
        None, description="Stages to run (dvc.yaml names: sft, grpo, ...), in pipeline order. Default: all."
    )
    force: bool = Field(False, description="Re-run the stages even when DVC finds them up to date.")
    isolated: bool | None = Field(
        None,
        description="Run as a DVC experiment in a temporary workspace (dvc exp run --temp). Default: only when "
        "there are overrides or an experiment name; otherwise the stages run in the project's workspace.",
    )
    network_retries: int = Field(2, ge=0, le=10, description="Retries of a failed network stage (judge).")
    retry_delay_s: float = Field(60.0, ge=0, description="Seconds between those retries.")
    timeouts_s: dict[str, float] = Field(
        default_factory=dict,
        description=f"Per-stage time limits in seconds, e.g. {{\"sft\": 3600}}. Defaults: {STAGE_TIMEOUTS_S}, "
        f"{DEFAULT_TIMEOUT_S:.0f} s for the others.",
    )

    @field_validator("experiment")
    @classmethod
    def _experiment_name(cls, value: str | None) -> str | None:
        if value is not None and not _EXP_NAME.match(value):
            raise ValueError(f"experiment {value!r}: use letters, digits, '.', '_' and '-' (a DVC experiment name)")
        return value

    @field_validator("overrides")
    @classmethod
    def _override_keys(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key, item in value.items():
            if not _KEY.match(key):
                raise ValueError(f"overrides: {key!r} is not a dotted params.yaml key such as 'sft.learning_rate'")
            _check_finite(key, item)
        return value

    @field_validator("timeouts_s")
    @classmethod
    def _positive(cls, value: dict[str, float]) -> dict[str, float]:
        for stage, seconds in value.items():
            if not seconds > 0:
                raise ValueError(f"timeouts_s.{stage} must be > 0 seconds")
        return value

    # -- what the flow does with them ------------------------------------------------------------------------------
    @property
    def is_isolated(self) -> bool:
        return self.isolated if self.isolated is not None else bool(self.overrides or self.experiment)

    def timeout_for(self, stage: str) -> float:
        base = stage_base(stage)
        return self.timeouts_s.get(base, STAGE_TIMEOUTS_S.get(base, DEFAULT_TIMEOUT_S))

    def all_overrides(self, project: Path) -> dict[str, Any]:
        """The overrides this run applies (a subclass adds its own)."""
        return dict(self.overrides)

    def report(self, cfg) -> tuple[str, str, str]:
        """What the run publishes: (Markdown file, HTML file, the stage whose MLflow run gets the screenshot)."""
        return cfg.paths.report, cfg.paths.report_html, "report"


class EvaluateParameters(RunParameters):
    """`rarl/evaluate`: score one more model (evaluation, judge and report only) beside the pipeline's own."""

    model_path: str = Field(
        description="The model to evaluate: a save_pretrained folder or a PEFT adapter folder, absolute or relative "
        "to the project root, on the machine that runs the flow."
    )
    model_name: str = Field("candidate", description="Its name in the report and in MLflow (eval: <name>).")
    stages: list[str] | None = Field(None, description="Default: evaluate, judge (when defined) and report.")

    @field_validator("model_name")
    @classmethod
    def _model_name(cls, value: str) -> str:
        if not value.isidentifier():
            raise ValueError(f"model_name {value!r} must be a simple name (letters, digits, _)")
        return value

    @property
    def is_isolated(self) -> bool:
        return True  # it always overrides evaluate.extra_models

    def model_dir(self, project: Path) -> Path:
        path = Path(self.model_path).expanduser()
        return path if path.is_absolute() else (project / path).resolve()

    def all_overrides(self, project: Path) -> dict[str, Any]:
        return {**self.overrides, f"evaluate.extra_models.{self.model_name}": str(self.model_dir(project))}


class CompareParameters(RunParameters):
    """`rarl/compare`: the comparison of params.yaml `compare:` (compare/dvc.yaml), with the data, augmentation and
    SFT warm-up it needs run first when they are out of date."""

    stages: None = Field(None, description="Not used: the comparison runs compare/dvc.yaml and what it depends on.")
    fan_out: bool = Field(
        False,
        description="Run each unit (a GRPO variant or the SFT control for one seed, an evaluation) as a flow run of "
        "the rarl/compare-unit deployment, so that the workers of its pool run a level's units at once (one per GPU "
        "or host, sharing a DVC remote and one MLflow server). Off: the units run one by one in this workspace.",
    )

    def report(self, cfg) -> tuple[str, str, str]:
        return str(Path(cfg.paths.compare) / "compare.md"), str(Path(cfg.paths.compare) / "compare.html"), "compare"


def stage_base(stage: str) -> str:
    """The name a stage's parameters use: grpo@rl -> grpo, compare/dvc.yaml:compare -> compare."""
    return stage.split("@")[0].rsplit(":", 1)[-1]


def _check_finite(key: str, value: Any) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"overrides: {key} = {value} is not a finite number")
    if isinstance(value, list):
        for item in value:
            _check_finite(key, item)
    if isinstance(value, dict):
        for item in value.values():
            _check_finite(key, item)


# ----------------------------------------------------------------------------------------------------------------
# Overrides as DVC applies them
# ----------------------------------------------------------------------------------------------------------------


def hydra_value(value: Any) -> str:
    """A JSON value in Hydra's override grammar (what `dvc exp run -S` parses). Strings are always quoted, so
    '1e-4' stays a string and 'null' is not None."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(value, list):
        return "[" + ", ".join(hydra_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {hydra_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot express {type(value).__name__} as a params.yaml value")


def _has_key(data: Any, dotted: str) -> bool:
    for part in dotted.split("."):
        if not isinstance(data, dict) or part not in data:
            return False
        data = data[part]
    return True


def set_param_args(overrides: dict[str, Any], params: dict) -> list[str]:
    """`key=value` for each override, `+key=value` for a key params.yaml does not have yet (Hydra's append)."""
    return [f"{'' if _has_key(params, key) else '+'}{key}={hydra_value(value)}" for key, value in overrides.items()]


def apply_overrides(params_file: Path, overrides: dict[str, Any], dest: Path) -> list[str]:
    """Write `dest`: params_file with the overrides applied by DVC's own `-S` code. Returns the `-S` arguments."""
    import yaml
    from dvc.exceptions import InvalidArgumentError
    from dvc.utils.hydra import apply_overrides as dvc_apply

    args = set_param_args(overrides, yaml.safe_load(params_file.read_text()) or {})
    shutil.copyfile(params_file, dest)
    if args:
        try:
            dvc_apply(dest, args)
        except InvalidArgumentError as err:
            cause = err.__cause__ or err
            raise ParametersError(f"overrides: DVC cannot apply {args}: {cause}") from None
    return args


# ----------------------------------------------------------------------------------------------------------------
# Validation against the project
# ----------------------------------------------------------------------------------------------------------------


def pipeline_stages(project: Path) -> list[str]:
    """The DVC stages of the project in run order (foreach stages expanded: grpo@rl, ...), dvc.yaml order on ties."""
    import networkx as nx
    from dvc.repo import Repo

    pipeline = (project / "dvc.yaml").resolve()
    with Repo(str(project)) as repo:
        stages = [s for s in repo.index.stages if Path(s.path).resolve() == pipeline]  # not sub-projects' dvc.yaml
        position = {id(stage): i for i, stage in enumerate(stages)}
        # DVC's edges point from a stage to what it depends on
        graph = repo.index.graph.subgraph(stages).reverse(copy=True)
        return [s.name for s in nx.lexicographical_topological_sort(graph, key=lambda s: position[id(s)])]


def compare_upstream(project: Path, order: list[str]) -> list[str]:
    """The root pipeline's stages that the comparison depends on (data, augmentation, SFT warm-up), in `order`."""
    import networkx as nx
    from dvc.repo import Repo

    pipeline = (project / COMPARE_PIPELINE).resolve()
    if not pipeline.is_file():
        raise ParametersError(f"{pipeline} not found: the comparison's pipeline file is part of the project")
    with Repo(str(project)) as repo:
        (stage,) = [s for s in repo.index.stages if Path(s.path).resolve() == pipeline and s.name == "compare"]
        upstream = {s.name for s in nx.descendants(repo.index.graph, stage)}  # edges point to what a stage needs
    return [s for s in order if s in upstream]


def compare_levels(project: Path, params_file: Path | None = None) -> list[list[str]]:
    """The comparison's units (compare/dvc.yaml's stages but the analysis) by level, as `compare/dvc.yaml:<unit>`
    addresses: a unit's level is the length of the longest chain of units it depends on, so the units of a level can
    run at once. With `params_file` (the params with a run's overrides applied) the units are those of that file's
    variants and seeds: the pipeline files are read in a scratch DVC repository beside it."""
    from dvc.repo import Repo

    with tempfile.TemporaryDirectory() as scratch:
        root = project
        if params_file is not None:
            root = Path(scratch)
            Repo.init(str(root), no_scm=True).close()
            shutil.copy2(params_file, root / "params.yaml")
            shutil.copy2(project / "dvc.yaml", root / "dvc.yaml")
            (root / COMPARE_PIPELINE).parent.mkdir(parents=True)
            shutil.copy2(project / COMPARE_PIPELINE, root / COMPARE_PIPELINE)
        pipeline = (root / COMPARE_PIPELINE).resolve()
        with Repo(str(root)) as repo:
            units = [s for s in repo.index.stages if Path(s.path).resolve() == pipeline and s.name != "compare"]
            graph = repo.index.graph  # edges point from a stage to what it depends on
            level: dict[str, int] = {}

            def depth(stage) -> int:
                if stage.name not in level:
                    needs = [s for s in graph.successors(stage) if s in units]
                    level[stage.name] = 1 + max((depth(s) for s in needs), default=-1)
                return level[stage.name]

            for unit in units:
                depth(unit)
    levels: list[list[str]] = [[] for _ in range(max(level.values(), default=-1) + 1)]
    for unit in units:
        levels[level[unit.name]].append(f"{COMPARE_PIPELINE}:{unit.name}")  # not .addressing: relative to the cwd
    return levels


def validate_against(params: RunParameters, project: Path) -> dict[str, Any]:
    """Check everything that needs the project; returns what the flow needs: config, stage plan, `-S` args.

    Raises ParametersError naming the parameter; nothing has been run or written (the params copy is temporary).
    """
    from rarl_core.config import ConfigError, load_config

    params_file = project / "params.yaml"
    if not params_file.is_file():
        raise ParametersError(f"{params_file} not found: is {project} the rarl project root?")
    overrides = params.all_overrides(project)
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "params.yaml"
        set_args = apply_overrides(params_file, overrides, copy)
        try:
            cfg = load_config(copy)
        except ConfigError as err:
            where = "overrides" if overrides else "params.yaml"
            raise ParametersError(f"{where}: {str(err).removeprefix(f'{copy}: ')}") from None
        levels = compare_levels(project, copy) if isinstance(params, CompareParameters) else []
    known = pipeline_stages(project)
    upstream: list[str] = []
    if isinstance(params, CompareParameters):
        upstream = compare_upstream(project, known)
        known = [*upstream, *(s for level in levels for s in level), COMPARE_STAGE]
    bases = list(dict.fromkeys(stage_base(s) for s in known))
    if unknown := [s for s in (params.stages or []) if s not in bases and s not in known]:
        raise ParametersError(f"unknown stages {unknown}; the pipeline's stages are {', '.join(bases)}")
    if unknown := sorted(set(params.timeouts_s) - set(bases)):
        raise ParametersError(f"timeouts_s: unknown stages {unknown}; the pipeline's stages are {', '.join(bases)}")
    if isinstance(params, EvaluateParameters):
        if not params.model_dir(project).is_dir():
            raise ParametersError(f"model_path: {params.model_dir(project)} is not a folder on this machine")
        wanted = params.stages or [s for s in ("evaluate", "judge", "report") if s in bases]
        if extra := [s for s in wanted if s not in ("evaluate", "judge", "report")]:
            raise ParametersError(f"stages: rarl/evaluate runs evaluate, judge and report only, not {extra}")
    elif isinstance(params, CompareParameters):
        wanted = [COMPARE_PIPELINE]  # the experiment's target: the comparison and what it needs (all of `known`)
    else:
        wanted = params.stages
    selected = [s for s in known if wanted is None or isinstance(params, CompareParameters) or s in wanted
                or stage_base(s) in wanted]
    if params.is_isolated:
        absolute = {k: v for k, v in vars(cfg.paths).items() if Path(v).is_absolute()}
        if absolute:
            raise ParametersError(
                f"an isolated run (overrides or an experiment name) needs the paths of params.yaml relative to the "
                f"project, so that each experiment writes inside its own temporary workspace; absolute: {absolute}"
            )
    return {"cfg": cfg, "stages": selected, "targets": wanted, "set_args": set_args, "overrides": overrides,
            "upstream": upstream, "levels": levels}


def describe(params: RunParameters) -> str:
    """One line for logs and MLflow tags (no secrets can be in here: parameters hold params.yaml values only)."""
    return json.dumps(params.model_dump(exclude_defaults=True), sort_keys=True, default=str)
