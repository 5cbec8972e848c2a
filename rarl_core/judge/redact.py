"""Secrets never reach a file, a log or MLflow: API keys are scrubbed from every text the judge stores or shows.

Providers echo keys in their errors ("Incorrect API key provided: sk-..."), so every error reason, rationale and
message passes through `scrub` before it is written, cached or raised.
"""

from __future__ import annotations

import os
import re

_SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL", re.I)
_SECRET_SHAPES = re.compile(r"\bsk-[A-Za-z0-9_\-]{8,}|\bBearer\s+[A-Za-z0-9._~+/=\-]+", re.I)


def scrub(text: str) -> str:
    """Remove secret values (env vars named like keys/tokens, and key-shaped strings) from text we store or show."""
    for name, value in os.environ.items():
        if len(value) >= 8 and _SECRET_NAME.search(name):
            text = text.replace(value, "***")
    return _SECRET_SHAPES.sub("***", text)
