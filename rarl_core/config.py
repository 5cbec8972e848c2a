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
    adapters: str = _help("models/adapters", "GRPO LoRA adapters, one PEFT folder per variant (rl, rarl, ...).")
    merged: str = _help("models/merged", "Each variant's adapter merged into the SFT model (save_pretrained folders).")
    predictions: str = _help("reports/predictions", "Evaluation predictions: <model>/<dataset>/<prompt>.jsonl.")
    metrics: str = _help("reports/metrics", "DVC metrics files: sft.json, grpo-<variant>.json, eval.json.")
    report: str = _help("reports/report.md", "The comparison report.")
    checkpoints: str = _help("checkpoints", "Trainer working folders (checkpoints); not a DVC output.")
    report_html: str = _help("reports/report.html", "The comparison report as one self-contained HTML page with plots.")
    judge: str = _help("reports/judge", "Judge scores: <model>/<dataset>/<prompt>.jsonl, beside the predictions they score.")
    plots: str = _help("reports/plots", "Plot data for `dvc plots show`: accuracy.csv, gap.csv, rewards/<variant>.csv.")
    compare: str = _help("reports/compare", "The comparison (rarl compare): compare.md, compare.html, results.json, summary.json.")


@dataclass
class ModelConfig:
    name_or_path: str = _help(
        "models/tiny-qwen2-vl",
        "Base model: a hub id (Qwen/Qwen2-VL-2B-Instruct) or a local save_pretrained folder. The default is the "
        "embedded tiny model that the tiny_model stage builds at paths.tiny_model.",
    )
    dtype: str = _help("float32", "float32 on CPU; bfloat16 on a GPU.")
    min_pixels: int = _help(3136, "Smallest image area after resizing; one image token covers (14 * merge size)^2 "
                            "pixels (784 for Qwen2-VL's merge size 2).")
    max_pixels: int = _help(3136, "Largest image area after resizing; bounds image tokens to max_pixels / (14 * merge "
                            "size)^2. The tiny default's vision pretraining draws square pictures of exactly this area.")

    def __post_init__(self):
        if self.dtype not in ("float32", "bfloat16", "float16"):
            raise ConfigError(f"model.dtype must be float32, bfloat16 or float16, not {self.dtype!r}")
        if not 784 <= self.min_pixels <= self.max_pixels:
            raise ConfigError("model.min_pixels must be >= 784 (one 28x28 token) and <= model.max_pixels")


@dataclass
class VisionPretrainConfig:
    """The tiny model's vision pretraining (rarl_core/vision_pretrain.py): synthetic polygons, not the evaluation task.

    Every value is set in params.yaml (tiny_model.vision_pretrain); there are no Python defaults.
    """

    steps: int = field(metadata={"help": "Optimizer steps of the vision tower + merger with per-token heads."})
    batch_size: int = field(metadata={"help": "Pictures per step."})
    learning_rate: float = field(metadata={"help": "Peak AdamW learning rate (linear warm-up, cosine decay)."})
    images: int = field(metadata={"help": "Pictures generated for the run (each seen about steps * batch_size / "
                                          "images times)."})
    natural_fraction: float = field(metadata={
        "help": "Share of the pictures drawn on scikit-image photographs instead of group-A training backgrounds."})
    seed: int = field(metadata={"help": "Seed of the pictures and of the heads' initialisation."})
    threads: int = field(metadata={
        "help": "torch CPU threads of the tiny_model stage (0 = torch's default: every core). Two torch processes "
                "each using every core of a 2-core machine ran 5x slower than with one thread each: set 1 where "
                "stages or tests run side by side."})

    def __post_init__(self):
        if self.threads < 0:
            raise ConfigError("tiny_model.vision_pretrain.threads must be >= 0 (0 = torch's default)")
        if self.steps < 1 or self.batch_size < 1 or self.images < self.batch_size:
            raise ConfigError("tiny_model.vision_pretrain: steps and batch_size must be >= 1, images >= batch_size")
        if self.learning_rate <= 0:
            raise ConfigError("tiny_model.vision_pretrain.learning_rate must be > 0")
        if not 0.0 <= self.natural_fraction <= 1.0:
            raise ConfigError("tiny_model.vision_pretrain.natural_fraction must be between 0 and 1")


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
    vision_merge_size: int | None = _help(
        None, "Vision patches merged per side into one image token (Qwen2-VL: 2, so 28 px per token). Set in "
        "params.yaml: 4 gives 56-px tokens, one per quadrant of a 112-px image, which the tiny language model reads "
        "faster than 16 tokens (measured in issue 12). Unset keeps Qwen2-VL's own 2.",
    )
    vision_pretrain: VisionPretrainConfig | None = _help(
        None, "Vision pretraining after the model is built (rarl_core/vision_pretrain.py). Set in params.yaml: the "
        "tiny_model stage refuses to build the embedded default without it (a random vision tower cannot see the "
        "starter set's lesions).",
    )

    def __post_init__(self):
        if self.hidden_size % self.num_heads:
            raise ConfigError(f"tiny_model.hidden_size ({self.hidden_size}) must be divisible by num_heads ({self.num_heads})")
        if self.num_heads % self.num_kv_heads:
            raise ConfigError(f"tiny_model.num_heads ({self.num_heads}) must be divisible by num_kv_heads")
        if (self.hidden_size // self.num_heads) % 8:
            raise ConfigError("tiny_model: hidden_size / num_heads must be a multiple of 8 (mRoPE sections)")
        if self.vocab_size < 300:
            raise ConfigError("tiny_model.vocab_size must be at least 300 (256 bytes + merges)")
        if self.vision_merge_size is not None and self.vision_merge_size < 1:
            raise ConfigError("tiny_model.vision_merge_size must be >= 1")


DATASET_FORMATS = ("starter", "vqa_rad", "pathvqa", "slake", "pmc_vqa", "generic")

# What `path` must point at, per format: the error message when it is missing, and the README's layout table.
DATASET_LAYOUTS = {
    "vqa_rad": "the folder of the hub parquet export (data/train-*.parquet, data/test-*.parquet), or the hub id "
    "flaviagiammarino/vqa-rad when online",
    "pathvqa": "the folder of the hub parquet export (data/{train,validation,test}-*.parquet), or the hub id "
    "flaviagiammarino/path-vqa when online",
    "slake": "the folder holding train.json, validation.json, test.json and the unzipped imgs/",
    "pmc_vqa": "the folder holding train.csv, test.csv and the unzipped images/",
    "generic": "one .jsonl or .csv file with columns image, question, answer, split (optional: id, answer_type, "
    "choices, modality, organ, reasoning); images relative to its folder",
}


@dataclass
class DatasetSpec:
    """One dataset to prepare. Besides `format`, only the fields that format reads may be set."""

    format: str = _help(
        "starter",
        "How to read the dataset: 'starter' (the bundled set), 'vqa_rad' or 'pathvqa' (hub parquet export: image "
        "bytes, question, answer), 'slake' (JSON files + imgs/), 'pmc_vqa' (CSV with Choice A-D + images/) or "
        "'generic' (one JSONL/CSV file + an image folder, for anything else).",
    )
    group: str = _help("", "starter only: source group 'A' (in-domain) or 'B' (unseen sources).")
    path: str = _help(
        "",
        "Every format but starter: where the downloaded dataset is, relative to the project root or absolute (see "
        "DATASET_LAYOUTS). vqa_rad and pathvqa also take a hub id, loaded through `datasets` when online.",
    )
    images: str = _help(
        "",
        "slake, pmc_vqa, generic: the image folder, relative to the dataset's folder or absolute. Empty means the "
        "published layout: imgs/ (slake), images/ (pmc_vqa), the file's own folder (generic).",
    )
    split_files: dict[str, str] = _help(
        {},
        "vqa_rad, pathvqa, slake, pmc_vqa: split -> file name or glob under path, replacing the published layout, "
        "e.g. {train: train_2.csv, test: test_2.csv} for PMC-VQA's cleaned version.",
    )
    language: str = _help(
        "en",
        "slake only: the q_lang kept ('en' or 'zh'). Rows in the other language are recorded in quarantine.jsonl "
        "as other_language, a choice rather than a defect.",
    )
    licence: str = _help("", "Licence for the data card; empty writes the one the dataset publishes.")

    def __post_init__(self):
        from rarl_core.schema import SPLITS

        if self.format not in DATASET_FORMATS:
            raise ConfigError(f"unknown dataset format {self.format!r}; known: {', '.join(DATASET_FORMATS)}")
        starter = self.format == "starter"
        if starter and self.group not in ("A", "B"):
            raise ConfigError(f"a starter dataset needs group 'A' or 'B', not {self.group!r}")
        if starter and (self.path or self.images or self.split_files):
            raise ConfigError("the starter format is built in: it takes no path, images or split_files")
        if not starter and self.group:
            raise ConfigError(f"group applies only to the starter format, not to {self.format!r}")
        if not starter and not self.path:
            raise ConfigError(f"format {self.format!r} needs a path: {DATASET_LAYOUTS[self.format]}")
        if self.format == "generic" and not self.path.endswith((".jsonl", ".csv")):
            raise ConfigError(f"format 'generic' needs path to be a .jsonl or .csv file, not {self.path!r}")
        if self.images and self.format in ("vqa_rad", "pathvqa"):
            raise ConfigError(f"images does not apply to {self.format!r}: its parquet files carry the images")
        if self.split_files and self.format == "generic":
            raise ConfigError("split_files does not apply to 'generic': its file has a split column")
        if unknown := sorted(set(self.split_files) - set(SPLITS)):
            raise ConfigError(f"split_files names split {unknown[0]!r}; splits are {', '.join(SPLITS)}")
        if self.format != "slake" and self.language != "en":
            raise ConfigError(f"language applies only to the slake format, not to {self.format!r}")
        if not self.language:
            raise ConfigError("language must name a q_lang value, e.g. 'en'")


@dataclass
class DataConfig:
    image_size: int = _help(
        112,
        "Longest side of every normalised image, in pixels: larger images are shrunk (never enlarged) once, so "
        "training neither re-decodes a 2000-px DICOM nor meets more than (image_size/28)^2 image tokens. The "
        "starter set is drawn square at exactly this size.",
    )
    seed: int = _help(0, "Seed of the starter set's augmentations.")
    num_workers: int = _help(
        1, "Processes that decode and normalise images; 1 works in the stage's own process. Any value gives "
        "byte-identical output.",
    )
    max_quarantine_fraction: float = _help(
        0.05,
        "A dataset fails when more than this share of its rows is quarantined for a defect (missing or unreadable "
        "image, empty text, duplicate, ...): training on a silently gutted set is worse than stopping.",
    )
    unseen_leakage: str = _help(
        "error",
        "An image of an unseen dataset that a training set also holds (same content or a perceptual "
        "near-duplicate): 'error' fails that dataset, since the leak would fake generalisation; 'warn' reports it.",
    )
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
        if self.image_size < 28:
            raise ConfigError("data.image_size must be >= 28 (one Qwen2-VL image token is 28x28 pixels)")
        if self.num_workers < 1:
            raise ConfigError("data.num_workers must be >= 1")
        if not 0.0 <= self.max_quarantine_fraction <= 1.0:
            raise ConfigError("data.max_quarantine_fraction must be between 0 and 1")
        if self.unseen_leakage not in ("error", "warn"):
            raise ConfigError(f"data.unseen_leakage must be 'error' or 'warn', not {self.unseen_leakage!r}")


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
    save_steps: int = _help(50, "Checkpoint every N steps, so a killed run resumes (kept until the stage finishes).")
    max_length: int = _help(
        2048, "Longest training sequence in tokens (prompt with image tokens + target). Longer rows are dropped "
        "before training and counted; a sequence is never truncated (that can cut image tokens)."
    )
    seed: int = _help(0, "Training seed.")

    def __post_init__(self):
        if self.save_steps < 1 or self.max_length < 16:
            raise ConfigError("sft.save_steps must be >= 1 and sft.max_length >= 16")
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
    variants: dict[str, dict[str, float]] = _help(
        {"rl": {"format": 1.0, "accuracy": 1.0, "reasoning": 0.0},
         "rarl": {"format": 1.0, "accuracy": 1.0, "reasoning": 1.0}},
        "GRPO runs trained from the same SFT model, by name, each with its reward weights. Reasoning weight 0 is "
        "conventional RL (format + accuracy, as MedVLM-R1 and Med-R1); > 0 is RARL. Each variant is its own DVC "
        "stage (grpo@<name>) and MLflow run.",
    )
    use_vllm: bool = _help(False, "Generate rollouts with vLLM colocated on the GPU (pip install vllm; GPU only).")
    gradient_checkpointing: bool = _help(False, "Trade compute for memory (on for 2B on one GPU).")
    logging_steps: int = _help(5, "Log every N steps.")
    save_steps: int = _help(10, "Checkpoint every N steps, so a killed run resumes (kept until the stage finishes).")
    max_prompt_length: int = _help(
        2048, "Longest prompt in tokens, image tokens included. Longer prompts are dropped before training and "
        "counted; TRL no longer truncates prompts (that would cut image tokens)."
    )
    seed: int = _help(0, "Training seed.")

    def __post_init__(self):
        if self.save_steps < 1 or self.max_prompt_length < 16:
            raise ConfigError("grpo.save_steps must be >= 1 and grpo.max_prompt_length >= 16")
        if self.num_generations < 2:
            raise ConfigError("grpo.num_generations must be >= 2: GRPO compares completions within a group")
        if self.batch_size % self.num_generations:
            raise ConfigError(
                f"grpo.batch_size ({self.batch_size}) must be divisible by grpo.num_generations "
                f"({self.num_generations}): each prompt's group of completions must fit in one batch"
            )
        if not self.variants:
            raise ConfigError("grpo.variants must name at least one GRPO variant")
        for name, weights in self.variants.items():
            if not name.isidentifier():
                raise ConfigError(f"grpo.variants: {name!r} must be a simple name (letters, digits, _)")
            if unknown := set(weights) - set(REWARD_NAMES):
                raise ConfigError(f"grpo.variants.{name} has unknown rewards {sorted(unknown)}; known: {REWARD_NAMES}")
            if any(w < 0 for w in weights.values()) or not any(weights.values()):
                raise ConfigError(f"grpo.variants.{name} weights must be >= 0 with at least one positive")
        if self.importance_sampling_level not in ("token", "sequence"):
            raise ConfigError("grpo.importance_sampling_level must be 'token' or 'sequence'")
        if self.max_steps < 1 or self.max_completion_length < 1 or self.temperature <= 0:
            raise ConfigError("grpo.max_steps and max_completion_length must be >= 1, temperature > 0")


RESERVED_MODEL_NAMES = ("base", "sft")


@dataclass
class ResourcesConfig:
    num_gpus: int = _help(
        1, "GPUs for the training stages. Above 1, sft and grpo are launched with `accelerate launch` (tasks/launch.py)."
    )
    accelerate_config: str = _help(
        "accelerate/multi_gpu.yaml",
        "accelerate config used when num_gpus > 1: multi_gpu (DDP), deepspeed_zero2, deepspeed_zero3 or fsdp, all in "
        "accelerate/.",
    )

    def __post_init__(self):
        if self.num_gpus < 1:
            raise ConfigError("resources.num_gpus must be >= 1")


@dataclass
class EvaluateConfig:
    batch_size: int = _help(64, "Questions generated at once (left-padded batches).")
    max_new_tokens: int = _help(48, "Generation budget per answer.")
    prompts: list[str] = _help(["plain", "reasoning"], "Inference prompts from rarl_core/prompts.yaml.")
    max_questions: int = _help(0, "Evaluate at most this many questions per dataset (0 = all).")
    temperature: float = _help(
        0.0, "0 = greedy decoding (the default: one reproducible answer per question); > 0 samples at this temperature."
    )
    top_p: float = _help(1.0, "Nucleus sampling mass when sampling (temperature > 0).")
    num_samples: int = _help(
        1, "Completions per question when sampling; each is scored, so accuracy is the mean over samples. 1 if greedy."
    )
    seed: int = _help(0, "Seed of sampling, reset per model x dataset x prompt cell so each cell is reproducible.")
    extra_models: dict[str, str] = _help(
        {},
        "More models to evaluate beside base, sft and the GRPO variants, by name: a save_pretrained folder, or a PEFT "
        "adapter folder (detected by its adapter_config.json) loaded on the base it names. DVC re-runs evaluate when "
        "this mapping changes, not when the folders' contents do.",
    )

    def __post_init__(self):
        if self.batch_size < 1 or self.max_new_tokens < 1 or self.max_questions < 0:
            raise ConfigError("evaluate.batch_size and max_new_tokens must be >= 1, max_questions >= 0")
        if not self.prompts:
            raise ConfigError("evaluate.prompts must name at least one inference prompt")
        if self.temperature < 0 or not 0 < self.top_p <= 1 or self.num_samples < 1:
            raise ConfigError("evaluate.temperature must be >= 0, top_p in (0, 1], num_samples >= 1")
        if self.temperature == 0 and self.num_samples > 1:
            raise ConfigError("evaluate.num_samples > 1 needs temperature > 0: greedy decoding gives one answer")
        for name in self.extra_models:
            if not name.isidentifier() or name in RESERVED_MODEL_NAMES:
                raise ConfigError(f"evaluate.extra_models: {name!r} must be a simple name (letters, digits, _), "
                                  f"not one of {RESERVED_MODEL_NAMES}")


@dataclass
class ReportConfig:
    registered_model: str = _help(
        "rarl-medical-vlm",
        "MLflow registered model holding one version per trained model (sft and each GRPO variant, aliased by name); "
        "the alias `champion` marks the best on the unseen sets.",
    )
    champion_prompt: str = _help(
        "reasoning",
        "Inference prompt whose unseen-set accuracy elects the champion (RARL's claim is about the reasoning prompt).",
    )


@dataclass
class MlflowConfig:
    tracking_uri: str = _help(
        "sqlite:///mlflow/mlflow.db", "Tracking store: the local SQLite file by default, or an http(s) server URI."
    )
    artifact_root: str = _help("mlflow/artifacts", "Where a new experiment stores artifacts (a folder or a URI).")
    experiment: str = _help("rarl", "MLflow experiment name.")
    log_models: bool = _help(True, "Log adapters and merged models as run artifacts.")


CONTROL_BUDGETS = ("tokens", "wall_clock")


@dataclass
class CompareConfig:
    """`rarl compare` (compare/dvc.yaml): SFT, each GRPO variant and an equal-compute SFT control, over several seeds.

    The GRPO runs use the `grpo:` section as it is, the control the `sft:` recipe, evaluation the `evaluate:` section
    and the judge the `judge:` section, so a comparison measures exactly the pipeline's settings.
    """

    seeds: list[int] = _help(
        [0, 1, 2],
        "Training seeds: every GRPO variant and the SFT control is trained once per seed from the same SFT warm-up "
        "(the warm-up itself is one model). Three is the least that shows seed-to-seed spread; the intervals widen "
        "honestly when seeds disagree.",
    )
    control: str = _help(
        "tokens",
        "Budget of the SFT control, continued from the warm-up for each seed: 'tokens' (as many tokens through the "
        "model as that seed's GRPO runs, on average: TRL's count of prompt + completion tokens of every training "
        "sequence) or 'wall_clock' (as many training seconds). Tokens is the default: it does not depend on the "
        "hardware or on what else the machine runs, and it favours GRPO, whose tokens are sampled one at a time.",
    )
    judge: bool = _help(
        True,
        "Score every prediction with the judge of the `judge:` section (the offline rubric by default) for the "
        "reasoning-score diagnostic. An LLM judge costs one call per prediction (cached).",
    )
    n_resamples: int = _help(2000, "Bootstrap resamples of every interval (seeds, then questions).")

    def __post_init__(self):
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ConfigError("compare.seeds must list at least one seed, each once")
        if self.control not in CONTROL_BUDGETS:
            raise ConfigError(f"compare.control must be one of {', '.join(CONTROL_BUDGETS)}, not {self.control!r}")
        if self.n_resamples < 100:
            raise ConfigError("compare.n_resamples must be >= 100: fewer gives intervals that move between runs")


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
    resources: ResourcesConfig = _help(ResourcesConfig(), "Hardware for the training stages.")
    report: ReportConfig = _help(ReportConfig(), "Report, model registry and champion rule.")
    compare: CompareConfig = _help(CompareConfig(), "Does RARL beat RL and SFT: seeds, intervals, equal-compute control.")


def _build(cls: type, data: Any, where: str) -> Any:
    """Build dataclass `cls` from a mapping, recursing into nested dataclasses and rejecting unknown keys."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'params.yaml'} must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    if unknown := sorted(set(data) - names):
        prefix = f"{where}." if where else ""
        raise ConfigError(f"unknown key {prefix}{unknown[0]} in params.yaml; known keys here: {', '.join(sorted(names))}")
    required = [f.name for f in dataclasses.fields(cls)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing := [name for name in required if name not in data]:
        prefix = f"{where}." if where else ""
        field_help = next(f.metadata.get("help", "") for f in dataclasses.fields(cls) if f.name == missing[0])
        raise ConfigError(f"params.yaml must set {prefix}{missing[0]} (no default): {field_help}")
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
