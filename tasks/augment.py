"""Stage augment: the training questions asked in several prompt styles (diversity prompting)."""


from tasks.common import StageContext, require, stage_main


def run(cfg, ctx: StageContext) -> dict:
    import pandas as pd

    from rarl_core.schema import load_split
    from rarl_core.files import atomic_dir
    from rarl_core.prompts import augment, load_templates

    prepared = require(cfg.paths.prepared, "prepare")
    train = pd.concat([load_split(prepared, name, "train") for name in cfg.data.train], ignore_index=True)
    augmented = augment(train, cfg.augment, load_templates())
    with atomic_dir(cfg.paths.augmented) as tmp:
        augmented.to_parquet(tmp / "train.parquet", index=False)
    return {"questions": len(train), "rows": len(augmented), "styles": augmented["style"].value_counts().to_dict()}


def main(argv=None) -> int:
    return stage_main("augment", run, ("augment",), argv)


if __name__ == "__main__":
    raise SystemExit(main())
