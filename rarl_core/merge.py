"""Merge a LoRA adapter into its base: a plain `save_pretrained` folder that transformers loads with no PEFT.

The merge is checked, not trusted: logits of the merged model must match the adapter-wrapped model on a probe input.
"""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image

from rarl_core.config import Config
from rarl_core.modeling import load_model, load_processor
from rarl_core.prompts import user_message


def _probe_inputs(processor):
    text = processor.apply_chat_template(user_message("What imaging modality is this?"), add_generation_prompt=True,
                                         tokenize=False)
    image = Image.new("RGB", (112, 112), (90, 90, 90))
    return processor(text=[text], images=[image], return_tensors="pt")


def merge_adapter(cfg: Config, base: Path, adapter: Path, out_dir: Path) -> dict:
    """Merge `adapter` into `base`, save to `out_dir`; return the max logit difference the merge made on a probe
    input, and the adapter's own effect (adapter on vs off): an adapter that never moved (e.g. GRPO steps whose
    rewards had no spread leave LoRA's B at zero) merges with difference 0, which then proves nothing."""
    from peft import PeftModel

    if not (adapter / "adapter_config.json").is_file():
        raise FileNotFoundError(f"{adapter} holds no PEFT adapter (adapter_config.json): run the grpo stage first")
    processor = load_processor(base, cfg.model.min_pixels, cfg.model.max_pixels)
    model = PeftModel.from_pretrained(load_model(base, cfg.model.dtype), str(adapter)).eval()
    inputs = _probe_inputs(processor)
    with torch.no_grad():
        before = model(**inputs).logits
        with model.disable_adapter():
            effect = float((before - model(**inputs).logits).abs().max())
        merged = model.merge_and_unload().eval()
        after = merged(**inputs).logits
    merged.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return {"merge_max_logit_diff": float((before - after).abs().max()), "adapter_max_logit_effect": effect}
