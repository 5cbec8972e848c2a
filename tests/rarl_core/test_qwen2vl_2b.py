"""The random-weight Qwen2-VL-2B-Instruct: the hub's config and size, and a 1-layer build that the product loads and
runs on a real-size image."""

import json

import pytest
import torch
from PIL import Image

from rarl_core.qwen2vl_2b import HUB_GENERATION_CONFIG, build_qwen2vl_2b, qwen2vl_2b_config

REAL_PIXELS = 448 * 448  # 200704, the A100-40GB profile's bounds: (448/28)^2 = 256 image tokens


def test_full_config_has_the_hub_values():
    config = qwen2vl_2b_config(text_layers=28, vision_depth=32)
    text, vision = config.text_config, config.vision_config
    assert (text.vocab_size, text.hidden_size, text.intermediate_size) == (151936, 1536, 8960)
    assert (text.num_hidden_layers, text.num_attention_heads, text.num_key_value_heads) == (28, 12, 2)
    assert (text.rms_norm_eps, text.max_position_embeddings, text.hidden_act) == (1e-6, 32768, "silu")
    assert text.rope_parameters["rope_theta"] == 1e6 and text.rope_parameters["mrope_section"] == [16, 24, 24]
    assert not text.use_sliding_window and set(text.layer_types) == {"full_attention"}
    assert config.tie_word_embeddings is True
    assert (vision.depth, vision.embed_dim, vision.num_heads, vision.mlp_ratio) == (32, 1280, 16, 4)
    assert (vision.patch_size, vision.spatial_merge_size, vision.temporal_patch_size) == (14, 2, 2)
    assert (vision.hidden_size, vision.in_channels, vision.hidden_act) == (1536, 3, "quick_gelu")
    assert (text.bos_token_id, text.eos_token_id) == (151643, 151645)
    ids = (config.vision_start_token_id, config.vision_end_token_id, config.image_token_id, config.video_token_id)
    assert ids == (151652, 151653, 151655, 151656)


def test_full_model_has_the_hub_checkpoints_parameter_count():
    """Qwen2-VL-2B's model.safetensors.index.json: total_size 4,417,971,200 bytes of bfloat16 = 2,208,985,600
    parameters (the tied lm_head stored once). Counted on the meta device: no memory is allocated."""
    from transformers import Qwen2VLForConditionalGeneration

    with torch.device("meta"):
        model = Qwen2VLForConditionalGeneration(qwen2vl_2b_config(text_layers=28, vision_depth=32))
    assert model.lm_head.weight is model.get_input_embeddings().weight
    assert sum(p.numel() for p in model.parameters()) == 4_417_971_200 // 2


def test_depth_knobs_change_only_depth():
    small, full = qwen2vl_2b_config(2, 1).to_dict(), qwen2vl_2b_config(28, 32).to_dict()
    assert small["text_config"].pop("num_hidden_layers") == 2 and full["text_config"].pop("num_hidden_layers") == 28
    assert small["vision_config"].pop("depth") == 1 and full["vision_config"].pop("depth") == 32
    for config in (small, full):
        config["text_config"].pop("layer_types"), config["text_config"].pop("max_window_layers")
    assert small == full
    with pytest.raises(ValueError, match="text_layers"):
        qwen2vl_2b_config(0, 1)


@pytest.fixture(scope="module")
def one_layer(tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("qwen2vl-2b-1layer")
    n_params = build_qwen2vl_2b(out, text_layers=1, vision_depth=1, min_pixels=REAL_PIXELS, max_pixels=REAL_PIXELS,
                                seed=0)
    return out, n_params


def test_one_layer_folder_loads_with_transformers_auto_classes(one_layer):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    folder, n_params = one_layer
    model = AutoModelForImageTextToText.from_pretrained(folder)
    assert type(model).__name__ == "Qwen2VLForConditionalGeneration" and model.dtype == torch.bfloat16
    assert sum(p.numel() for p in model.parameters()) == n_params
    assert model.lm_head.weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()  # still tied
    assert model.get_input_embeddings().weight.shape == (151936, 1536)
    assert model.generation_config.to_diff_dict() | HUB_GENERATION_CONFIG == model.generation_config.to_diff_dict()
    processor = AutoProcessor.from_pretrained(folder)
    assert type(processor).__name__ == "QwenVLImageProcessor"
    assert processor.tokenizer.convert_tokens_to_ids("<|image_pad|>") == 151655 == model.config.image_token_id
    saved = json.loads((folder / "config.json").read_text())
    assert saved["tie_word_embeddings"] is True and saved["text_config"]["vocab_size"] == 151936


def test_one_layer_folder_runs_forward_and_generate_through_the_products_loaders(one_layer):
    from rarl_core.modeling import load_model, load_processor
    from rarl_core.prompts import user_message

    folder, _ = one_layer
    processor = load_processor(folder, REAL_PIXELS, REAL_PIXELS)
    model = load_model(folder, "float32").eval()
    text = processor.apply_chat_template(user_message("Is there a fracture?"), add_generation_prompt=True,
                                         tokenize=False)
    inputs = processor(text=[text], images=[Image.new("RGB", (448, 448), (90, 90, 90))], return_tensors="pt")
    assert int((inputs["input_ids"] == 151655).sum()) == 256
    with torch.no_grad():
        logits = model(**inputs).logits
    assert logits.shape == (1, inputs["input_ids"].shape[1], 151936) and torch.isfinite(logits).all()
    generated = model.generate(**inputs, max_new_tokens=3, min_new_tokens=3, do_sample=False)
    assert generated.shape == (1, inputs["input_ids"].shape[1] + 3)
