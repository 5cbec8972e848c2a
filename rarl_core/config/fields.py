"""What every config section is made of: ConfigError, and fields that carry help text but no value.

A field has no Python default on purpose: its value is written once, in params.yaml, and loading fails naming the
key when it is missing, so a default here can never disagree with the file users read and edit.
"""

from __future__ import annotations

import copy
from dataclasses import field
from typing import Any


class ConfigError(ValueError):
    """params.yaml is invalid: the message names the key and what to do."""


def _help(text: str) -> Any:
    """A required field with TRL-style help text. No default: its value is written once, in params.yaml."""
    return field(metadata={"help": text})


def _optional(empty: Any, text: str) -> Any:
    """An optional per-dataset field (DatasetSpec): absent means "not set", never a second copy of a value."""
    return field(default_factory=lambda: copy.deepcopy(empty), metadata={"help": text, "optional": True})
