"""The offline Qwen2-VL tokenizer against token ids and formats published for the real one, not against itself."""

import importlib.metadata

import pytest

from rarl_core import qwen2_tokenizer
from rarl_core.qwen2_tokenizer import SPECIAL_TOKEN_IDS, build_qwen2_tokenizer, ranks_path

# Published expectations: huggingface/transformers, tests/models/qwen2/test_tokenization_qwen2.py,
# Qwen2TokenizationTest.test_tokenizer_integration (the hub tokenizer Qwen/Qwen-tokenizer at revision
# 5909c8222473b2c73b0b73fb054552cd4ef6a8eb; identical at transformers commits 04d96fd2 and 04bee35c). The published
# lists are padded to 90 with <|endoftext|> (151643); the ids before the padding are copied here unchanged.
PUBLISHED = [
    (
        "Transformers (formerly known as pytorch-transformers and pytorch-pretrained-bert) provides "
        "general-purpose architectures (BERT, GPT-2, RoBERTa, XLM, DistilBert, XLNet...) for Natural "
        "Language Understanding (NLU) and Natural Language Generation (NLG) with over 32+ pretrained "
        "models in 100+ languages and deep interoperability between Jax, PyTorch and TensorFlow.",
        [8963, 388, 320, 69514, 3881, 438, 4510, 27414, 32852, 388, 323, 4510, 27414, 21334, 35722, 1455, 529, 8,
         5707, 4586, 58238, 77235, 320, 61437, 11, 479, 2828, 12, 17, 11, 11830, 61437, 64, 11, 1599, 10994, 11,
         27604, 321, 33, 529, 11, 29881, 6954, 32574, 369, 18448, 11434, 45451, 320, 45, 23236, 8, 323, 18448,
         11434, 23470, 320, 30042, 38, 8, 448, 916, 220, 18, 17, 10, 80669, 4119, 304, 220, 16, 15, 15, 10, 15459,
         323, 5538, 94130, 2897, 1948, 619, 706, 11, 5355, 51, 21584, 323, 94986, 13],
    ),
    (
        "🤗 Transformers 提供了可以轻松地下载并且训练先进的预训练模型的 API 和工具。使用预训练模型可以减少计算消耗和碳排放，"
        "并且节省从头训练所需要的时间和资源。",
        [144834, 80532, 93685, 83744, 34187, 73670, 104261, 29490, 62189, 103937, 104034, 102830, 98841, 104034,
         104949, 9370, 5333, 58143, 102011, 1773, 37029, 98841, 104034, 104949, 73670, 101940, 100768, 104997,
         33108, 100912, 105054, 90395, 100136, 106831, 45181, 64355, 104034, 113521, 101975, 33108, 85329, 1773],
    ),
    (
        '```python\ntokenizer = AutoTokenizer.from_pretrained("Qwen/Qwen-tokenizer")\ntokenizer("世界，你好！")```',
        [73594, 12669, 198, 85593, 284, 8979, 37434, 6387, 10442, 35722, 445, 48, 16948, 45274, 16948, 34841, 3135,
         1138, 85593, 445, 99489, 3837, 108386, 6313, 899, 73594],
    ),
]

# Qwen2-VL-2B-Instruct's tokenizer_config.json: ids of the added tokens ("added_tokens_decoder"), eos and pad
REAL_SPECIAL_IDS = {
    "<|endoftext|>": 151643, "<|im_start|>": 151644, "<|im_end|>": 151645, "<|object_ref_start|>": 151646,
    "<|object_ref_end|>": 151647, "<|box_start|>": 151648, "<|box_end|>": 151649, "<|quad_start|>": 151650,
    "<|quad_end|>": 151651, "<|vision_start|>": 151652, "<|vision_end|>": 151653, "<|vision_pad|>": 151654,
    "<|image_pad|>": 151655, "<|video_pad|>": 151656,
}

# The hub chat template of Qwen2-VL-2B-Instruct (tokenizer_config.json "chat_template"; the same string is quoted for
# Qwen/Qwen2-VL-7B-Instruct in transformers' tests/models/qwen2_vl/test_processing_qwen2_vl.py, prepare_processor_dict,
# and TRL ships it as trl/chat_templates/qwen2_5_vl.jinja, "byte-identical" to Qwen2-VL's).
HUB_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}"
    "<|im_end|>\n{% else %}{% for content in message['content'] %}{% if content['type'] == 'image' or 'image' in "
    "content or 'image_url' in content %}{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}"
    "Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>{% elif content['type'] "
    "== 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}"
    "Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>{% elif 'text' in content "
    "%}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}{% if add_generation_prompt %}"
    "<|im_start|>assistant\n{% endif %}"
)


@pytest.fixture(scope="module")
def tokenizer():
    return build_qwen2_tokenizer()


@pytest.mark.parametrize("text, ids", PUBLISHED, ids=["english", "chinese-emoji", "code"])
def test_ids_equal_the_published_qwen2_ids(tokenizer, text, ids):
    assert tokenizer(text)["input_ids"] == ids
    assert tokenizer.decode(ids) == text


def test_padding_a_batch_matches_the_published_padded_lists(tokenizer):
    """The published lists are right-padded to 90 with <|endoftext|>, the pad token of Qwen2 and Qwen2-VL."""
    batch = tokenizer([t for t, _ in PUBLISHED], padding="max_length", max_length=90, padding_side="right")
    for (_, ids), got, mask in zip(PUBLISHED, batch["input_ids"], batch["attention_mask"]):
        assert got == ids + [151643] * (90 - len(ids))
        assert mask == [1] * len(ids) + [0] * (90 - len(ids))


def test_nfc_normalisation_as_the_hub_tokenizer(tokenizer):
    """transformers' test_nfc_normalization: only NFC applies (U+03D2 U+0301 -> U+03D3, not NFKC's U+038E)."""
    nfd, nfc = "\u03d2\u0301\u03d2\u0308\u017f\u0307", "\u03d3\u03d4\u1e9b"
    assert tokenizer.backend_tokenizer.normalizer.normalize_str(nfd) == nfc
    assert tokenizer(nfd)["input_ids"] == tokenizer(nfc)["input_ids"]


def test_special_tokens_at_their_real_ids(tokenizer):
    assert SPECIAL_TOKEN_IDS == REAL_SPECIAL_IDS
    assert {t: tokenizer.convert_tokens_to_ids(t) for t in REAL_SPECIAL_IDS} == REAL_SPECIAL_IDS
    assert len(tokenizer) == 151657  # 151,643 ranks + 14 special tokens (the model's 151,936 rows are padding)
    assert (tokenizer.eos_token, tokenizer.eos_token_id) == ("<|im_end|>", 151645)
    assert (tokenizer.pad_token, tokenizer.pad_token_id) == ("<|endoftext|>", 151643)
    assert tokenizer.bos_token is None and tokenizer.unk_token is None
    assert tokenizer.padding_side == "left"
    text = "".join(REAL_SPECIAL_IDS)
    assert tokenizer(text)["input_ids"] == list(REAL_SPECIAL_IDS.values())  # never split into bytes
    # skip_special_tokens drops every one of them from decoded text (evaluation decodes that way)
    assert tokenizer.decode(tokenizer("a" + text + "b")["input_ids"], skip_special_tokens=True) == "ab"


def test_chat_template_is_the_hub_one_and_renders_a_one_image_turn_as_the_hub_does(tokenizer):
    assert tokenizer.chat_template == HUB_CHAT_TEMPLATE
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Is there a fracture?"}]}]
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert text == ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
                    "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Is there a fracture?<|im_end|>\n"
                    "<|im_start|>assistant\n")
    ids = tokenizer(text)["input_ids"]
    assert ids[:5] == [151644, 8948, 198, 2610, 525]  # <|im_start|> system \n You are
    assert ids.count(151655) == 1 and ids[-3:] == [151644, 77091, 198]  # one <|image_pad|>; <|im_start|>assistant\n


def test_save_pretrained_round_trip_keeps_every_id(tokenizer, tmp_path):
    from transformers import AutoTokenizer

    tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    text = PUBLISHED[0][0] + "".join(REAL_SPECIAL_IDS)
    assert loaded(text)["input_ids"] == tokenizer(text)["input_ids"]
    assert loaded.chat_template == HUB_CHAT_TEMPLATE and loaded.eos_token_id == 151645


def test_agrees_with_tiktoken_reading_the_same_ranks(tokenizer):
    """tiktoken, the reference reader of .tiktoken files, with Qwen2's split regex: the same ids on mixed text."""
    import tiktoken
    from tiktoken.load import load_tiktoken_bpe
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    enc = tiktoken.Encoding("qwen2", pat_str=PRETOKENIZE_REGEX, mergeable_ranks=load_tiktoken_bpe(str(ranks_path())),
                            special_tokens={})
    text = ("Findings: a 12-mm nodule in the right upper lobe (RUL); no effusion.\n\n  Impression —  benign?\t"
            "Größe 3,5 cm; 肺部结节 ; ﾃｽﾄ; naïve café; x²+y²; <think>yes</think><answer> no </answer>   \r\n")
    assert tokenizer(text)["input_ids"] == enc.encode(text)


def test_missing_dashscope_is_a_clear_error(monkeypatch):
    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps dashscope"):
        ranks_path()


def test_a_changed_ranks_file_is_refused(monkeypatch):
    monkeypatch.setattr(qwen2_tokenizer, "RANKS_SHA256", "0" * 64)
    with pytest.raises(ValueError, match="sha256"):
        ranks_path()
