"""Diagnostics that explain a result: does the answer follow the model's own reasoning, do yes/no answers collapse
onto one word. Used by `rarl compare` per model x dataset x prompt; fractions in [0, 1], None when there is
nothing to measure.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np

from rarl_core.answers import choice_index, closed_label, normalize, parse_completion, reference_label
from rarl_core.metrics import summarize
from rarl_core.rewards import think_conclusion

# Words that frame a yes/no question rather than name what it asks about ("Is this a CT image?" asks about "ct").
_FRAME_WORDS = frozenset("""
is are was were do does did can could has have there this that these those it its a an the of in on at to for with
any some image images scan slice photograph picture view shown show shows seen visible present evidence
""".split())


def think_agrees(record: Mapping) -> bool | None:
    """Does the answer say what the model's own reasoning concluded? None when there is no think or no answer.

    The conclusion is the think's text after its last "so"/"therefore"/... (rewards.think_conclusion). Closed
    questions: the conclusion's yes/no when it states one ("no lesion is seen"), else whether it names what the
    question asks about ("so CT" for "Is this a CT image?" implies yes, "so MRI" implies no). Multiple choice: the
    same option. Open: every word of the answer appears in the conclusion.
    """
    parsed = parse_completion(record["completion"])
    if not parsed.think or not parsed.answer:
        return None
    conclusion = think_conclusion(parsed.think)
    if record["answer_type"] == "closed":
        said = closed_label(parsed.answer)
        return said is not None and said == _implied_label(conclusion, record["question"])
    if record["answer_type"] == "multiple_choice":
        said = choice_index(parsed.answer, record["choices"])
        return said is not None and said == choice_index(conclusion, record["choices"])
    words = set(normalize(parsed.answer).split())
    return bool(words) and words <= set(normalize(conclusion).split())


def _implied_label(conclusion: str, question: str) -> str:
    stated = closed_label(conclusion)
    if stated is not None:
        return stated
    subject = set(normalize(question).split()) - _FRAME_WORDS
    return "yes" if subject & set(normalize(conclusion).split()) else "no"


def cell_diagnostics(records: Sequence[Mapping]) -> dict[str, float | None]:
    """Accuracy and the diagnostics of one model x dataset x prompt.

    consistency_rate: share of completions with a think and an answer whose answer agrees with the think.
    majority_share: share of the commoner word among the yes/no answers given (1.0 = every closed answer is the
    same word: collapse), beside reference_majority_share, the same for the true answers of those questions.
    """
    summary = summarize(records)
    agreement = [a for a in (think_agrees(r) for r in records) if a is not None]
    closed = [r for r in records if r["answer_type"] == "closed"]
    given = [label for label in (closed_label(r["parsed_answer"]) for r in closed) if label]
    truth = [label for label in (reference_label(r["answer"]) for r in closed) if label]
    return {
        "accuracy": summary.get("accuracy"),
        "format_rate": summary.get("format_rate"),
        "consistency_rate": float(np.mean(agreement)) if agreement else None,
        "yes_share": given.count("yes") / len(given) if given else None,
        "majority_share": _majority_share(given),
        "reference_majority_share": _majority_share(truth),
        "mean_completion_tokens": summary.get("mean_completion_tokens"),
    }


def _majority_share(labels: Sequence[str]) -> float | None:
    return Counter(labels).most_common(1)[0][1] / len(labels) if labels else None
