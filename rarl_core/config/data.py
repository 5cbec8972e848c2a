"""Config sections of the data side: paths, the base model, the embedded tiny model, datasets, augmentation."""

from __future__ import annotations

from dataclasses import dataclass

from rarl_core.config.fields import ConfigError, _help, _optional


@dataclass
class PathsConfig:
    """Every path the pipeline writes, declared once; dvc.yaml templates them as ${paths.*}."""

    prepared: str = _help("Normalised datasets: <name>/data.parquet, images/, card.json.")
    augmented: str = _help("Prompt-augmented training set (diversity prompting).")
    tiny_model: str = _help("The embedded default model, built offline by the tiny_model stage.")
    sft_model: str = _help("SFT warm-up result: a full save_pretrained model (LoRA merged in).")
    adapters: str = _help("GRPO LoRA adapters, one PEFT folder per variant (rl, rarl, ...).")
    merged: str = _help("Each variant's adapter merged into the SFT model (save_pretrained folders).")
    predictions: str = _help("Evaluation predictions: <model>/<dataset>/<prompt>.jsonl.")
    metrics: str = _help("DVC metrics files: sft.json, grpo-<variant>.json, eval.json.")
    report: str = _help("The comparison report.")
    checkpoints: str = _help("Trainer working folders (checkpoints); not a DVC output.")
    report_html: str = _help("The comparison report as one self-contained HTML page with plots.")
    judge: str = _help("Judge scores: <model>/<dataset>/<prompt>.jsonl, beside the predictions they score.")
    plots: str = _help("Plot data for `dvc plots show`: accuracy.csv, gap.csv, rewards/<variant>.csv.")
    compare: str = _help("The comparison (rarl compare): compare.md, compare.html, results.json, summary.json.")


@dataclass
class ModelConfig:
    name_or_path: str = _help(
        "Base model: a hub id (Qwen/Qwen2-VL-2B-Instruct) or a local save_pretrained folder. The default is the "
        "embedded tiny model that the tiny_model stage builds at paths.tiny_model.",
    )
    dtype: str = _help("float32 on CPU; bfloat16 on a GPU.")
    min_pixels: int = _help("Smallest image area after resizing; one image token covers (14 * merge size)^2 pixels "
                            "(784 for Qwen2-VL's merge size 2, 3136 for the embedded default's 4).")
    max_pixels: int = _help("Largest image area after resizing; bounds image tokens to max_pixels / (14 * merge "
                            "size)^2. The embedded default's vision pretraining draws square pictures of this area.")

    def __post_init__(self):
        if self.dtype not in ("float32", "bfloat16", "float16"):
            raise ConfigError(f"model.dtype must be float32, bfloat16 or float16, not {self.dtype!r}")
        if not 784 <= self.min_pixels <= self.max_pixels:
            raise ConfigError("model.min_pixels must be >= 784 (one 28x28 token) and <= model.max_pixels")


TINY_MODEL_PRESETS = ("embedded", "qwen2vl-2b")


@dataclass
class VisionPretrainConfig:
    """The embedded model's vision pretraining (rarl_core/vision_pretrain.py): synthetic polygons and ellipses on
    group-A training images and photographs, never the evaluation questions. The tiny stand-in for the pretrained
    vision encoder a real VLM starts from: without it SFT never learnt to see the starter set's lesions (issue 12)."""

    steps: int = _help("Optimizer steps of the vision tower + merger with per-token heads.")
    batch_size: int = _help("Pictures per step.")
    learning_rate: float = _help("Peak AdamW learning rate (linear warm-up, cosine decay).")
    images: int = _help("Pictures generated for the run (each seen about steps * batch_size / images times).")
    natural_fraction: float = _help("Share of the pictures drawn on scikit-image photographs instead of group-A "
                                    "training backgrounds.")
    seed: int = _help("Seed of the pictures and of the heads' initialisation.")
    threads: int = _help("torch CPU threads of the tiny_model stage (0 = torch's default: every core). Two torch "
                         "processes each using every core of a 2-core machine ran 5x slower than with one thread "
                         "each: set 1 where stages or tests run side by side.")

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
    """The model the tiny_model stage builds offline: the embedded default, or Qwen2-VL-2B's real architecture with
    random weights (to run every stage at real shapes: profiles/real-shape-cpu.yaml)."""

    preset: str = _help(
        "'embedded': the small model below (widths from this section), trained from scratch on CPU in minutes. "
        "'qwen2vl-2b': Qwen2-VL-2B-Instruct's exact architecture, vocabulary, tokenizer and chat template with random "
        "weights (rarl_core/qwen2vl_2b.py; needs `pip install --no-deps dashscope` for the BPE ranks); only "
        "num_layers, vision_depth and seed below apply to it."
    )
    hidden_size: int = _help("Text model width (embedded).")
    num_layers: int = _help("Text decoder layers (qwen2vl-2b: 28 is the real depth; 1-2 for tests).")
    num_heads: int = _help("Attention heads (head_dim = hidden_size / num_heads) (embedded).")
    num_kv_heads: int = _help("Key/value heads (grouped-query attention) (embedded).")
    intermediate_size: int = _help("Text MLP width (embedded).")
    vision_depth: int = _help("Vision transformer blocks (qwen2vl-2b: 32 is the real depth).")
    vision_embed_dim: int = _help("Vision transformer width (embedded).")
    vision_merge_size: int = _help(
        "Vision patches merged per side into one image token (embedded; Qwen2-VL's own is 2, 28 px per token). 4 "
        "gives 56-px tokens, one per quadrant of a 112-px image, which the tiny language model reads faster and "
        "better than 16 tokens (measured in issue 12).")
    vocab_size: int = _help("Upper bound of the byte-level BPE vocabulary trained on the pipeline's text (embedded).")
    seed: int = _help("Seed of the random initialisation.")
    vision_pretrain: VisionPretrainConfig = _help("The embedded model's vision pretraining (see its section).")

    def __post_init__(self):
        if self.preset not in TINY_MODEL_PRESETS:
            raise ConfigError(f"tiny_model.preset must be one of {', '.join(TINY_MODEL_PRESETS)}, not {self.preset!r}")
        if self.preset == "qwen2vl-2b" and not (1 <= self.num_layers <= 28 and 1 <= self.vision_depth <= 32):
            raise ConfigError("tiny_model: qwen2vl-2b has 28 text layers and 32 vision blocks; num_layers must be in "
                              "1..28 and vision_depth in 1..32")
        if self.hidden_size % self.num_heads:
            raise ConfigError(f"tiny_model.hidden_size ({self.hidden_size}) must be divisible by num_heads ({self.num_heads})")
        if self.num_heads % self.num_kv_heads:
            raise ConfigError(f"tiny_model.num_heads ({self.num_heads}) must be divisible by num_kv_heads")
        if (self.hidden_size // self.num_heads) % 8:
            raise ConfigError("tiny_model: hidden_size / num_heads must be a multiple of 8 (mRoPE sections)")
        if self.vocab_size < 300:
            raise ConfigError("tiny_model.vocab_size must be at least 300 (256 bytes + merges)")
        if self.vision_merge_size < 1:
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
        "How to read the dataset: 'starter' (the bundled set), 'vqa_rad' or 'pathvqa' (hub parquet export: image "
        "bytes, question, answer), 'slake' (JSON files + imgs/), 'pmc_vqa' (CSV with Choice A-D + images/) or "
        "'generic' (one JSONL/CSV file + an image folder, for anything else).",
    )
    group: str = _optional("", "starter only: source group 'A' (in-domain) or 'B' (unseen sources).")
    path: str = _optional(
        "",
        "Every format but starter: where the downloaded dataset is, relative to the project root or absolute (see "
        "DATASET_LAYOUTS). vqa_rad and pathvqa also take a hub id, loaded through `datasets` when online.",
    )
    images: str = _optional(
        "",
        "slake, pmc_vqa, generic: the image folder, relative to the dataset's folder or absolute. Unset means the "
        "published layout: imgs/ (slake), images/ (pmc_vqa), the file's own folder (generic).",
    )
    split_files: dict[str, str] = _optional(
        {},
        "vqa_rad, pathvqa, slake, pmc_vqa: split -> file name or glob under path, replacing the published layout, "
        "e.g. {train: train_2.csv, test: test_2.csv} for PMC-VQA's cleaned version.",
    )
    language: str = _optional(
        "",
        "slake only, required there: the q_lang kept ('en' or 'zh'). Rows in the other language are recorded in "
        "quarantine.jsonl as other_language, a choice rather than a defect.",
    )
    licence: str = _optional("", "Licence for the data card; unset writes the one the dataset publishes.")

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
        if self.format != "slake" and self.language:
            raise ConfigError(f"language applies only to the slake format, not to {self.format!r}")
        if self.format == "slake" and not self.language:
            raise ConfigError("format 'slake' needs language: the q_lang kept, 'en' or 'zh'")


@dataclass
class DataConfig:
    image_size: int = _help(
        "Longest side of every normalised image, in pixels: larger images are shrunk (never enlarged) once, so "
        "training neither re-decodes a 2000-px DICOM nor meets more than (image_size/28)^2 image tokens. The "
        "starter set is drawn square at exactly this size.",
    )
    seed: int = _help("Seed of the starter set's augmentations.")
    num_workers: int = _help(
        "Processes that decode and normalise images; 1 works in the stage's own process. Any value gives "
        "byte-identical output.",
    )
    max_quarantine_fraction: float = _help(
        "A dataset fails when more than this share of its rows is quarantined for a defect (missing or unreadable "
        "image, empty text, duplicate, ...): training on a silently gutted set is worse than stopping.",
    )
    unseen_leakage: str = _help(
        "An image of an unseen dataset that a training set also holds (same content or a perceptual "
        "near-duplicate): 'error' fails that dataset, since the leak would fake generalisation; 'warn' reports it.",
    )
    datasets: dict[str, DatasetSpec] = _help(
        "Datasets to prepare, by name.",
    )
    train: list[str] = _help("Datasets whose train split is used for training.")
    in_domain: list[str] = _help("Datasets whose test split measures in-domain accuracy.")
    unseen: list[str] = _help("Datasets never trained on: the generalisation test.")

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
    variants_per_question: int = _help("Prompt variants made of each training question.")
    styles: dict[str, float] = _help(
        "Relative weight of each prompt style (templates in rarl_core/prompts.yaml); multiple_choice applies only "
        "to questions with choices.",
    )
    seed: int = _help("Seed of the style draw.")

    def __post_init__(self):
        if self.variants_per_question < 1:
            raise ConfigError("augment.variants_per_question must be >= 1")
        if not self.styles or any(w < 0 for w in self.styles.values()) or not any(self.styles.values()):
            raise ConfigError("augment.styles needs at least one style with a positive weight, none negative")
