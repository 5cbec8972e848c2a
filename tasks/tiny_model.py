"""Stage tiny_model: build the embedded default model offline (tokenizer trained on the training text)."""

from pathlib import Path

from tasks.common import StageContext, require, stage_main


def run(cfg, ctx: StageContext) -> dict:
    import pandas as pd

    from rarl_core.files import atomic_dir
    from rarl_core.prompts import load_templates
    from rarl_core.tiny_model import build_tiny_model

    rows = pd.read_parquet(require(Path(cfg.paths.augmented) / "train.parquet", "augment"))
    templates = load_templates()
    corpus = [*rows["prompt_text"], *rows["target"], *templates["inference"].values(), "You are a helpful assistant."]
    with atomic_dir(cfg.paths.tiny_model) as tmp:
        n_params = build_tiny_model(cfg.tiny_model, corpus, tmp, cfg.model.max_pixels)
    return {"parameters": n_params}


def main(argv=None) -> int:
    return stage_main("tiny_model", run, ("tiny_model",), argv)


if __name__ == "__main__":
    raise SystemExit(main())
