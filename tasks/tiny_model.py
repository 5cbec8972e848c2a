"""Stage tiny_model: build the embedded default model offline (tokenizer trained on the training text), then
pretrain its vision side on synthetic objects (rarl_core/vision_pretrain.py)."""

from pathlib import Path

from tasks.common import StageContext, require, stage_main

PRETRAINING_BACKGROUNDS = 256  # group-A training images under the pretraining objects (as many again are photographs)


def run(cfg, ctx: StageContext) -> dict:
    import math

    import pandas as pd
    import torch

    from rarl_core.config import ConfigError
    from rarl_core.io import atomic_dir
    from rarl_core.prompts import load_templates
    from rarl_core.starter import training_backgrounds
    from rarl_core.tiny_model import build_tiny_model

    pretrain = cfg.tiny_model.vision_pretrain
    if pretrain is None:
        raise ConfigError("params.yaml must set tiny_model.vision_pretrain: a random vision tower cannot see the "
                          "starter set's lesions (see rarl_core/vision_pretrain.py)")
    if pretrain.threads:
        torch.set_num_threads(pretrain.threads)
    rows = pd.read_parquet(require(Path(cfg.paths.augmented) / "train.parquet", "augment"))
    templates = load_templates()
    corpus = [*rows["prompt_text"], *rows["target"], *templates["inference"].values(), "You are a helpful assistant."]
    size = math.isqrt(cfg.model.max_pixels)
    backgrounds = training_backgrounds(PRETRAINING_BACKGROUNDS, size, cfg.data.seed)
    with atomic_dir(cfg.paths.tiny_model) as tmp:
        return build_tiny_model(cfg.tiny_model, corpus, tmp, cfg.model.max_pixels, backgrounds)


def main(argv=None) -> int:
    return stage_main("tiny_model", run, ("tiny_model",), argv)


if __name__ == "__main__":
    raise SystemExit(main())
