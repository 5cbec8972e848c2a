"""Config sections of evaluation: generation, the judge, the report, MLflow tracking and `rarl compare`."""

from __future__ import annotations

from dataclasses import dataclass

from rarl_core.config.fields import ConfigError, _help


RESERVED_MODEL_NAMES = ("base", "sft")
IMAGE_CONTROLS = ("blank", "shuffled")  # rarl_core/controls.py


@dataclass
class EvaluateConfig:
    batch_size: int = _help("Questions generated at once (left-padded batches).")
    max_new_tokens: int = _help("Generation budget per answer.")
    prompts: list[str] = _help("Inference prompts from rarl_core/prompts.yaml.")
    max_questions: int = _help(
        "Evaluate at most this many questions per dataset (0 = all): a sample seeded by evaluate.seed and stratified "
        "by answer type, the same questions for every model."
    )
    image_controls: list[str] = _help(
        "Also score every model on the same questions with each image replaced by a blank one ('blank') and with "
        "images shuffled across questions ('shuffled'), to show whether it looks at the image (rarl_core/controls.py). "
        "Each control costs one more generation pass; [] turns them off."
    )
    temperature: float = _help(
        "0 = greedy decoding (the default: one reproducible answer per question); > 0 samples at this temperature."
    )
    top_p: float = _help("Nucleus sampling mass when sampling (temperature > 0).")
    num_samples: int = _help(
        "Completions per question when sampling; each is scored, so accuracy is the mean over samples. 1 if greedy."
    )
    seed: int = _help("Seed of sampling, reset per model x dataset x prompt cell so each cell is reproducible.")
    n_resamples: int = _help(
        "Bootstrap resamples of every interval the evaluation, the report and `rarl compare` print (questions, and "
        "seeds when there are several)."
    )
    extra_models: dict[str, str] = _help(
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
        if unknown := sorted(set(self.image_controls) - set(IMAGE_CONTROLS)):
            raise ConfigError(f"evaluate.image_controls: unknown {unknown}; known: {', '.join(IMAGE_CONTROLS)}")
        if self.n_resamples < 100:
            raise ConfigError("evaluate.n_resamples must be >= 100: fewer gives intervals that move between runs")
        if self.temperature == 0 and self.num_samples > 1:
            raise ConfigError("evaluate.num_samples > 1 needs temperature > 0: greedy decoding gives one answer")
        for name in self.extra_models:
            if not name.isidentifier() or name in RESERVED_MODEL_NAMES:
                raise ConfigError(f"evaluate.extra_models: {name!r} must be a simple name (letters, digits, _), "
                                  f"not one of {RESERVED_MODEL_NAMES}")

    def decoding(self) -> dict[str, object]:
        """The decoding settings, logged with every eval run so a sampled run is never mistaken for a greedy one."""
        if self.temperature == 0:
            return {"decoding": "greedy", "max_new_tokens": self.max_new_tokens}
        return {"decoding": "sampling", "temperature": self.temperature, "top_p": self.top_p,
                "num_samples": self.num_samples, "seed": self.seed, "max_new_tokens": self.max_new_tokens}


RUBRIC_MODEL = "rubric"  # judge.model naming the offline rubric judge (rarl_core/judge), not a LiteLLM model
RUBRIC_LABEL = "rubric (offline)"


@dataclass
class JudgeConfig:
    """The `judge:` section: which judge scores predictions, and how hard to try. Checked before any call."""

    model: str = _help(
        "'rubric' = deterministic offline rubric judge (no network). Otherwise a LiteLLM model string: "
        "'gpt-4o-mini' (the paper's judge), 'ollama/llama3.1', or 'openai/<name>' with api_base for a local "
        "vLLM / OpenAI-compatible server. The API key is read by LiteLLM from the provider's usual environment "
        "variable (e.g. OPENAI_API_KEY) and is never written anywhere."
    )
    api_base: str | None = _help("Base URL of an OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1; null = the provider's.")
    concurrency: int = _help("Judge requests in flight at once.")
    timeout_s: float = _help("Seconds before one judge request is abandoned.")
    max_retries: int = _help("Retries per row after the first attempt (timeouts, 429, 5xx, refused, malformed replies).")
    backoff_s: float = _help("First retry delay in seconds, doubled each retry; a longer Retry-After wins.")
    temperature: float = _help("Judge sampling temperature (0.1 as in the RARL authors' judge).")
    max_failure_rate: float = _help("The stage fails (after writing scores) when more than this share of rows has an error.")
    cache_path: str = _help("SQLite cache of finished scores: reruns make no calls, interrupted runs resume.")
    send_images: bool = _help("Must stay false: the judge sees question, reference and completion text only.")

    def __post_init__(self) -> None:
        if problems := _judge_problems(self):
            raise ConfigError("judge: " + "; ".join(problems))

    @property
    def is_rubric(self) -> bool:
        return self.model == RUBRIC_MODEL

    @property
    def label(self) -> str:
        """What goes into each scored row's `judge` field."""
        return RUBRIC_LABEL if self.is_rubric else self.model


def _judge_problems(cfg: JudgeConfig) -> list[str]:
    """Every reason the judge section is unusable, so that one message lists them all."""
    p: list[str] = []
    if not cfg.model.strip():
        p.append("model must be 'rubric' or a LiteLLM model string such as 'gpt-4o-mini'")
    if cfg.api_base is not None:
        if not cfg.api_base.startswith(("http://", "https://")):
            p.append(f"api_base must be null or an http(s):// URL, got {cfg.api_base!r}")
        elif cfg.model == RUBRIC_MODEL:
            p.append("api_base is set but model is 'rubric' (the offline judge makes no calls); "
                     "set model to e.g. 'openai/<served-model-name>' or remove api_base")
    if cfg.concurrency < 1:
        p.append(f"concurrency must be >= 1, got {cfg.concurrency}")
    if cfg.timeout_s <= 0:
        p.append(f"timeout_s must be > 0, got {cfg.timeout_s}")
    if cfg.max_retries < 0:
        p.append(f"max_retries must be >= 0, got {cfg.max_retries}")
    if cfg.backoff_s < 0:
        p.append(f"backoff_s must be >= 0, got {cfg.backoff_s}")
    if not 0 <= cfg.temperature <= 2:
        p.append(f"temperature must be in [0, 2], got {cfg.temperature}")
    if not 0 <= cfg.max_failure_rate <= 1:
        p.append(f"max_failure_rate must be in [0, 1], got {cfg.max_failure_rate}")
    if not cfg.cache_path.strip():
        p.append("cache_path must be a non-empty path")
    if cfg.send_images:
        p.append("send_images must be false: sending images to the judge is not supported yet "
                 "(the judge grades question, reference and completion text only)")
    return p


@dataclass
class ReportConfig:
    registered_model: str = _help(
        "MLflow registered model holding one version per trained model (sft and each GRPO variant, aliased by name); "
        "the alias `champion` marks the best on the unseen sets.",
    )
    champion_prompt: str = _help(
        "Inference prompt whose unseen-set accuracy elects the champion (RARL's claim is about the reasoning prompt).",
    )


@dataclass
class MlflowConfig:
    tracking_uri: str = _help(
        "Tracking store: the local SQLite file by default, or an http(s) server URI."
    )
    artifact_root: str = _help("Where a new experiment stores artifacts (a folder or a URI).")
    experiment: str = _help("MLflow experiment name.")
    log_models: bool = _help("Log adapters and merged models as run artifacts.")


CONTROL_BUDGETS = ("tokens", "wall_clock")


@dataclass
class CompareConfig:
    """`rarl compare` (compare/dvc.yaml): SFT, each GRPO variant and an equal-compute SFT control, over several seeds.

    The GRPO runs use the `grpo:` section as it is, the control the `sft:` recipe, evaluation the `evaluate:` section
    and the judge the `judge:` section, so a comparison measures exactly the pipeline's settings.
    """

    seeds: list[int] = _help(
        "Training seeds: every GRPO variant and the SFT control is trained once per seed from the same SFT warm-up "
        "(the warm-up itself is one model). Three is the least that shows seed-to-seed spread; the intervals widen "
        "honestly when seeds disagree.",
    )
    control: str = _help(
        "Budget of the SFT control, continued from the warm-up for each seed: 'tokens' (as many tokens through the "
        "model as that seed's GRPO runs, on average: TRL's count of prompt + completion tokens of every training "
        "sequence) or 'wall_clock' (as many training seconds). Tokens is the default: it does not depend on the "
        "hardware or on what else the machine runs, and it favours GRPO, whose tokens are sampled one at a time.",
    )
    judge: bool = _help(
        "Score every prediction with the judge of the `judge:` section (the offline rubric by default) for the "
        "reasoning-score diagnostic. An LLM judge costs one call per prediction (cached).",
    )
    def __post_init__(self):
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ConfigError("compare.seeds must list at least one seed, each once")
        if self.control not in CONTROL_BUDGETS:
            raise ConfigError(f"compare.control must be one of {', '.join(CONTROL_BUDGETS)}, not {self.control!r}")
