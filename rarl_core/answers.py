"""Parse `<think>...</think><answer>...</answer>` completions and score answers against the reference.

Everything here is pure string work (no torch, no model), so the same code scores GRPO rollouts during training
and greedy predictions during evaluation: a reward and a reported metric can never disagree about what "correct"
means.

Scoring rules, chosen to be hard to game by a policy under RL:
- closed (yes/no) questions compare yes/no *labels*, read with whole-word matching and negation scope ("no" inside
  "nodule", "node" or "normal" is not a no; "not present" is a no). An answer that says both yes and no, or that
  hedges ("maybe", "I don't know"), has no label and is wrong.
- multiple choice compares option *indices*; a letter ("B", "(b)", "option B") and the option text both count, but
  an answer naming several options ("A B C D", every option text) resolves to no index and is wrong.
- open questions: exact match after normalisation scores 1.0, anything else earns its token F1 (order-insensitive),
  so stuffing extra words costs precision.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

ANSWER_TYPES = ("closed", "open", "multiple_choice")

_ARTICLES = frozenset({"a", "an", "the"})

# ----------------------------------------------------------------------------------------------------------------
# Completion parsing
# ----------------------------------------------------------------------------------------------------------------

_THINK_BLOCK = re.compile(r"<think>(.*?)</think>", re.IGNORECASE | re.DOTALL)
_ANSWER_BLOCK = re.compile(r"<answer>(.*?)</answer>", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"</?(?:think|answer)>", re.IGNORECASE)
_ANSWER_OPEN = re.compile(r"<answer>", re.IGNORECASE)


@dataclass(frozen=True)
class ParsedCompletion:
    """What a completion says, and whether it said it in the trained format.

    think: content of the first complete `<think>...</think>` block (stripped), or None if there is none.
    answer: see `parse_completion` for the fallback rules; None when no answer can be found.
    well_formed: exactly one think block, then exactly one answer block, only whitespace around and between them.
        Structural only: an empty think or answer is still well formed (the rewards judge emptiness separately).
    """

    think: str | None
    answer: str | None
    well_formed: bool


def parse_completion(text: str | None) -> ParsedCompletion:
    """Split a completion into think, answer and a well-formedness flag.

    The answer is read leniently so that accuracy is scored even when the format slips (the format reward is what
    punishes the slip):
    1. the content of the LAST complete `<answer>...</answer>` block (the model's final word);
    2. else, for output cut off mid-answer (`...<answer>yes` at the token limit), the text after the last `<answer>`;
    3. else None: untagged text is never taken as an answer, so a policy cannot skip the format and still be paid.
    Empty answers become None. Tags are matched case-insensitively.
    """
    if not text:
        return ParsedCompletion(think=None, answer=None, well_formed=False)
    thinks = list(_THINK_BLOCK.finditer(text))
    answers = list(_ANSWER_BLOCK.finditer(text))
    think = thinks[0].group(1).strip() if thinks else None
    return ParsedCompletion(think=think, answer=_fallback_answer(text, answers),
                            well_formed=_is_well_formed(text, thinks, answers))


def _fallback_answer(text: str, answers: list[re.Match[str]]) -> str | None:
    """Last complete answer block, else the tail after an unclosed `<answer>`, else None."""
    if answers:
        candidate = answers[-1].group(1)
    else:
        opens = list(_ANSWER_OPEN.finditer(text))
        if not opens:
            return None
        candidate = _TAG.sub(" ", text[opens[-1].end():])
    candidate = candidate.strip()
    return candidate or None


def _is_well_formed(text: str, thinks: list[re.Match[str]], answers: list[re.Match[str]]) -> bool:
    """One think block, then one answer block, no other tags, nothing but whitespace outside them."""
    if len(thinks) != 1 or len(answers) != 1 or len(_TAG.findall(text)) != 4:
        return False
    think, answer = thinks[0], answers[0]
    if think.end() > answer.start():
        return False
    outside = text[:think.start()] + text[think.end():answer.start()] + text[answer.end():]
    return not outside.strip()


# ----------------------------------------------------------------------------------------------------------------
# Normalisation and token overlap
# ----------------------------------------------------------------------------------------------------------------


def normalize(text: str | None) -> str:
    """Lowercase, drop punctuation and articles, collapse whitespace: the VQA convention for comparing answers.

    Apostrophes are deleted ("don't" -> "dont", so negations stay one token); other punctuation becomes a space
    ("x-ray" -> "x ray"); a dot between digits is kept so "3.5" does not become "35".
    """
    if not text:
        return ""
    t = unicodedata.normalize("NFKC", text).lower()
    t = re.sub(r"['\u2019`]", "", t)
    t = re.sub(r"[^\w\s.]|_", " ", t)
    t = re.sub(r"(?<!\d)\.|\.(?!\d)", " ", t)
    return " ".join(tok for tok in t.split() if tok not in _ARTICLES)


def _tokens(text: str | None) -> list[str]:
    return normalize(text).split()


def _overlap(pred: str | None, ref: str | None) -> tuple[int, int, int]:
    """(shared tokens counted as a multiset, len(pred tokens), len(ref tokens))."""
    p, r = _tokens(pred), _tokens(ref)
    shared = sum((Counter(p) & Counter(r)).values())
    return shared, len(p), len(r)


def token_f1(pred: str | None, ref: str | None) -> float:
    """Bag-of-words F1 on normalised tokens; order-insensitive, so a reordered phrase keeps most credit.

    Two empty strings agree (1.0); one empty string against a non-empty one scores 0.0 (SQuAD convention).
    """
    shared, n_pred, n_ref = _overlap(pred, ref)
    if n_pred == 0 or n_ref == 0:
        return float(n_pred == n_ref)
    if shared == 0:
        return 0.0
    precision, rec = shared / n_pred, shared / n_ref
    return 2 * precision * rec / (precision + rec)


def recall(pred: str | None, ref: str | None) -> float:
    """Fraction of the reference's tokens that the prediction contains (the open-question "recall" metric).

    Recall alone rewards long answers, so it is reported, never used as the reward on its own.
    """
    shared, n_pred, n_ref = _overlap(pred, ref)
    if n_ref == 0:
        return float(n_pred == 0)
    return shared / n_ref


# ----------------------------------------------------------------------------------------------------------------
# Closed (yes/no) answers
# ----------------------------------------------------------------------------------------------------------------

_YES_WORDS = frozenset({"yes", "yeah", "yep", "yup", "affirmative"})
# Negators scope over the whole clause: "no evidence of effusion present" is a no, "not absent" is a yes.
_NEGATORS = frozenset({
    "no", "not", "nope", "none", "nothing", "never", "without", "neither", "nor", "cannot", "cant", "isnt", "arent",
    "wasnt", "werent", "doesnt", "dont", "didnt", "hasnt", "havent", "wont",
})
_POSITIVE_PREDICATES = frozenset({
    "present", "positive", "true", "correct", "right", "visible", "seen", "evident", "detected", "identified",
    "noted", "observed", "exists", "exist",
})
_NEGATIVE_PREDICATES = frozenset({"absent", "negative", "false", "incorrect", "wrong", "missing", "lacking"})
_HEDGES = frozenset({"maybe", "perhaps", "possibly", "unsure", "uncertain", "unknown", "unclear", "indeterminate"})
_HEDGE_PHRASES = re.compile(r"\b(?:dont know|not sure|cannot (?:be )?(?:tell|determined?|say)|cant (?:tell|say))\b")
_CLAUSE_BREAK = re.compile(r"[.,;:!?\n]+|\b(?:but|however|although|though|whereas)\b", re.IGNORECASE)


def closed_label(text: str | None) -> str | None:
    """Read "yes" or "no" from an answer, or None when it says neither, both, or hedges.

    Words are matched whole after normalisation, so "nodule", "node" and "normal" carry no label. Each clause
    (split at punctuation and "but"/"however") contributes labels: "yes"-words give yes; a predicate such as
    "present"/"positive"/"true" gives yes, or no when the clause is negated ("not present", "no evidence of ...
    present"); "absent"/"negative"/"false" give no (yes when negated); a negator with no predicate ("no", "no
    evidence of mass") gives no. If the labels disagree ("yes no", "yes and no", "yes, it is absent") the answer is
    ambiguous and gets None, which scores as wrong.
    """
    if not text:
        return None
    flat = normalize(text)
    if _HEDGE_PHRASES.search(flat) or _HEDGES.intersection(flat.split()):
        return None
    labels: set[str] = set()
    for clause in _CLAUSE_BREAK.split(text):
        labels |= _clause_labels(_tokens(clause))
    return labels.pop() if len(labels) == 1 else None


def _clause_labels(tokens: list[str]) -> set[str]:
    """Labels asserted by one clause (see `closed_label`)."""
    labels = {"yes"} if _YES_WORDS.intersection(tokens) else set()
    negated = bool(_NEGATORS.intersection(tokens))
    predicates = [t for t in tokens if t in _POSITIVE_PREDICATES or t in _NEGATIVE_PREDICATES]
    for word in predicates:
        affirmative = (word in _POSITIVE_PREDICATES) != negated
        labels.add("yes" if affirmative else "no")
    if negated and not predicates:
        labels.add("no")
    return labels


# ----------------------------------------------------------------------------------------------------------------
# Multiple choice
# ----------------------------------------------------------------------------------------------------------------

_CHOICE_PREFIX = re.compile(
    r"^\s*(?:the\s+)?(?:correct\s+|final\s+|best\s+)?(?:answer|option|choice)(?:\s+is)?\s*[:\-]?\s*", re.IGNORECASE)
# A letter counts as an option letter only when marked: "(B)", "[B]", "B.", "B)", "B:" or the letter alone.
# A bare "a" followed by words is the article, not option A.
_LETTER = re.compile(r"^\s*(?:\(([a-z])\)|\[([a-z])\]|([a-z])(?:[.):]|\s*$))\s*(.*)$", re.IGNORECASE | re.DOTALL)


def choice_index(text: str | None, choices: Sequence[str]) -> int | None:
    """Index of the single option an answer names, or None when it names none or several.

    Accepted: the option text (after normalisation), an option letter ("B", "B.", "(b)", "option B",
    "The answer is B"), a letter followed by its own option text ("B. Pneumonia"), or a sentence containing exactly
    one option text and no negation ("Pneumonia, given the consolidation"). Rejected (None): several letters ("A B C
    D", "A. B."), several option texts, a letter whose trailing text names another option, a negated option ("not
    pneumonia"), and letters beyond the number of choices. `choices` may be any sequence, numpy arrays included.
    """
    choices = _as_list(choices)
    if not text or not text.strip() or not choices:
        return None
    exact = _exact_choice(text, choices)
    if exact is not None:
        return exact
    prefix = _CHOICE_PREFIX.match(text)
    rest = text[prefix.end():] if prefix else text
    letter = _LETTER.match(rest)
    if letter is None:
        return _text_choice(rest, choices)
    index = ord((letter.group(1) or letter.group(2) or letter.group(3)).lower()) - ord("a")
    if index >= len(choices):
        return None
    tail = letter.group(4)
    if not normalize(tail):
        return index
    return index if _text_choice(tail, choices) == index else None


def _as_list(choices: Sequence[str] | None) -> list[str]:
    """Option texts as a plain list: rows read from parquet carry numpy arrays, whose truth value is ambiguous."""
    return [] if choices is None else [str(c) for c in choices]


def _exact_choice(text: str, choices: Sequence[str]) -> int | None:
    """The unique option whose normalised text equals the answer's (None if none or duplicated options)."""
    norm = normalize(text)
    hits = [i for i, c in enumerate(choices) if norm and normalize(c) == norm]
    return hits[0] if len(hits) == 1 else None


def _text_choice(text: str, choices: Sequence[str]) -> int | None:
    """The single option whose text occurs (whole words) in the answer; the longest wins over options it contains."""
    exact = _exact_choice(text, choices)
    if exact is not None:
        return exact
    norm = normalize(text)
    options = [normalize(c) for c in choices]
    hits = [i for i, opt in enumerate(options) if opt and _contains_phrase(norm, opt)]
    hits = [i for i in hits if not any(options[j] != options[i] and _contains_phrase(options[j], options[i])
                                       for j in hits)]
    if len(hits) != 1:
        return None
    leftover = re.sub(rf"(?<!\S){re.escape(options[hits[0]])}(?!\S)", " ", norm).split()
    return None if _NEGATORS.intersection(leftover) else hits[0]


def _contains_phrase(haystack: str, phrase: str) -> bool:
    return re.search(rf"(?<!\S){re.escape(phrase)}(?!\S)", haystack) is not None


# ----------------------------------------------------------------------------------------------------------------
# Scoring
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AnswerScore:
    """How one predicted answer compares with the reference.

    correct: the yes/no label, option index, or normalised open text matches.
    f1, recall: token F1 / reference-token recall for open questions; for closed and multiple choice, where partial
        word overlap means nothing ("no" vs "yes" share no words, "left lung" vs "right lung" share most), both
        equal float(correct).
    score: the reward-ready number: 1.0/0.0 for closed and multiple choice; open: 1.0 on exact match, else f1.
    """

    correct: bool
    f1: float
    recall: float
    score: float


_WRONG = AnswerScore(correct=False, f1=0.0, recall=0.0, score=0.0)


def score_answer(pred: str | None, reference: str, answer_type: str, choices: Sequence[str] = ()) -> AnswerScore:
    """Score one predicted answer; see the module docstring for the rules per answer type.

    `choices` may be a list, a tuple, a numpy array (as read from parquet) or None.
    A None or blank prediction is wrong with zeros. Raises ValueError for an unknown answer_type, for a multiple
    choice row without choices, or whose reference is not one of its choices (a data error worth stopping for).
    A "closed" row whose reference is not yes/no (e.g. SLAKE's "liver or spleen?") falls back to normalised exact
    match rather than crashing a training run.
    """
    if answer_type not in ANSWER_TYPES:
        raise ValueError(f"unknown answer_type {answer_type!r}; expected one of {ANSWER_TYPES}")
    choices = _as_list(choices)
    if answer_type == "multiple_choice":
        ref_index = _reference_index(reference, choices)
    if pred is None or not pred.strip():
        return _WRONG
    if answer_type == "closed":
        return _binary(_closed_correct(pred, reference))
    if answer_type == "multiple_choice":
        return _binary(choice_index(pred, choices) == ref_index)
    return _score_open(pred, reference)


def _binary(correct: bool) -> AnswerScore:
    value = float(correct)
    return AnswerScore(correct=correct, f1=value, recall=value, score=value)


def _closed_correct(pred: str, reference: str) -> bool:
    ref_label = closed_label(reference)
    if ref_label is None:
        return bool(normalize(pred)) and normalize(pred) == normalize(reference)
    return closed_label(pred) == ref_label


def _reference_index(reference: str, choices: Sequence[str]) -> int:
    """The reference option's index: by its text (the schema), else a letter; ValueError when it is neither."""
    if not choices:
        raise ValueError(f"multiple_choice reference {reference!r} has no choices")
    index = _exact_choice(reference, choices)
    if index is None:
        index = choice_index(reference, choices)
    if index is None:
        raise ValueError(f"multiple_choice reference {reference!r} is not one of the choices {list(choices)!r}")
    return index


def _score_open(pred: str, reference: str) -> AnswerScore:
    correct = normalize(pred) == normalize(reference)
    f1 = 1.0 if correct else token_f1(pred, reference)
    rec = 1.0 if correct else recall(pred, reference)
    return AnswerScore(correct=correct, f1=f1, recall=rec, score=1.0 if correct else f1)
