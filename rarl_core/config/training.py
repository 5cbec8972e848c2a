"""Config sections of training: LoRA, the SFT warm-up, GRPO and its reward variants, the hardware."""

from __future__ import annotations

from dataclasses import dataclass

from rarl_core.config.fields import ConfigError, _help


@dataclass
class LoraConfig:
    r: int = _help("LoRA rank (the paper uses 8).")
    alpha: int = _help("LoRA alpha (scale = alpha / r).")
    dropout: float = _help("LoRA dropout.")
    target_modules: list[str] = _help(
        "Module names to adapt. These names exist only in the language model, so the vision tower stays frozen.",
    )

    def __post_init__(self):
        if self.r < 1 or self.alpha < 1 or not 0 <= self.dropout < 1:
            raise ConfigError("lora: r and alpha must be >= 1 and dropout in [0, 1)")


@dataclass
class SFTConfig:
    mode: str = _help(
        "'lora' (the paper's choice, for pretrained bases) or 'full' (full-parameter; the randomly initialised "
        "tiny default needs it).",
    )
    lora: LoraConfig = _help("LoRA settings when mode is 'lora'.")
    learning_rate: float = _help("Peak learning rate (2e-3 suits the tiny model; ~1e-4 for LoRA on 2B).")
    lr_scheduler: str = _help("transformers scheduler name.")
    warmup_ratio: float = _help("Share of steps for linear warm-up.")
    max_steps: int = _help("Optimizer steps.")
    batch_size: int = _help("Per-device batch size.")
    grad_accum: int = _help("Gradient accumulation steps.")
    gradient_checkpointing: bool = _help("Trade compute for memory (on for 2B on one GPU).")
    logging_steps: int = _help("Log every N steps.")
    save_steps: int = _help("Checkpoint every N steps, so a killed run resumes (kept until the stage finishes).")
    max_length: int = _help(
        "Longest training sequence in tokens (prompt with image tokens + target). Longer rows are dropped "
        "before training and counted; a sequence is never truncated (that can cut image tokens)."
    )
    seed: int = _help("Training seed.")

    def __post_init__(self):
        if self.save_steps < 1 or self.max_length < 16:
            raise ConfigError("sft.save_steps must be >= 1 and sft.max_length >= 16")
        if self.mode not in ("lora", "full"):
            raise ConfigError(f"sft.mode must be 'lora' or 'full', not {self.mode!r}")
        if self.max_steps < 1 or self.batch_size < 1 or self.grad_accum < 1:
            raise ConfigError("sft.max_steps, batch_size and grad_accum must be >= 1")


REWARD_NAMES = ("format", "accuracy", "reasoning", "cue")  # rarl_core/rewards.py REWARD_FUNCS


@dataclass
class GRPOConfig:
    lora: LoraConfig = _help("LoRA of the GRPO adapter (a fresh one on the SFT model).")
    learning_rate: float = _help("Peak learning rate (tiny model; ~1e-5 for LoRA on 2B).")
    lr_scheduler: str = _help("transformers scheduler name.")
    warmup_ratio: float = _help("Share of steps for warm-up.")
    max_steps: int = _help("Optimizer steps.")
    batch_size: int = _help("Completions per device per step; must be divisible by num_generations.")
    grad_accum: int = _help("Gradient accumulation steps.")
    num_generations: int = _help("Completions sampled per prompt (the group of GRPO).")
    max_completion_length: int = _help("Tokens per completion; the tiny model's targets are ~25 tokens.")
    temperature: float = _help("Sampling temperature of the rollouts.")
    beta: float = _help("KL coefficient to the reference model (TRL default 0: no reference model).")
    loss_type: str = _help("TRL loss: grpo, bnpo, dr_grpo, dapo, ...")
    importance_sampling_level: str = _help("'token' (GRPO) or 'sequence' (GSPO).")
    scale_rewards: str = _help(
        "How TRL scales each completion's advantage: 'group' (divide by the standard deviation of its prompt's group, "
        "GRPO), 'batch' (by the whole batch's), or 'none' (Dr. GRPO: no scaling, so a group whose rewards barely "
        "differ is not blown up into a full-size update)."
    )
    multi_objective_aggregation: str = _help(
        "How TRL combines the named rewards: 'sum_then_normalize' (weighted sum, then group normalisation) or "
        "'normalize_then_sum' (each reward normalised in its group first, so a reward with a small spread, such as "
        "reasoning, still moves the policy beside accuracy)."
    )
    variants: dict[str, dict[str, float]] = _help(
        "GRPO runs trained from the same SFT model, by name, each with its reward weights. Reasoning weight 0 is "
        "conventional RL (format + accuracy, as MedVLM-R1 and Med-R1); > 0 is RARL. Each variant is its own DVC "
        "stage (grpo@<name>) and MLflow run.",
    )
    use_vllm: bool = _help("Generate rollouts with vLLM colocated on the GPU (pip install vllm; GPU only).")
    gradient_checkpointing: bool = _help("Trade compute for memory (on for 2B on one GPU).")
    logging_steps: int = _help("Log every N steps.")
    save_steps: int = _help("Checkpoint every N steps, so a killed run resumes (kept until the stage finishes).")
    max_prompt_length: int = _help(
        "Longest prompt in tokens, image tokens included. Longer prompts are dropped before training and "
        "counted; TRL no longer truncates prompts (that would cut image tokens)."
    )
    seed: int = _help("Training seed.")

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
        if self.scale_rewards not in ("group", "batch", "none"):
            raise ConfigError(f"grpo.scale_rewards must be 'group', 'batch' or 'none', not {self.scale_rewards!r}")
        if self.multi_objective_aggregation not in ("sum_then_normalize", "normalize_then_sum"):
            raise ConfigError("grpo.multi_objective_aggregation must be 'sum_then_normalize' or 'normalize_then_sum'")
        if self.max_steps < 1 or self.max_completion_length < 1 or self.temperature <= 0:
            raise ConfigError("grpo.max_steps and max_completion_length must be >= 1, temperature > 0")


@dataclass
class ResourcesConfig:
    num_gpus: int = _help(
        "GPUs for the training stages. Above 1, sft and grpo are launched with `accelerate launch` (tasks/launch.py)."
    )
    accelerate_config: str = _help(
        "accelerate config used when num_gpus > 1: multi_gpu (DDP), deepspeed_zero2, deepspeed_zero3 or fsdp, all in "
        "accelerate/.",
    )

    def __post_init__(self):
        if self.num_gpus < 1:
            raise ConfigError("resources.num_gpus must be >= 1")
