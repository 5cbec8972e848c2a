"""Typed configuration: every value of the pipeline lives once, in params.yaml, and is loaded into these dataclasses.

Loading rejects unknown keys (a typo must not silently fall back to a default), missing keys (there is no second
copy of a value in Python to fall back to) and impossible combinations, each with a message naming the key. Each
field carries its help text, TRL-style; params.yaml's comments say why each value was chosen. The package imports
only the standard library and PyYAML, so the CLI can validate params.yaml instantly.

Sections live by topic: fields.py (ConfigError and the field helpers), data.py, training.py, evaluation.py.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from rarl_core.config.data import (
    DATASET_FORMATS,
    DATASET_LAYOUTS,
    AugmentConfig,
    DataConfig,
    DatasetSpec,
    ModelConfig,
    PathsConfig,
    TinyModelConfig,
    VisionPretrainConfig,
)
from rarl_core.config.evaluation import (
    CONTROL_BUDGETS,
    IMAGE_CONTROLS,
    RESERVED_MODEL_NAMES,
    RUBRIC_LABEL,
    RUBRIC_MODEL,
    CompareConfig,
    EvaluateConfig,
    JudgeConfig,
    MlflowConfig,
    ReportConfig,
)
from rarl_core.config.fields import ConfigError, _help
from rarl_core.config.training import REWARD_NAMES, GRPOConfig, LoraConfig, ResourcesConfig, SFTConfig

__all__ = [
    "AugmentConfig", "CONTROL_BUDGETS", "CompareConfig", "Config", "ConfigError", "DATASET_FORMATS",
    "DATASET_LAYOUTS", "DataConfig", "IMAGE_CONTROLS", "DatasetSpec", "EvaluateConfig", "GRPOConfig", "JudgeConfig", "LoraConfig",
    "MlflowConfig", "ModelConfig", "PathsConfig", "REWARD_NAMES", "RESERVED_MODEL_NAMES", "RUBRIC_LABEL", "RUBRIC_MODEL",
    "ReportConfig", "ResourcesConfig", "SFTConfig", "TinyModelConfig", "VisionPretrainConfig", "config_from_dict", "load_config",
    "section_from_dict",
]

DEFAULT_PARAMS = Path("params.yaml")


@dataclass
class Config:
    paths: PathsConfig = _help("Paths.")
    model: ModelConfig = _help("Base model.")
    tiny_model: TinyModelConfig = _help("Embedded default model.")
    data: DataConfig = _help("Datasets.")
    augment: AugmentConfig = _help("Diversity prompting.")
    sft: SFTConfig = _help("SFT warm-up.")
    grpo: GRPOConfig = _help("GRPO-LoRA.")
    evaluate: EvaluateConfig = _help("Evaluation.")
    mlflow: MlflowConfig = _help("Tracking.")
    judge: JudgeConfig = _help("The judge of evaluation (rarl_core/judge/).")
    resources: ResourcesConfig = _help("Hardware for the training stages.")
    report: ReportConfig = _help("Report, model registry and champion rule.")
    compare: CompareConfig = _help("Does RARL beat RL and SFT: seeds, intervals, equal-compute control.")


def _build(cls: type, data: Any, where: str) -> Any:
    """Build dataclass `cls` from a mapping, recursing into nested dataclasses and rejecting unknown keys."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'params.yaml'} must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    prefix = f"{where}." if where else ""
    if unknown := sorted(set(data) - set(fields)):
        raise ConfigError(f"unknown key {prefix}{unknown[0]} in params.yaml; known keys here: {', '.join(sorted(fields))}")
    required = [n for n, f in fields.items() if not f.metadata.get("optional")]
    if missing := [n for n in required if n not in data]:
        help_text = fields[missing[0]].metadata.get("help", "")
        raise ConfigError(f"missing key {prefix}{missing[0]} in params.yaml ({help_text}); every value is written "
                          f"there once, so add it (see the shipped params.yaml)")
    kwargs = {name: _convert(hints[name], value, f"{where}.{name}" if where else name) for name, value in data.items()}
    try:
        return cls(**kwargs)
    except ValueError as err:  # ConfigError, or a ValueError from a config class defined beside its module
        raise ConfigError(f"{where}: {err}" if where and not str(err).startswith(where) else str(err)) from None


def _convert(hint: Any, value: Any, where: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, where)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a mapping")
        return {str(k): _convert(args[1], v, f"{where}.{k}") for k, v in value.items()}
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where} must be a list")
        return [_convert(args[0], v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        return _convert(next(a for a in args if a is not type(None)), value, where)
    if hint is float and isinstance(value, str):
        # YAML 1.1 (PyYAML) reads exponents without a dot, e.g. the `1e-05` that `dvc exp run -S` writes, as text
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"{where} must be float, got {value!r}") from None
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float, str, bool) and not (isinstance(value, hint) and not (hint is int and isinstance(value, bool))):
        raise ConfigError(f"{where} must be {hint.__name__}, got {value!r}")
    return value


def config_from_dict(data: dict) -> Config:
    return _build(Config, data, "")


def section_from_dict(cls: type, data: dict, where: str) -> Any:
    """One section (e.g. JudgeConfig from the `judge:` mapping) with the same checks as load_config."""
    return _build(cls, data, where)


def load_config(path: str | Path = DEFAULT_PARAMS) -> Config:
    """Read and validate params.yaml. Raises ConfigError naming the file and key on any problem."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path} not found: run from the project root or pass --params")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {err}") from None
    try:
        return config_from_dict(data)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
