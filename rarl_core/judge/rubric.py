"""The offline rubric judge: deterministic, no network, on the LLM judge's 0-3 scales.

It exists so that the pipeline runs end to end with no key and no server; every row it scores is labelled
"rubric (offline)" so nobody mistakes it for an LLM judge. It reads a completion with the project's one parser
(rarl_core/answers.py, the lenient reading that evaluation uses) and scores the answer with the project's one scorer,
so the judge can never disagree with a metric about what the answer was or whether it was right.

correctness: 3 when `score_answer` says correct; for open answers 0 when one of answer and reference is negated and
    the other is not ("no lung" for "lung"), else 2 when the answer holds every reference word
    (recall 1) or overlaps strongly (token F1 >= 0.5), 1 for a partial overlap (F1 >= 0.3), else 0.
reasoning: 0 without a think of at least MIN_THINK_WORDS words; else 1, plus 1 when it names a content word of the
    question, plus 1 when its conclusion supports the answer given (the same yes/no, or the answer's content words).
"""

from __future__ import annotations

from collections.abc import Sequence

from rarl_core.answer_text import NEGATORS
from rarl_core.answers import closed_label, final_answer, normalize, parse_completion, reference_label, score_answer
from rarl_core.judge.prompt import JudgeScore

MIN_THINK_WORDS = 5
_FRAME_WORDS = frozenset("""
a an the what which who how where why when is are was were does do did can this that these those there here of in on
at by for from to with and or be it its any image picture shown show shows seen see visible
""".split())


def _answer_type(reference: str, answer_type: str | None, choices: Sequence[str]) -> str:
    """The row's answer type, or, for a bare prediction file without one, what the reference looks like."""
    if answer_type:
        return answer_type
    if len(choices):
        return "multiple_choice"
    return "closed" if reference_label(reference) is not None else "open"


def _correctness(pred: str | None, reference: str, answer_type: str, choices: Sequence[str]) -> tuple[int, str]:
    if pred is None:
        return 0, "no answer in the completion"
    score = score_answer(pred, reference, answer_type, choices)
    if score.correct:
        return 3, f"{answer_type} answer matches"
    if answer_type != "open":
        return 0, f"{answer_type} answer does not match"
    if bool(NEGATORS & set(normalize(pred).split())) != bool(NEGATORS & set(normalize(reference).split())):
        return 0, "negation differs from the reference"
    if score.recall == 1.0 or score.f1 >= 0.5:
        return 2, f"covers the reference with differences (F1 {score.f1:.2f}, recall {score.recall:.2f})"
    if score.f1 >= 0.3:
        return 1, f"partial overlap (F1 {score.f1:.2f})"
    return 0, "does not match the reference"


def _content(text: str) -> set[str]:
    return {t for t in normalize(text).split() if t not in _FRAME_WORDS and len(t) >= 3}


def _supports(think: str, answer: str | None) -> bool:
    """Does the reasoning point to the answer given? The same yes/no, else the answer's content words."""
    if answer is None:
        return False
    said = closed_label(answer)
    if said is not None:  # a "no" needs reasoning that reads as no; a "yes" needs reasoning that does not
        read = closed_label(think)
        return read == "no" if said == "no" else read != "no"
    wanted = _content(answer) or set(normalize(answer).split())
    return bool(wanted) and 2 * len(wanted & set(normalize(think).split())) >= len(wanted)


def _reasoning(think: str | None, question: str, answer: str | None) -> tuple[int, str]:
    if think is None or len(normalize(think).split()) < MIN_THINK_WORDS:
        return 0, "no reasoning in <think>"
    related = bool(_content(question) & set(normalize(think).split()))
    agrees = _supports(think, answer)
    checks = ["present", "relates to the question" if related else "unrelated to the question",
              "supports the answer" if agrees else "does not support the answer"]
    return 1 + related + agrees, ", ".join(checks)


def rubric_score(question: str, reference: str, completion: str, answer_type: str | None = None,
                 choices: Sequence[str] = ()) -> JudgeScore:
    """The deterministic offline judge of one completion, on the LLM judge's 0-3 scales, with its reasons."""
    completion = completion or ""
    pred = final_answer(completion)
    kind = _answer_type(reference, answer_type, choices)
    c, c_why = _correctness(pred, reference, kind, choices)
    r, r_why = _reasoning(parse_completion(completion).think, question, pred)
    shown = "none" if pred is None else repr(pred[:80])
    return JudgeScore(float(c), float(r), f"answer {shown} vs reference {str(reference)[:80]!r}: {c_why}; "
                                          f"reasoning: {r_why}")
