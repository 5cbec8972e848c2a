"""Stage tiny_model: build the base model offline, with no hub and no GPU.

`tiny_model.preset: embedded` (the default) builds the small Qwen2-VL whose tokenizer is trained on the pipeline's
own text, then pretrains its vision side on synthetic objects (rarl_core/vision_pretrain.py); `qwen2vl-2b` builds
Qwen2-VL-2B-Instruct's real architecture, vocabulary, tokenizer and chat template with random weights, at the depth
params.yaml asks for, so every later stage runs at real shapes.
"""

from pathlib import Path

from tasks.common import StageContext, require, stage_main

PRETRAINING_BACKGROUNDS = 256  # group-A training images under the pretraining objects (as many again are photographs)


def run(cfg, ctx: StageContext) -> dict:
    from rarl_core.files import atomic_dir

    t = cfg.tiny_model
    if t.preset == "qwen2vl-2b":
        from rarl_core.qwen2vl_2b import build_qwen2vl_2b

        with atomic_dir(cfg.paths.tiny_model) as tmp:
            n_params = build_qwen2vl_2b(tmp, text_layers=t.num_layers, vision_depth=t.vision_depth,
                                        min_pixels=cfg.model.min_pixels, max_pixels=cfg.model.max_pixels, seed=t.seed)
        return {"parameters": n_params}
    import math

    import pandas as pd
    import torch

    from rarl_core.prompts import load_templates
    from rarl_core.starter import training_backgrounds
    from rarl_core.tiny_model import build_tiny_model
    from rarl_core.vision_pretrain import pretrain_vision

    if t.vision_pretrain.threads:
        torch.set_num_threads(t.vision_pretrain.threads)
    rows = pd.read_parquet(require(Path(cfg.paths.augmented) / "train.parquet", "augment"))
    templates = load_templates()
    corpus = [*rows["prompt_text"], *rows["target"], *templates["inference"].values(), "You are a helpful assistant."]
    backgrounds = training_backgrounds(PRETRAINING_BACKGROUNDS, math.isqrt(cfg.model.max_pixels), cfg.data.seed)
    with atomic_dir(cfg.paths.tiny_model) as tmp:
        n_params = build_tiny_model(t, corpus, tmp, cfg.model.max_pixels)
        losses = pretrain_vision(tmp, t.vision_pretrain, backgrounds, cfg.model.max_pixels)
    return {"parameters": n_params} | {f"vision_pretrain/{k}": v for k, v in losses.items()}


def main(argv=None) -> int:
    return stage_main("tiny_model", run, ("tiny_model",), argv)


if __name__ == "__main__":
    raise SystemExit(main())
