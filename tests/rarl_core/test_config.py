"""params.yaml loading: the shipped file is valid, unknown keys and impossible combinations are named."""

from __future__ import annotations

import dataclasses
import re
import typing
from pathlib import Path

import pytest
import yaml

from rarl_core.config import Config, ConfigError, load_config
from tests.conftest import config_with

REPO = Path(__file__).resolve().parents[2]
VISION_PRETRAIN = {"steps": 10, "batch_size": 8, "learning_rate": 1e-3, "images": 16, "natural_fraction": 0.5,
                   "seed": 0, "threads": 1}


def test_shipped_params_load_and_cover_every_field():
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    cfg = load_config(REPO / "params.yaml")
    assert set(raw) == {f.name for f in dataclasses.fields(Config)}  # every section spelled out once
    assert cfg.model.name_or_path == cfg.paths.tiny_model


def test_dvc_yaml_templates_only_declared_paths():
    text = (REPO / "dvc.yaml").read_text()
    used = set(re.findall(r"\$\{paths\.(\w+)\}", text))
    declared = set(yaml.safe_load((REPO / "params.yaml").read_text())["paths"])
    assert used and used <= declared


@pytest.mark.parametrize(
    "data, message",
    [
        ({"sft": {"lerning_rate": 0.1}}, "unknown key sft.lerning_rate"),
        ({"nonsense": {}}, "unknown key nonsense"),
        ({"grpo": {"batch_size": 30, "num_generations": 8}}, "grpo.batch_size (30) must be divisible"),
        ({"grpo": {"num_generations": 1, "batch_size": 8}}, "num_generations must be >= 2"),
        ({"grpo": {"variants": {"rl": {"format": 1, "beauty": 1}}}}, "grpo.variants.rl has unknown rewards ['beauty']"),
        ({"grpo": {"variants": {"rl": {"format": 0, "accuracy": 0}}}}, "at least one positive"),
        ({"grpo": {"variants": {}}}, "at least one GRPO variant"),
        ({"grpo": {"variants": {"r l": {"format": 1}}}}, "must be a simple name"),
        ({"sft": {"mode": "qlora"}}, "sft.mode must be 'lora' or 'full'"),
        ({"sft": {"max_steps": "many"}}, "sft.max_steps must be int"),
        ({"sft": {"max_steps": True}}, "sft.max_steps must be int"),
        ({"model": {"dtype": "fp8"}}, "model.dtype"),
        ({"data": {"unseen": ["starter_a"]}}, "which data.train also trains on"),
        ({"data": {"train": ["vqa_rad"]}}, "names 'vqa_rad', which is not in data.datasets"),
        ({"data": {"datasets": {"x": {"format": "csv"}}, "train": ["x"], "in_domain": [], "unseen": []}},
         "unknown dataset format 'csv'"),
        ({"augment": {"styles": {"explain": 0}}}, "positive weight"),
        ({"judge": {"concurrency": 0}}, "concurrency"),
        ({"tiny_model": {"hidden_size": 100, "num_heads": 3}}, "divisible by num_heads"),
        ({"tiny_model": {"vision_pretrain": {"steps": 10}}}, "missing key tiny_model.vision_pretrain.batch_size"),
        ({"tiny_model": {"vision_pretrain": {**VISION_PRETRAIN, "natural_fraction": 1.5}}},
         "tiny_model.vision_pretrain.natural_fraction must be between 0 and 1"),
        ({"tiny_model": {"vision_pretrain": {**VISION_PRETRAIN, "threads": -1}}}, "vision_pretrain.threads must be >= 0"),
        ({"tiny_model": {"vision_pretrain": {**VISION_PRETRAIN, "images": 4}}}, "images >= batch_size"),
        ({"tiny_model": {"vision_merge_size": 0}}, "tiny_model.vision_merge_size must be >= 1"),
    ],
)
def test_bad_params_are_rejected_with_the_key_named(data, message):
    with pytest.raises(ConfigError) as err:
        config_with(data)
    assert message in str(err.value)


def test_exponent_floats_written_by_dvc_are_numbers():
    cfg = config_with(yaml.safe_load("grpo:\n  learning_rate: 1e-05\n"))
    assert cfg.grpo.learning_rate == 1e-5
    with pytest.raises(ConfigError, match="grpo.learning_rate must be float"):
        config_with({"grpo": {"learning_rate": "fast"}})


def test_ints_are_accepted_for_floats_and_defaults_fill_in():
    cfg = config_with({"sft": {"learning_rate": 1}})
    assert cfg.sft.learning_rate == 1.0 and isinstance(cfg.sft.learning_rate, float)
    assert cfg.grpo.batch_size % cfg.grpo.num_generations == 0


def test_missing_or_broken_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "params.yaml")
    (tmp_path / "params.yaml").write_text("sft: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "params.yaml")


def test_every_field_has_help_text():
    seen = []

    def walk(cls):
        seen.append(cls)
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            assert f.metadata.get("help"), f"{cls.__name__}.{f.name} has no help text"
            if dataclasses.is_dataclass(hints[f.name]):
                walk(hints[f.name])

    walk(Config)
    assert len(seen) > 8
