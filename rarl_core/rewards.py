"""Batch reward functions for TRL's GRPOTrainer: format, accuracy, reasoning quality and the truth of the stated cue.

RARL's reward "jointly considers diagnostic accuracy and reasoning quality"; the paper publishes no formula, so the
rules below are our documented choice. Each function has TRL's signature
`f(prompts=..., completions=..., completion_ids=..., **dataset_columns) -> list[float]`, accepts completions as plain
strings or as conversational message lists (`[{"role": "assistant", "content": ...}]`), and is named for TRL's
per-function logging (`rewards/format_reward/mean`, ...); REWARD_FUNCS names them as grpo.variants weights them.
All functions are pure and raise ValueError when per-row columns differ in length.

format_reward, per completion:
    1.0  well formed (one think block, then one answer block, only whitespace outside) with both blocks non-empty;
    0.5  exactly one complete think block and one complete answer block, but text outside them, answer before
         think, or an empty block;
    0.0  anything else: a missing or unclosed block, or any tag repeated ("<answer>" twice scores 0, so the model
         cannot hedge with several answers).

accuracy_reward: `answers.score_answer(parsed_answer, reference, answer_type, choices).score`: 1/0 for closed and
    multiple choice, exact-or-token-F1 for open. An answer naming every option, or saying "yes and no", resolves to
    no option/label and scores 0.

cue_reward: the share of the row's true reasoning (its `reasoning` column, true by construction in the starter set)
    that the think states, its conclusion left out: evidence, not form (see its docstring).

reasoning_reward: a fast heuristic in [0, 1]; 0.0 when the think is missing or empty, or when its conclusion
    contradicts the completion's own answer (reasoning that argues against the answer given is worse than none:
    it is exactly the think/answer disconnect RARL sets out to remove); else the mean of five checks:
    present     1.0 (the think exists and is non-empty);
    length      1.0 for 3..200 words, 0.0 below 3 words, decaying linearly to 0.0 at 400 words;
    grounding   the fraction of the question's content words (up to 2 needed) that the think mentions; a think that
                only uses generic visual words ("the image shows ...") gets 0.25; with no question, visual words
                alone give 1.0;
    novelty     distinct / total word trigrams (a looping think scores near 0);
    agreement   the think's conclusion (text after its last "so"/"therefore"/"thus"/"hence"/"the answer is", else its
                last sentence) against THIS completion's own answer: closed questions 1.0 when the conclusion states
                the same yes/no, 0.5 when it states none (contradiction: see above); multiple choice: 1.0 when
                the conclusion names the same option (letter or text), a different option is a contradiction, else
                as open; open: the fraction of the answer's content words (the option text for a letter) found in
                the conclusion.
    Why a constant generic think cannot farm it: agreement is checked against each completion's own answer and
    grounding against each row's question. A fixed think that concludes nothing ("The image shows the findings, so
    the answer is as follows.") scores 0.75 (present 1, length 1, grounding 0.25, novelty 1, agreement 0.5); a fixed
    think that concludes "no" scores 0 whenever the answer is "yes" and 0.85 with "no", the "constant think plus
    'no'" collapse seen in our CPU runs, which accuracy_reward then pays only on the rows whose truth is "no"; a
    think that names the question's content words and concludes its own answer scores 1.0. Within a GRPO group
    (one question) a constant think earns a constant score, hence zero advantage: only thinks that ground and agree
    better than their siblings are pushed up. It is still a heuristic of coherence, not of medical truth; the
    reference answer is deliberately not used (correctness is accuracy_reward's job), so weight it accordingly.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from rarl_core.answer_text import answer_tokens
from rarl_core.answers import (
    STOPWORDS,
    choice_index,
    closed_label,
    normalize,
    parse_completion,
    score_answer,
    singular,
)
from rarl_core.config import REWARD_NAMES


MIN_THINK_WORDS = 3
MAX_THINK_WORDS = 200
LENGTH_FADE_WORDS = 200  # words past MAX_THINK_WORDS over which the length check falls from 1 to 0
QUESTION_WORDS_NEEDED = 2
VISUAL_ONLY_CREDIT = 0.25
NGRAM = 3

_VISUAL_WORDS = frozenset("""
image images imaging picture photo photograph scan scans slice slices view views shows show shown showing
appears appear appearance seen see visible visualized demonstrates demonstrate reveals reveal depicts depict
displays display region area intensity contrast bright dark hyperintense hypointense hyperdense hypodense
opacity density signal structure structures
""".split())

_CONCLUSION_MARKER = re.compile(
    r"\b(?:so|therefore|thus|hence|consequently|in conclusion|this means|which means|the answer is)\b", re.IGNORECASE)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


# ----------------------------------------------------------------------------------------------------------------
# Input handling
# ----------------------------------------------------------------------------------------------------------------


def completion_text(completion: Any) -> str:
    """The generated text of one completion: a string, or the assistant content of a conversational message list.

    Content given as typed parts (`[{"type": "text", "text": ...}]`) is joined; None becomes "".
    """
    if completion is None:
        return ""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Mapping):
        completion = [completion]
    parts = [_content_text(m.get("content")) for m in completion
             if isinstance(m, Mapping) and m.get("role", "assistant") == "assistant"]
    return "".join(parts)


def _content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(p.get("text") or "" for p in content if isinstance(p, Mapping) and p.get("type", "text") == "text")


def _check_lengths(**columns: Sequence[Any] | None) -> int:
    """The common length of the given per-row columns (None columns are skipped); ValueError on a mismatch."""
    lengths = {name: len(col) for name, col in columns.items() if col is not None}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"per-row columns differ in length: {lengths}")
    return next(iter(lengths.values()), 0)


def _choices_column(choices: Sequence[Any] | None, n: int) -> list[list[str]]:
    """Per-row option lists; None (no such column) or None rows become empty lists."""
    if choices is None:
        return [[] for _ in range(n)]
    return [list(c) if c is not None else [] for c in choices]


def _optional_column(column: Sequence[Any] | None, n: int) -> list[Any]:
    return [None] * n if column is None else list(column)


# ----------------------------------------------------------------------------------------------------------------
# Format and accuracy
# ----------------------------------------------------------------------------------------------------------------


def format_reward(completions: Sequence[Any], **kwargs: Any) -> list[float]:
    """1.0 / 0.5 / 0.0 for the trained `<think>..</think><answer>..</answer>` format (rules in the module doc)."""
    return [_format_score(completion_text(c)) for c in completions]


def _format_score(text: str) -> float:
    parsed = parse_completion(text)
    if parsed.well_formed and parsed.think and parsed.answer:
        return 1.0
    return 0.5 if _single_separate_blocks(text) else 0.0


def _single_separate_blocks(text: str) -> bool:
    """Each of the four tags exactly once, each block closed after it opens, and the two blocks not nested."""
    low = text.lower()
    tags = ("<think>", "</think>", "<answer>", "</answer>")
    if any(low.count(tag) != 1 for tag in tags):
        return False
    t_open, t_close, a_open, a_close = (low.index(tag) for tag in tags)
    return t_open < t_close and a_open < a_close and (t_close < a_open or a_close < t_open)


def accuracy_reward(completions: Sequence[Any], answer: Sequence[str], answer_type: Sequence[str],
                    choices: Sequence[Sequence[str] | None] | None = None, **kwargs: Any) -> list[float]:
    """`score_answer(...).score` of each completion's parsed answer against the row's reference."""
    n = _check_lengths(completions=completions, answer=answer, answer_type=answer_type, choices=choices)
    options = _choices_column(choices, n)
    return [score_answer(parse_completion(completion_text(c)).answer, ref, kind, opts).score
            for c, ref, kind, opts in zip(completions, answer, answer_type, options)]


# ----------------------------------------------------------------------------------------------------------------
# Reasoning
# ----------------------------------------------------------------------------------------------------------------


def reasoning_reward(completions: Sequence[Any], question: Sequence[str | None] | None = None,
                     answer: Sequence[str] | None = None, **kwargs: Any) -> list[float]:
    """Heuristic reasoning quality in [0, 1] (checks in the module doc).

    `answer` (the reference, passed by TRL as a dataset column) is accepted and ignored on purpose; `answer_type`
    and `choices` are read from kwargs when present (without answer_type, an answer that reads as yes/no is
    treated as closed).
    """
    answer_type, choices = kwargs.get("answer_type"), kwargs.get("choices")
    n = _check_lengths(completions=completions, question=question, answer=answer, answer_type=answer_type,
                       choices=choices)
    questions, kinds = _optional_column(question, n), _optional_column(answer_type, n)
    options = _choices_column(choices, n)
    return [_reasoning_score(completion_text(c), q, k, o) for c, q, k, o in zip(completions, questions, kinds, options)]


def _reasoning_score(text: str, question: str | None, answer_type: str | None, choices: list[str]) -> float:
    parsed = parse_completion(text)
    if not parsed.think:
        return 0.0
    raw = normalize(parsed.think).split()
    words = [singular(t) for t in raw]
    agreement = _agreement_score(parsed.think, parsed.answer, answer_type, choices)
    if agreement is None:
        return 0.0
    checks = (
        1.0,
        _length_score(len(parsed.think.split())),
        _grounding_score(set(words), _mentions_visual(raw), question),
        _novelty_score(words),
        agreement,
    )
    return sum(checks) / len(checks)


def _content_tokens(text: str | None, keep_all: bool = False) -> list[str]:
    """Normalised, plural-folded tokens; without keep_all, stopwords and generic visual words are dropped first."""
    tokens = normalize(text).split()
    if not keep_all:
        tokens = [t for t in tokens if t not in STOPWORDS and not _is_visual(t)]
    return [singular(t) for t in tokens]


def _is_visual(token: str) -> bool:
    return token in _VISUAL_WORDS or singular(token) in _VISUAL_WORDS


def _mentions_visual(tokens: list[str]) -> bool:
    return any(_is_visual(t) for t in tokens)


def _length_score(n_words: int) -> float:
    if n_words < MIN_THINK_WORDS:
        return 0.0
    if n_words <= MAX_THINK_WORDS:
        return 1.0
    return max(0.0, 1.0 - (n_words - MAX_THINK_WORDS) / LENGTH_FADE_WORDS)


def _grounding_score(think_tokens: set[str], visual: bool, question: str | None) -> float:
    asked = set(_content_tokens(question))
    if not asked:
        return float(visual)
    mentioned = len(asked & think_tokens) / min(len(asked), QUESTION_WORDS_NEEDED)
    return max(min(1.0, mentioned), VISUAL_ONLY_CREDIT * visual)


def _novelty_score(tokens: list[str]) -> float:
    grams = [tuple(tokens[i:i + NGRAM]) for i in range(len(tokens) - NGRAM + 1)]
    return len(set(grams)) / len(grams) if grams else 1.0


def think_conclusion(think: str) -> str:
    """The part of a think that states its conclusion: after the last conclusion marker, else the last sentence."""
    markers = list(_CONCLUSION_MARKER.finditer(think))
    if markers:
        return think[markers[-1].end():].strip()
    sentences = [s for s in _SENTENCE_END.split(think.strip()) if s.strip()]
    return sentences[-1].strip() if sentences else ""


def _agreement_score(think: str, answer: str | None, answer_type: str | None,
                     choices: list[str]) -> float | None:
    """How far the think's conclusion supports THIS completion's answer, in [0, 1]; None when it contradicts it."""
    if not answer:
        return 0.0
    conclusion = think_conclusion(think)
    if answer_type == "closed" or (answer_type is None and not choices and closed_label(answer) is not None):
        return _closed_agreement(conclusion, answer)
    if answer_type == "multiple_choice" and choices:
        return _choice_agreement(conclusion, answer, choices)
    return _word_agreement(conclusion, answer)


def _closed_agreement(conclusion: str, answer: str) -> float | None:
    said = closed_label(answer)
    if said is None:
        return 0.0
    concluded = closed_label(conclusion)
    if concluded is None:
        return 0.5
    return 1.0 if concluded == said else None


def _choice_agreement(conclusion: str, answer: str, choices: list[str]) -> float | None:
    said = choice_index(answer, choices)
    if said is None:
        return _word_agreement(conclusion, answer)
    concluded = choice_index(conclusion, choices)
    if concluded is None:
        return _word_agreement(conclusion, choices[said])
    return 1.0 if concluded == said else None


def _word_agreement(conclusion: str, answer: str) -> float:
    wanted = set(_content_tokens(answer)) or set(_content_tokens(answer, keep_all=True))
    if not wanted:
        return 0.0
    return len(wanted & set(_content_tokens(conclusion, keep_all=True))) / len(wanted)


# ----------------------------------------------------------------------------------------------------------------
# Cue: the think's stated evidence against the truth
# ----------------------------------------------------------------------------------------------------------------


def cue_reward(completions: Sequence[Any], reasoning: Sequence[str | None] | None = None,
               **kwargs: Any) -> list[float | None]:
    """Does the think state the true visual cue? The share of the row's reference reasoning's content words (its
    `reasoning` column, true by construction in the starter set: "one bright round finding in the upper left, so
    ...") that the completion's think contains, in canonical form (numbers as digits, plurals folded); the
    reference's conclusion after its last "so" is left out, so that repeating the answer earns nothing. 0.0 without
    a think; None (TRL skips the row) where the row has no reference reasoning. Unlike `reasoning_reward`, which
    judges the think's form against its own answer, this pays only for evidence that is true of the image.
    """
    n = _check_lengths(completions=completions, reasoning=reasoning)
    references = _optional_column(reasoning, n)
    out: list[float | None] = []
    for completion, reference in zip(completions, references):
        wanted = {t for t in answer_tokens(_evidence(reference)) if t not in STOPWORDS}
        if not wanted:
            out.append(None)
            continue
        think = parse_completion(completion_text(completion)).think
        out.append(len(wanted & set(answer_tokens(think))) / len(wanted) if think else 0.0)
    return out


def _evidence(reasoning: str | None) -> str:
    """A reference reasoning without its conclusion: the text before its last conclusion marker."""
    if not reasoning:
        return ""
    markers = list(_CONCLUSION_MARKER.finditer(reasoning))
    return reasoning[: markers[-1].start()] if markers else reasoning


# ----------------------------------------------------------------------------------------------------------------
# By name
# ----------------------------------------------------------------------------------------------------------------

# The rewards a GRPO variant weights (grpo.variants in params.yaml), by the names config.REWARD_NAMES declares.
REWARD_FUNCS = {"format": format_reward, "accuracy": accuracy_reward, "reasoning": reasoning_reward,
                "cue": cue_reward}
if tuple(REWARD_FUNCS) != REWARD_NAMES:  # the params schema and the functions must name the same rewards
    raise ImportError(f"rarl_core.rewards defines {tuple(REWARD_FUNCS)}, rarl_core.config declares {REWARD_NAMES}")
