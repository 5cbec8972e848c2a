"""Parse `<think>...</think><answer>...</answer>` completions and score answers against the reference.

Everything here is pure string work (no torch, no model), so the same code scores GRPO rollouts during training,
greedy predictions during evaluation and the judge's rubric: a reward, a metric and a judge can never disagree
about what the answer was or whether it was right. The word tables (stopwords, plurals, spelling, numbers,
closed-set alternatives) live in `answer_text.py`.

Two readings of a completion:
- `parse_completion` (the rewards): untagged text is never an answer, so a policy cannot skip the format and be paid.
- `final_answer` (evaluation, the judge): a reply without answer tags is read as the answer once its think block is
  removed, since a base model was never taught the tags and the question is whether it knows, not whether it formats.

Scoring rules, chosen to agree with a careful reader and to be hard to game under RL:
- closed, reference yes/no: compare yes/no *labels*, read with whole-word matching and negation scope ("no" inside
  "nodule" is not a no; "not present" is a no). A leading "yes"/"no" is the answer and a later clause about some
  other finding does not undo it ("Yes, no consolidation is seen." is a yes); saying both, or hedging, is wrong.
- closed, reference a word (SLAKE's "left or right?", "liver or spleen?"): the reply must name that word, unnegated,
  and not also name an alternative to it ("left and right" is wrong for "left"; "The lesion is on the left." right).
- multiple choice compares option *indices*; a letter ("B", "(b)", "**B**", "I think it is B", "B is correct") and
  the option text both count, but an answer naming several options, or a letter whose text names another option
  ("A. MRI" when A is CT), resolves to no index and is wrong.
- open: exact match of canonical tokens (numbers, plurals and British spelling folded) scores 1.0, anything else
  earns its token F1 (order-insensitive), so stuffing extra words costs precision.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from rarl_core.answer_text import (  # the word tables; STOPWORDS, normalize and singular are re-exported
    ANAPHORA, CONJUNCTIONS, NEGATIVE_PREDICATES, NEGATORS, NO_WORDS, POLAR_REFERENCES, POSITIVE_PREDICATES, STOPWORDS,
    VERDICT_WORDS, YES_WORDS, answer_phrase, answer_tokens, clauses, has_phrase, hedged, names_closed_word, normalize,
    singular,
)

__all__ = [
    "ANSWER_TYPES", "STOPWORDS", "AnswerScore", "ParsedCompletion", "choice_index", "closed_label", "final_answer",
    "normalize", "parse_completion", "recall", "reference_label", "score_answer", "singular", "token_f1",
]

ANSWER_TYPES = ("closed", "open", "multiple_choice")

# ----------------------------------------------------------------------------------------------------------------
# Completion parsing
# ----------------------------------------------------------------------------------------------------------------

_THINK_BLOCK = re.compile(r"<think>(.*?)</think>", re.IGNORECASE | re.DOTALL)
_ANSWER_BLOCK = re.compile(r"<answer>(.*?)</answer>", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"</?(?:think|answer)>", re.IGNORECASE)
_ANSWER_OPEN = re.compile(r"<answer>", re.IGNORECASE)
_THINK_OPEN = re.compile(r"<think>", re.IGNORECASE)
_THINK_CLOSE = re.compile(r"</think>", re.IGNORECASE)


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
    """Split a completion into think, answer and a well-formedness flag (the strict reading the rewards use).

    The answer is read leniently so that accuracy is scored even when the format slips (the format reward is what
    punishes the slip):
    1. the content of the LAST complete `<answer>...</answer>` block (the model's final word), with any tag left
       inside it removed (`<answer><answer>heart</answer></answer>` answers "heart");
    2. else, for output cut off mid-answer (`...<answer>yes` at the token limit), the text after the last `<answer>`;
    3. else None: untagged text is never taken as an answer, so a policy cannot skip the format and still be paid.
    Empty answers become None. Tags are matched case-insensitively.
    """
    if not text:
        return ParsedCompletion(think=None, answer=None, well_formed=False)
    thinks = list(_THINK_BLOCK.finditer(text))
    answers = list(_ANSWER_BLOCK.finditer(text))
    think = thinks[0].group(1).strip() if thinks else None
    return ParsedCompletion(think=think, answer=_tagged_answer(text, answers),
                            well_formed=_is_well_formed(text, thinks, answers))


def final_answer(text: str | None) -> str | None:
    """The answer a careful reader takes from a reply (evaluation and the judge): `parse_completion`'s answer when
    the reply has answer tags, else the reply itself with its reasoning removed.

    Removed as reasoning: every complete think block, everything before a stray `</think>` (templates that open the
    think themselves) and everything after an unclosed `<think>` (cut off while thinking: no answer). Stray tags
    are dropped. So "Nodule < 5 mm" answers "Nodule < 5 mm" and `<think>...</think> yes` answers "yes".
    """
    tagged = parse_completion(text).answer
    if tagged is not None or not text:
        return tagged
    body = _THINK_BLOCK.sub(" ", text)
    closes = list(_THINK_CLOSE.finditer(body))
    if closes:
        body = body[closes[-1].end():]
    opened = _THINK_OPEN.search(body)
    if opened:
        body = body[:opened.start()]
    return _TAG.sub(" ", body).strip() or None


def _tagged_answer(text: str, answers: list[re.Match[str]]) -> str | None:
    """Last complete answer block, else the tail after an unclosed `<answer>`, else None; inner tags removed."""
    if answers:
        candidate = answers[-1].group(1)
    else:
        opens = list(_ANSWER_OPEN.finditer(text))
        if not opens:
            return None
        candidate = text[opens[-1].end():]
    return _TAG.sub(" ", candidate).strip() or None


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
# Token overlap (open answers)
# ----------------------------------------------------------------------------------------------------------------


def _overlap(pred: str | None, ref: str | None) -> tuple[int, int, int]:
    """(shared canonical tokens counted as a multiset, len(pred tokens), len(ref tokens))."""
    p, r = answer_tokens(pred), answer_tokens(ref)
    shared = sum((Counter(p) & Counter(r)).values())
    return shared, len(p), len(r)


def token_f1(pred: str | None, ref: str | None) -> float:
    """Bag-of-words F1 on canonical tokens (`answer_text.answer_tokens`); order-insensitive, so a reordered phrase
    keeps most credit. Two empty strings agree (1.0); one empty against a non-empty one is 0.0 (SQuAD convention)."""
    shared, n_pred, n_ref = _overlap(pred, ref)
    if n_pred == 0 or n_ref == 0:
        return float(n_pred == n_ref)
    if shared == 0:
        return 0.0
    precision, rec = shared / n_pred, shared / n_ref
    return 2 * precision * rec / (precision + rec)


def recall(pred: str | None, ref: str | None) -> float:
    """Fraction of the reference's canonical tokens that the prediction contains (the open-question "recall").

    Recall alone rewards long answers, so it is reported, never used as the reward on its own.
    """
    shared, n_pred, n_ref = _overlap(pred, ref)
    if n_ref == 0:
        return float(n_pred == 0)
    return shared / n_ref


# ----------------------------------------------------------------------------------------------------------------
# Closed answers
# ----------------------------------------------------------------------------------------------------------------


def closed_label(text: str | None) -> str | None:
    """Read "yes" or "no" from an answer, or None when it says neither, both, or hedges.

    Words are matched whole after normalisation, so "nodule", "node" and "normal" carry no label. Each clause
    contributes labels: "yes"-words give yes; a predicate such as "present"/"positive" gives yes, or no when the
    clause is negated ("not present", "no evidence of ... present"); "absent"/"negative" give no (yes when negated);
    "right"/"correct"/"true" (and "wrong"/"false") count only when nothing follows them, so "the right lobe" says
    nothing; a negator with no predicate ("no", "no evidence of mass") gives no.
    A reply that opens with "yes" or "no" is that answer; a later clause overrules it only when it is about the
    asked finding (it/this/they, a bare predicate, a bare "no") and disagrees, so "Yes, it is absent" and "Yes,
    no." are ambiguous (None) while "Yes, no consolidation is seen." and "No, it is in the right lobe." are not.
    Without an opening yes/no, clauses whose labels disagree ("present but negative", "yes and no") give None.
    """
    if not text or hedged(text):
        return None
    parts = clauses(text)
    if not parts:
        return None
    first = _clause_labels(parts[0])
    if parts[0][0] in YES_WORDS | NO_WORDS and len(first) == 1:
        lead = next(iter(first))
        overruled = any(_about_the_question(c) and _clause_labels(c) - {lead} for c in parts[1:])
        return None if overruled else lead
    labels = set().union(*(_clause_labels(c) for c in parts))
    return labels.pop() if len(labels) == 1 else None


def _predicate(tokens: list[str], i: int) -> str | None:
    """The polarity of tokens[i] as a predicate ("present" -> yes), or None when it is not one here."""
    word = tokens[i]
    if word in POSITIVE_PREDICATES:
        return "yes"
    if word in NEGATIVE_PREDICATES:
        return "no"
    if word in VERDICT_WORDS and (i + 1 == len(tokens) or tokens[i + 1] in STOPWORDS):
        return VERDICT_WORDS[word]
    return None


def _clause_labels(tokens: list[str]) -> set[str]:
    """Labels asserted by one clause (see `closed_label`)."""
    labels = {"yes"} if YES_WORDS.intersection(tokens) else set()
    negated = bool(NEGATORS.intersection(tokens))
    predicates = [p for i in range(len(tokens)) if (p := _predicate(tokens, i))]
    for polarity in predicates:
        labels.add("yes" if (polarity == "yes") != negated else "no")
    if negated and not predicates:
        labels.add("no")
    return labels


def _about_the_question(tokens: list[str]) -> bool:
    """Does a clause after an opening yes/no speak of the asked finding (so that it may contradict the opening)?

    Yes for "it/this/they ...", a bare predicate or negation ("absent", "not present") and a bare answer word
    ("no", "yes it is"); no for a clause about another finding ("no consolidation is seen", "the heart is ...").
    """
    while tokens and tokens[0] in CONJUNCTIONS:
        tokens = tokens[1:]
    if not tokens:
        return False
    head, rest = tokens[0], tokens[1:]
    if head in ANAPHORA or _predicate(tokens, 0):
        return True
    if head in YES_WORDS | NO_WORDS | {"without"}:
        return not rest or rest[0] in STOPWORDS
    return head in NEGATORS


def reference_label(reference: str | None) -> str | None:
    """"yes"/"no" when a closed reference is a yes/no answer ("Yes", "no", "No, it is not", or one polar word such
    as "absent"); None when it is a word to be named ("left", "Right", "liver", "MRI"). "Right" is a side here,
    never a "correct": that reading is for predictions only, and only when the reference is yes/no."""
    tokens = normalize(reference).split()
    if not tokens:
        return None
    if tokens[0] in YES_WORDS:
        return "yes"
    if tokens[0] in NO_WORDS:
        return "no"
    return POLAR_REFERENCES.get(tokens[0]) if len(tokens) == 1 else None


# ----------------------------------------------------------------------------------------------------------------
# Multiple choice
# ----------------------------------------------------------------------------------------------------------------

_MARKDOWN = re.compile(r"[*`#]+|(?<!\w)_+|_+(?!\w)")
_LEAD_IN = re.compile(
    r"^\s*(?:(?:i think|i believe|i would say|i'd say|so|thus|therefore|hence)[,:]?\s+)?"
    r"(?:(?:it is|it's|it must be|this is|that is)\s+)?"
    r"(?:(?:the\s+)?(?:correct\s+|final\s+|best\s+|right\s+)?(?:answer|option|choice)(?:\s+is)?\s*[:\-]?\s*)?",
    re.IGNORECASE)
_VERDICT_TAIL = re.compile(
    r"\s+(?:is|would be)\s+(?:the\s+)?(?:(?:correct|right|best)(?:\s+(?:answer|option|choice))?|answer|option|choice)"
    r"\s*[.!]*\s*$", re.IGNORECASE)
# A letter counts as an option letter only when marked: "(B)", "[B]", "B.", "B)", "B:" or the letter alone.
# A bare "a" followed by words is the article, not option A.
_LETTER = re.compile(r"^\s*(?:\(([a-z])\)|\[([a-z])\]|([a-z])(?:[.):]|\s*$))\s*(.*)$", re.IGNORECASE | re.DOTALL)


def choice_index(text: str | None, choices: Sequence[str]) -> int | None:
    """Index of the single option an answer names, or None when it names none or several.

    Accepted: the option text (canonical tokens), an option letter ("B", "B.", "(b)", "**B**", "option B", "The
    answer is B", "I think it is B", "B is correct"), a letter followed by its own option text ("B. Pneumonia"), or
    a sentence containing exactly one option text and no negation ("Pneumonia, given the consolidation"). The letter
    is read before any article is dropped, so "A. MRI" is option A with the text of another option: None.
    Rejected (None): several letters ("A B C D", "A. B."), several option texts, a letter whose trailing text names
    another option, a negated option ("not pneumonia"), letters beyond the number of choices.
    `choices` may be any sequence, numpy arrays included.
    """
    choices = _as_list(choices)
    if not text or not text.strip() or not choices:
        return None
    text = _MARKDOWN.sub("", text)
    if not _LETTER.match(text):
        exact = _exact_choice(text, choices)
        if exact is not None:
            return exact
    rest = _VERDICT_TAIL.sub("", _LEAD_IN.sub("", text, count=1))
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
    """The unique option whose canonical text equals the answer's (None if none or duplicated options)."""
    phrase = answer_phrase(text)
    hits = [i for i, c in enumerate(choices) if phrase and answer_phrase(c) == phrase]
    return hits[0] if len(hits) == 1 else None


def _text_choice(text: str, choices: Sequence[str]) -> int | None:
    """The single option whose text occurs (whole words) in the answer; the longest wins over options it contains."""
    exact = _exact_choice(text, choices)
    if exact is not None:
        return exact
    phrase = answer_phrase(text)
    options = [answer_phrase(c) for c in choices]
    hits = [i for i, opt in enumerate(options) if has_phrase(phrase, opt)]
    hits = [i for i in hits if not any(options[j] != options[i] and has_phrase(options[j], options[i])
                                       for j in hits)]
    if len(hits) != 1:
        return None
    leftover = re.sub(rf"(?<!\S){re.escape(options[hits[0]])}(?!\S)", " ", phrase).split()
    return None if NEGATORS.intersection(leftover) else hits[0]


# ----------------------------------------------------------------------------------------------------------------
# Scoring
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AnswerScore:
    """How one predicted answer compares with the reference.

    correct: the yes/no label, the closed word, the option index, or the canonical open text matches.
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
    """
    if answer_type not in ANSWER_TYPES:
        raise ValueError(f"unknown answer_type {answer_type!r}; expected one of {ANSWER_TYPES}")
    choices = _as_list(choices)
    if answer_type == "multiple_choice":
        ref_index = _reference_index(reference, choices)
    if pred is None or not pred.strip():
        return _WRONG
    if answer_type == "closed":
        ref_label = reference_label(reference)
        correct = closed_label(pred) == ref_label if ref_label else names_closed_word(pred, reference)
        return _binary(correct)
    if answer_type == "multiple_choice":
        return _binary(choice_index(pred, choices) == ref_index)
    return _score_open(pred, reference)


def _binary(correct: bool) -> AnswerScore:
    value = float(correct)
    return AnswerScore(correct=correct, f1=value, recall=value, score=value)


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
    """Exact canonical match, else token F1, after an answer phrase ("The answer is ...", "I think it is ...") is
    dropped: the phrase frames the answer, it is not part of it."""
    pred = _LEAD_IN.sub("", pred, count=1)
    pred_tokens = answer_tokens(pred)
    correct = bool(pred_tokens) and pred_tokens == answer_tokens(reference)
    f1 = 1.0 if correct else token_f1(pred, reference)
    rec = 1.0 if correct else recall(pred, reference)
    return AnswerScore(correct=correct, f1=f1, recall=rec, score=1.0 if correct else f1)
