"""Typed configuration: every value of the pipeline lives once, in params.yaml, and is loaded into these dataclasses.

Loading rejects unknown keys (a typo must not silently fall back to a default) and impossible combinations, with a
message naming the key. Each field carries its help text, TRL-style, and each default says why it was chosen.
This module imports only the standard library and PyYAML, so the CLI can validate params.yaml instantly.
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rarl_core.judge import JudgeConfig

DEFAULT_PARAMS = Path("params.yaml")


class ConfigError(ValueError):
    """params.yaml is invalid: the message names the key and what to do."""


def _help(default: Any, text: str) -> Any:
    """A dataclass field with TRL-style help text; mutable defaults are deep-copied per instance."""
    if isinstance(default, (list, dict)) or dataclasses.is_dataclass(default):
        return field(default_factory=lambda: copy.deepcopy(default), metadata={"help": text})
    return field(default=default, metadata={"help": text})


@dataclass
class PathsConfig:
    """Every path the pipeline writes, declared once; dvc.yaml templates them as ${paths.*}."""

    prepared: str = _help("data/prepared", "Normalised datasets: <name>/data.parquet, images/, card.json.")
    augmented: str = _help("data/augmented", "Prompt-augmented training set (diversity prompting).")
    tiny_model: str = _help("models/tiny-qwen2-vl", "The embedded default model, built offline by the tiny_model stage.")
    sft_model: str = _help("models/sft", "SFT warm-up result: a full save_pretrained model (LoRA merged in).")
    grpo_adapter: str = _help("models/grpo-adapter", "The GRPO LoRA adapter (PEFT save_pretrained folder).")
    grpo_model: str = _help("models/grpo", "The GRPO adapter merged into the SFT model: the final RARL model.")
    predictions: str = _help("reports/predictions", "Evaluation predictions: <model>/<dataset>/<prompt>.jsonl.")
    sft_metrics: str = _help("reports/sft.json", "SFT training summary (a DVC metrics file).")
    grpo_metrics: str = _help("reports/grpo.json", "GRPO training summary: rewards first/last (DVC metrics).")
    eval_metrics: str = _help("reports/eval.json", "Evaluation metrics per model x dataset x prompt (DVC metrics).")
    report: str = _help("reports/report.md", "The comparison report.")
    checkpoints: str = _help("checkpoints", "Trainer working folders (checkpoints); not a DVC output.")


@dataclass
class ModelConfig:
    name_or_path: str = _help(
        "models/tiny-qwen2-vl",
        "Base model: a hub id (Qwen/Qwen2-VL-2B-Instruct) or a local save_pretrained folder. The default is the "
        "embedded tiny model that the tiny_model stage builds at paths.tiny_model.",
    )
    dtype: str = _help("float32", "float32 on CPU; bfloat16 on a GPU.")
    min_pixels: int = _help(3136, "Smallest image area after resizing (56*56 = 4 image tokens).")
    max_pixels: int = _help(3136, "Largest image area after resizing; bounds image tokens to max_pixels/784.")

    def __post_init__(self):
        if self.dtype not in ("float32", "bfloat16", "float16"):
            raise ConfigError(f"model.dtype must be float32, bfloat16 or float16, not {self.dtype!r}")
        if not 784 <= self.min_pixels <= self.max_pixels:
            raise ConfigError("model.min_pixels must be >= 784 (one 28x28 token) and <= model.max_pixels")


@dataclass
class TinyModelConfig:
    """Size of the embedded default. Measured on 2 CPU cores: hidden 128 / 4 layers learns fastest per second."""

    hidden_size: int = _help(128, "Text model width.")
    num_layers: int = _help(4, "Text decoder layers.")
    num_heads: int = _help(4, "Attention heads (head_dim = hidden_size / num_heads).")
    num_kv_heads: int = _help(2, "Key/value heads (grouped-query attention).")
    intermediate_size: int = _help(512, "Text MLP width.")
    vision_depth: int = _help(1, "Vision transformer blocks.")
    vision_embed_dim: int = _help(64, "Vision transformer width.")
    vocab_size: int = _help(600, "Upper bound of the byte-level BPE vocabulary trained on the pipeline's text.")
    seed: int = _help(0, "Seed of the random initialisation.")

    def __post_init__(self):
        if self.hidden_size % self.num_heads:
            raise ConfigError(f"tiny_model.hidden_size ({self.hidden_size}) must be divisible by num_heads ({self.num_heads})")
        if self.num_heads % self.num_kv_heads:
            raise ConfigError(f"tiny_model.num_heads ({self.num_heads}) must be divisible by num_kv_heads")
        if (self.hidden_size // self.num_heads) % 8:
            raise ConfigError("tiny_model: hidden_size / num_heads must be a multiple of 8 (mRoPE sections)")
        if self.vocab_size < 300:
            raise ConfigError("tiny_model.vocab_size must be at least 300 (256 bytes + merges)")


DATASET_FORMATS = ("starter",)


@dataclass
class DatasetSpec:
    format: str = _help("starter", "How to read the dataset: 'starter' (the bundled set).")
    group: str = _help("", "For the starter format: source group 'A' (in-domain) or 'B' (unseen sources).")

    def __post_init__(self):
        if self.format not in DATASET_FORMATS:
            raise ConfigError(f"unknown dataset format {self.format!r}; known: {', '.join(DATASET_FORMATS)}")
        if self.format == "starter" and self.group not in ("A", "B"):
            raise ConfigError(f"a starter dataset needs group 'A' or 'B', not {self.group!r}")


@dataclass
class DataConfig:
    image_size: int = _help(112, "Images are normalised once to this square size (RGB PNG).")
    seed: int = _help(0, "Seed of the starter set's augmentations.")
    datasets: dict[str, DatasetSpec] = _help(
        {"starter_a": DatasetSpec("starter", "A"), "starter_b": DatasetSpec("starter", "B")},
        "Datasets to prepare, by name.",
    )
    train: list[str] = _help(["starter_a"], "Datasets whose train split is used for training.")
    in_domain: list[str] = _help(["starter_a"], "Datasets whose test split measures in-domain accuracy.")
    unseen: list[str] = _help(["starter_b"], "Datasets never trained on: the generalisation test.")

    def __post_init__(self):
        for key in ("train", "in_domain", "unseen"):
            for name in getattr(self, key):
                if name not in self.datasets:
                    raise ConfigError(f"data.{key} names {name!r}, which is not in data.datasets")
        if leak := set(self.train) & set(self.unseen):
            raise ConfigError(f"data.unseen lists {sorted(leak)}, which data.train also trains on")
        if not self.train:
            raise ConfigError("data.train must name at least one dataset")


@dataclass
class AugmentConfig:
    variants_per_question: int = _help(2, "Prompt variants made of each training question.")
    styles: dict[str, float] = _help(
        {"explain": 1.0, "short": 1.0, "open": 1.0, "multiple_choice": 1.0},
        "Relative weight of each prompt style (templates in rarl_core/prompts.yaml); multiple_choice applies only "
        "to questions with choices.",
    )
    seed: int = _help(0, "Seed of the style draw.")

    def __post_init__(self):
        if self.variants_per_question < 1:
            raise ConfigError("augment.variants_per_question must be >= 1")
        if not self.styles or any(w < 0 for w in self.styles.values()) or not any(self.styles.values()):
            raise ConfigError("augment.styles needs at least one style with a positive weight, none negative")


@dataclass
class LoraConfig:
    r: int = _help(8, "LoRA rank (the paper uses 8).")
    alpha: int = _help(16, "LoRA alpha (scale = alpha / r).")
    dropout: float = _help(0.05, "LoRA dropout.")
    target_modules: list[str] = _help(
        ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        "Module names to adapt. These names exist only in the language model, so the vision tower stays frozen.",
    )

    def __post_init__(self):
        if self.r < 1 or self.alpha < 1 or not 0 <= self.dropout < 1:
            raise ConfigError("lora: r and alpha must be >= 1 and dropout in [0, 1)")


@dataclass
class SFTConfig:
    mode: str = _help(
        "full",
        "'lora' (the paper's choice, for pretrained bases) or 'full' (full-parameter; the randomly initialised "
        "tiny default needs it).",
    )
    lora: LoraConfig = _help(LoraConfig(), "LoRA settings when mode is 'lora'.")
    learning_rate: float = _help(2e-3, "Peak learning rate (2e-3 suits the tiny model; ~1e-4 for LoRA on 2B).")
    lr_scheduler: str = _help("cosine", "transformers scheduler name.")
    warmup_ratio: float = _help(0.05, "Share of steps for linear warm-up.")
    max_steps: int = _help(300, "Optimizer steps.")
    batch_size: int = _help(32, "Per-device batch size.")
    grad_accum: int = _help(1, "Gradient accumulation steps.")
    gradient_checkpointing: bool = _help(False, "Trade compute for memory (on for 2B on one GPU).")
    logging_steps: int = _help(10, "Log every N steps.")
    seed: int = _help(0, "Training seed.")

    def __post_init__(self):
        if self.mode not in ("lora", "full"):
            raise ConfigError(f"sft.mode must be 'lora' or 'full', not {self.mode!r}")
        if self.max_steps < 1 or self.batch_size < 1 or self.grad_accum < 1:
            raise ConfigError("sft.max_steps, batch_size and grad_accum must be >= 1")


REWARD_NAMES = ("format", "accuracy", "reasoning")


@dataclass
class GRPOConfig:
    lora: LoraConfig = _help(LoraConfig(r=16, alpha=32), "LoRA of the GRPO adapter (a fresh one on the SFT model).")
    learning_rate: float = _help(3e-3, "Peak learning rate (tiny model; ~1e-5 for LoRA on 2B).")
    lr_scheduler: str = _help("constant_with_warmup", "transformers scheduler name.")
    warmup_ratio: float = _help(0.0, "Share of steps for warm-up.")
    max_steps: int = _help(30, "Optimizer steps.")
    batch_size: int = _help(32, "Completions per device per step; must be divisible by num_generations.")
    grad_accum: int = _help(1, "Gradient accumulation steps.")
    num_generations: int = _help(8, "Completions sampled per prompt (the group of GRPO).")
    max_completion_length: int = _help(48, "Tokens per completion; the tiny model's targets are ~25 tokens.")
    temperature: float = _help(1.0, "Sampling temperature of the rollouts.")
    beta: float = _help(0.0, "KL coefficient to the reference model (TRL default 0: no reference model).")
    loss_type: str = _help("dapo", "TRL loss: grpo, bnpo, dr_grpo, dapo, ...")
    importance_sampling_level: str = _help("token", "'token' (GRPO) or 'sequence' (GSPO).")
    reward_weights: dict[str, float] = _help(
        {"format": 1.0, "accuracy": 1.0, "reasoning": 0.0},
        "Weights of the named rewards. reasoning 0 is conventional RL; > 0 is RARL.",
    )
    gradient_checkpointing: bool = _help(False, "Trade compute for memory (on for 2B on one GPU).")
    logging_steps: int = _help(5, "Log every N steps.")
    seed: int = _help(0, "Training seed.")

    def __post_init__(self):
        if self.num_generations < 2:
            raise ConfigError("grpo.num_generations must be >= 2: GRPO compares completions within a group")
        if self.batch_size % self.num_generations:
            raise ConfigError(
                f"grpo.batch_size ({self.batch_size}) must be divisible by grpo.num_generations "
                f"({self.num_generations}): each prompt's group of completions must fit in one batch"
            )
        if unknown := set(self.reward_weights) - set(REWARD_NAMES):
            raise ConfigError(f"grpo.reward_weights has unknown rewards {sorted(unknown)}; known: {REWARD_NAMES}")
        if any(w < 0 for w in self.reward_weights.values()) or not any(self.reward_weights.values()):
            raise ConfigError("grpo.reward_weights must be >= 0 with at least one positive")
        if self.importance_sampling_level not in ("token", "sequence"):
            raise ConfigError("grpo.importance_sampling_level must be 'token' or 'sequence'")
        if self.max_steps < 1 or self.max_completion_length < 1 or self.temperature <= 0:
            raise ConfigError("grpo.max_steps and max_completion_length must be >= 1, temperature > 0")


@dataclass
class EvaluateConfig:
    batch_size: int = _help(64, "Questions generated at once (left-padded batches).")
    max_new_tokens: int = _help(48, "Generation budget per answer.")
    prompts: list[str] = _help(["plain", "reasoning"], "Inference prompts from rarl_core/prompts.yaml.")
    max_questions: int = _help(0, "Evaluate at most this many questions per dataset (0 = all).")

    def __post_init__(self):
        if self.batch_size < 1 or self.max_new_tokens < 1 or self.max_questions < 0:
            raise ConfigError("evaluate.batch_size and max_new_tokens must be >= 1, max_questions >= 0")
        if not self.prompts:
            raise ConfigError("evaluate.prompts must name at least one inference prompt")


@dataclass
class MlflowConfig:
    tracking_uri: str = _help(
        "sqlite:///mlflow/mlflow.db", "Tracking store: the local SQLite file by default, or an http(s) server URI."
    )
    artifact_root: str = _help("mlflow/artifacts", "Where a new experiment stores artifacts (a folder or a URI).")
    experiment: str = _help("rarl", "MLflow experiment name.")
    log_models: bool = _help(True, "Log adapters and merged models as run artifacts.")


@dataclass
class Config:
    paths: PathsConfig = _help(PathsConfig(), "Paths.")
    model: ModelConfig = _help(ModelConfig(), "Base model.")
    tiny_model: TinyModelConfig = _help(TinyModelConfig(), "Embedded default model.")
    data: DataConfig = _help(DataConfig(), "Datasets.")
    augment: AugmentConfig = _help(AugmentConfig(), "Diversity prompting.")
    sft: SFTConfig = _help(SFTConfig(), "SFT warm-up.")
    grpo: GRPOConfig = _help(GRPOConfig(), "GRPO-LoRA.")
    evaluate: EvaluateConfig = _help(EvaluateConfig(), "Evaluation.")
    mlflow: MlflowConfig = _help(MlflowConfig(), "Tracking.")
    judge: JudgeConfig = _help(JudgeConfig(), "The LLM judge of evaluation (rarl_core/judge.py).")


def _build(cls: type, data: Any, where: str) -> Any:
    """Build dataclass `cls` from a mapping, recursing into nested dataclasses and rejecting unknown keys."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'params.yaml'} must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    if unknown := sorted(set(data) - names):
        prefix = f"{where}." if where else ""
        raise ConfigError(f"unknown key {prefix}{unknown[0]} in params.yaml; known keys here: {', '.join(sorted(names))}")
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
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float, str, bool) and not (isinstance(value, hint) and not (hint is int and isinstance(value, bool))):
        raise ConfigError(f"{where} must be {hint.__name__}, got {value!r}")
    return value


def config_from_dict(data: dict) -> Config:
    return _build(Config, data, "")


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
