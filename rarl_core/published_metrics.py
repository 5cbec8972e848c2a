"""Closed/open VQA metrics as the papers users compare against compute them, each labelled with its definition.

Our own headline, "rarl/accuracy (all types pooled)" (key `POOLED_ACCURACY`), is the share of all questions
`answers.score_answer` counts correct (closed, open exact and multiple choice together), which no published table
reports. The definitions here
let a VQA-RAD/SLAKE/PathVQA run be read beside LLaVA-Med's, MultiMedEval's (MedGemma and others report with it) and
MedEvalKit's tables. Each is re-implemented from its source (named in its docstring), not imported: the scripts
are not packages, and each needs a different stack (nltk, torchmetrics, rouge) for a few lines of counting.

What every definition reads: the reply of each record as a model without a reasoning format would have given it,
`answers.final_answer(record["completion"])` (the answer block, or the untagged reply with its think removed), the
whole of it, never a label parsed from it. The think is left out on purpose: these rules test substrings and word
recall, so a paragraph of reasoning (which nearly always contains "no", as in "normal" or "not") would decide them.

A record needs `answer` (the reference), `answer_type` ("closed" / "open" / "multiple_choice"), `completion` and,
for the pooled accuracy, `correct`. Multiple-choice rows are outside these definitions and skipped. A metric whose
rows are absent is omitted, never 0.
"""

from __future__ import annotations

import math
import re
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from fractions import Fraction

from rarl_core.answers import ANSWER_TYPES, final_answer

# Keys are valid MLflow metric names (slashes, word characters, ".", "-", spaces), logged as
# eval/<dataset>/<prompt>/<key>; the pooled accuracy's label for tables says what it is.
POOLED_ACCURACY = "rarl/accuracy_pooled"
POOLED_ACCURACY_LABEL = "rarl/accuracy (all types pooled)"

DEFINITIONS: dict[str, str] = {
    "rarl": "Our scorer (rarl_core.answers): closed by yes/no label or the named closed word, open by exact "
            "canonical match, multiple choice by option index, pooled over every question. No paper reports it.",
    "llava_med": "LLaVA-Med run_eval.py after its Dec 2023 fix: closed = the normalised reply contains 'yes' or 'no' "
                 "as a substring and contains the reference, over every CLOSED question; open = mean recall of the "
                 "reference's words in the whole reply (what LLaVA-Med and its followers report for open sets).",
    "multimedeval": "MultiMedEval VQA: questions are closed when the reference is yes/no (SLAKE's 'left' is open "
                    "here); closed correct when >= 40% of the reference words, plus 'not' for 'no', are in the "
                    "reply; open recall of reference words, open accuracy = recall >= 0.75; BLEU-1 and F1 over "
                    "all questions. The table MedGemma-style reports use.",
    "medevalkit": "MedEvalKit: the \\boxed{} or <answer> text; closed yes/no correct when exactly one of 'yes'/'no' "
                  "occurs (substrings) and it is the reference, other closed references by exact match; open: "
                  "exact string match (its accuracy), token-set F1, BLEU-1/4 (nltk) and ROUGE-1/2/L (rouge).",
}


def published_metrics(records: Sequence[Mapping]) -> dict[str, float]:
    """Every definition's metrics, keyed `<definition>/<metric>` (see `DEFINITIONS` for the sentence on each),
    plus the pooled accuracy under `POOLED_ACCURACY` when the records carry `correct`."""
    rows = [_row(i, r) for i, r in enumerate(records)]
    out: dict[str, float] = {}
    if rows and all("correct" in r for r in records):
        out[POOLED_ACCURACY] = _mean(bool(r["correct"]) for r in records)
    for prefix, metrics in (("llava_med", llava_med_metrics), ("multimedeval", multimedeval_metrics),
                            ("medevalkit", medevalkit_metrics)):
        out |= {f"{prefix}/{k}": v for k, v in metrics(rows).items()}
    return out


def _row(i: int, record: Mapping) -> tuple[str, str, str]:
    """(answer_type, reference, reply) of one record; ValueError naming the row when a field is missing or bad."""
    missing = [k for k in ("answer", "answer_type", "completion") if k not in record]
    if missing:
        raise ValueError(f"record {i} (id {record.get('id')!r}) lacks {missing}: pass evaluation prediction records")
    if record["answer_type"] not in ANSWER_TYPES:
        raise ValueError(f"record {i}: unknown answer_type {record['answer_type']!r}; expected one of {ANSWER_TYPES}")
    return record["answer_type"], str(record["answer"]), final_answer(record["completion"] or "") or ""


def _mean(values) -> float:
    values = [float(v) for v in values]
    return sum(values) / len(values)


def _means(columns: dict[str, list[float]]) -> dict[str, float]:
    return {key: _mean(values) for key, values in columns.items() if values}


# ----------------------------------------------------------------------------------------------------------------
# The standard VQA normaliser (VQA eval API; LLaVA-Med eval_metrics/glossary.py normalize_word, MultiMedEval
# utils.py clean_str)
# ----------------------------------------------------------------------------------------------------------------

_PUNCT = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!")
_COMMA_BETWEEN_DIGITS = re.compile(r"(\d)(,)(\d)")
# The scripts write (?!<=\d)(\.)(?!\d): a typo for a lookbehind, so ANY period not followed by a digit goes; and
# they pass re.UNICODE (= 32) where re.sub takes `count`, so only the first 32 such periods go.
_PERIOD = re.compile(r"\.(?!\d)")
_PERIOD_COUNT = int(re.UNICODE)
_NUMBER_WORDS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
                 "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
# The scripts' contraction table restores apostrophes ("dont" -> "don't"); these are its entries a medical answer
# can contain (the rest, such as "y'all'd've", cannot change one).
_CONTRACTIONS = {w.replace("'", ""): w for w in (
    "ain't aren't can't couldn't didn't doesn't don't hadn't hasn't haven't isn't mightn't mustn't needn't "
    "shouldn't wasn't weren't won't wouldn't it'd it'll i'm i've that's there's there're they're they've what's "
    "where's who's you're you've he's she'd we've").split()}


def vqa_normalize(text: str) -> str:
    """The VQA answer normaliser as LLaVA-Med and MultiMedEval run it (on lower-cased text).

    Each punctuation mark is deleted when it touches a space or the text has a digit-comma-digit, else replaced by
    a space; periods not followed by a digit are deleted (the first 32, see `_PERIOD`); number words up to ten, and
    "none", become digits; articles go; contractions get their apostrophe back; remaining commas go.
    """
    text = text.lower()
    out = text
    for p in _PUNCT:
        if p + " " in text or " " + p in text or _COMMA_BETWEEN_DIGITS.search(text):
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    out = _PERIOD.sub("", out, count=_PERIOD_COUNT)
    words = [_NUMBER_WORDS.get(w, w) for w in out.split()]
    words = [_CONTRACTIONS.get(w, w) for w in words if w not in ("a", "an", "the")]
    return " ".join(words).replace(",", "")


# ----------------------------------------------------------------------------------------------------------------
# LLaVA-Med: microsoft/LLaVA-Med llava/eval/run_eval.py (v1.0 branch, commit b9a98a7) + eval_metrics/
# ----------------------------------------------------------------------------------------------------------------


def llava_med_closed_hit(reply: str, reference: str) -> bool:
    """LLaVA-Med's closed rule: the normalised reply contains "yes" or "no" (substrings: "nodule" and "not"
    count) and contains the normalised reference (a substring too).

    Known bug, fixed here: until commit b9a98a7 ("fix closed accuracy calculation (#35)", Dec 2023), a reply that
    contained yes/no but not the reference appended no score at all, so it left both the numerator and the
    denominator: accuracy counted only right answers plus replies without any yes/no. The copies made before the
    fix still report that inflated number. Here every closed question counts, as the fixed script does. Not
    fixed, because it is the definition: a closed reference that is not yes/no ("left") can only be hit when the
    reply happens to contain "yes"/"no" ("not", "normal").
    """
    pred, gt = vqa_normalize(reply), vqa_normalize(reference)
    return ("yes" in pred or "no" in pred) and gt in pred


def llava_med_open_recall(reply: str, reference: str) -> float:
    """LLaVA-Med's open "recall" (eval_metrics calculate_f1score): tp / (tp + fn) over whitespace words after the
    normaliser, where tp adds the REPLY's count of each shared word and fn the reference's count of each missing
    one (so a repeated shared word weighs more); 0 when either side is empty or nothing is shared."""
    pred = Counter(vqa_normalize(vqa_normalize(reply)).split())
    ref = Counter(vqa_normalize(vqa_normalize(reference)).split())
    if not pred or not ref:
        return 0.0
    tp = sum(count for word, count in pred.items() if word in ref)
    fn = sum(count for word, count in ref.items() if word not in pred)
    return tp / (tp + fn) if tp else 0.0


def llava_med_metrics(rows: Sequence[tuple[str, str, str]]) -> dict[str, float]:
    """`closed_accuracy` over CLOSED rows, `open_recall` over OPEN rows (run_eval.py's 'yes/no accuracy', 'recall')."""
    return _means({
        "closed_accuracy": [llava_med_closed_hit(reply, ref) for kind, ref, reply in rows if kind == "closed"],
        "open_recall": [llava_med_open_recall(reply, ref) for kind, ref, reply in rows if kind == "open"],
    })


# ----------------------------------------------------------------------------------------------------------------
# MultiMedEval: corentin-ryr/MultiMedEval multimedeval/task_families.py VQA.evaluate (+ utils.py clean_str)
# ----------------------------------------------------------------------------------------------------------------


def multimedeval_row(reply: str, reference: str) -> dict[str, float | bool]:
    """One question as MultiMedEval's VQA.evaluate scores it: token SETS of the normalised texts.

    closed: the reference is "yes" or "no" (by value, whatever the dataset's answer type). correct (closed only):
    the share of the reference set found in the reply is >= 0.4, where "no" becomes {"no", "not"}, so "not" alone
    is a no, and "yes or no" is right for both references. recall, f1 (with +1e-8 in the denominator) and bleu1
    (torchmetrics BLEUScore(n_gram=1): clipped unigram precision times the brevity penalty) are per question.
    """
    pred_text, ref_text = vqa_normalize(reply), vqa_normalize(reference.lower().strip())
    pred, ref = set(pred_text.split()), set(ref_text.split())
    shared = len(pred & ref)
    precision = shared / len(pred) if pred else 0.0
    rec = shared / len(ref) if ref else 0.0
    row: dict[str, float | bool] = {"closed": ref_text in ("yes", "no"), "recall": rec,
                                    "f1": 2 * precision * rec / (precision + rec + 1e-8),
                                    "bleu1": _bleu(pred_text.split(), ref_text.split(), 1)}
    if row["closed"]:
        wanted = ref | {"not"} if ref == {"no"} else ref
        row["correct"] = len(pred & wanted) / len(wanted) >= 0.4
    return row


def multimedeval_metrics(rows: Sequence[tuple[str, str, str]]) -> dict[str, float]:
    """`closed_accuracy`, `open_recall`, `open_accuracy` (recall >= 0.75), and `bleu1`, `f1` over all its rows
    (closed and open; MultiMedEval's 'closedQuestionsAccuracy', 'openQuestionsRecall', 'openQuestionsAccuracy',
    'bleu', 'F1')."""
    scored = [multimedeval_row(reply, ref) for kind, ref, reply in rows if kind != "multiple_choice"]
    open_recall = [s["recall"] for s in scored if not s["closed"]]
    return _means({
        "closed_accuracy": [s["correct"] for s in scored if s["closed"]],
        "open_recall": open_recall,
        "open_accuracy": [r >= 0.75 for r in open_recall],
        "bleu1": [s["bleu1"] for s in scored],
        "f1": [s["f1"] for s in scored],
    })


# ----------------------------------------------------------------------------------------------------------------
# MedEvalKit: alibaba-damo-academy/MedEvalKit utils/utils.py (judge_judgement, judge_close_end_vqa,
# judge_open_end_vqa, calculate_f1, bleu, rouge, parse_response) and utils/SLAKE/SLAKE.py cal_metrics
# ----------------------------------------------------------------------------------------------------------------

_ANSWER_PATTERNS = ("**answer**:", "**answer**", "*answer*:", "**answer:**", "answer is", "answer:", "答案:",
                    "final answer", "final answer is")
_BOXED = "\\boxed{"


def _boxed(text: str) -> str | None:
    """Content of the last \\boxed{...}, braces balanced (mathruler's extract_boxed_content), else None."""
    start = text.rfind(_BOXED)
    if start < 0:
        return None
    depth, i = 1, start + len(_BOXED)
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i:j]
    return None


def medevalkit_response(reply: str) -> str:
    """MedEvalKit's answer text: the boxed content, else every complete <answer> block joined by spaces (or the
    whole text when none closes), lower-cased and stripped; then its parse_response: the part after the last of
    its answer patterns ("answer is", "answer:", ...), applied in its order."""
    text = reply
    boxed = _boxed(text)
    if boxed is not None:
        text = boxed
    elif "<answer>" in text:
        blocks = re.findall(r"<answer>(.*?)</answer>", text, re.DOTALL)
        text = " ".join(blocks).strip() or text
    text = text.lower().strip()
    for pattern in _ANSWER_PATTERNS:
        if pattern in text:
            text = text.split(pattern)[-1]
    return text


def medevalkit_closed_correct(reply: str, reference: str) -> bool:
    """judge_judgement for a yes/no reference: newlines and periods removed, exactly one of "yes"/"no" occurs as a
    substring ("nodule" has a "no"), and the reference occurs; judge_close_end_vqa (exact match) otherwise."""
    ref = reference.lower().strip()
    response = medevalkit_response(reply).replace("\n", "").replace(".", "")
    if ref in ("yes", "no"):
        return (("yes" in response) != ("no" in response)) and ref in response
    return response == ref


def medevalkit_open_row(reply: str, reference: str) -> dict[str, float]:
    """judge_open_end_vqa: exact string match (no punctuation removed: "liver." is not "liver"), token-set F1 on
    whitespace words, nltk sentence BLEU-1/4 on its tokenizer (periods split off), rouge's ROUGE-1/2/L F.

    Two of its behaviours are not copied: an empty reply, which makes its calculate_f1 return a bare 0 that the
    caller cannot unpack (and rouge raise), scores 0 here; and calculate_f1 returns (f1, precision, recall) into
    variables named (precision, recall, f1), so MedEvalKit's output file labels F1 "precision" and recall "f1".
    `f1` here is the F1 its formula computes.
    """
    ref, response = reference.lower().strip(), medevalkit_response(reply)
    pred_words, ref_words = set(response.split()), set(ref.split())
    f1 = 0.0
    if pred_words and ref_words and (common := len(pred_words & ref_words)):
        precision, rec = common / len(pred_words), common / len(ref_words)
        f1 = 2 * precision * rec / (precision + rec)
    pred_tokens, ref_tokens = _medevalkit_tokens(response), _medevalkit_tokens(ref)
    return {"exact": float(response == ref), "f1": f1, "bleu1": _bleu(pred_tokens, ref_tokens, 1),
            "bleu4": _bleu(pred_tokens, ref_tokens, 4), **_rouge(response, ref)}


def _medevalkit_tokens(text: str) -> list[str]:
    return text.lower().replace(".", " .").split(" ")


def medevalkit_metrics(rows: Sequence[tuple[str, str, str]]) -> dict[str, float]:
    """`closed_accuracy` over CLOSED rows; over OPEN rows `open_exact` (its open accuracy without an LLM judge),
    `open_f1`, `open_bleu1`, `open_bleu4`, `open_rouge1`, `open_rouge2`, `open_rougel`; `accuracy` = (closed right
    + open exact) / all of them, its 'total metrics' acc. Closed rows follow its SLAKE rule (by answer type); on
    VQA-RAD and PathVQA it splits by the reference being yes/no instead, which differs only for closed rows whose
    reference is a word."""
    closed = [medevalkit_closed_correct(reply, ref) for kind, ref, reply in rows if kind == "closed"]
    open_rows = [medevalkit_open_row(reply, ref) for kind, ref, reply in rows if kind == "open"]
    columns = {"closed_accuracy": closed}
    columns |= {f"open_{key}": [r[key] for r in open_rows] for key in ("exact", "f1", "bleu1", "bleu4", "rouge1",
                                                                       "rouge2", "rougel")}
    columns["accuracy"] = closed + [r["exact"] for r in open_rows]
    return _means(columns)


# ----------------------------------------------------------------------------------------------------------------
# BLEU and ROUGE as the libraries the scripts call compute them for one pair
# ----------------------------------------------------------------------------------------------------------------


def _ngrams(tokens: Sequence[str], n: int) -> Counter:
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def _bleu(pred: Sequence[str], ref: Sequence[str], n: int) -> float:
    """Sentence BLEU-n with uniform weights, one reference, no smoothing: nltk's sentence_bleu (a zero n-gram
    precision counts as the smallest float, so the score is ~0, and no unigram match gives exactly 0), which for
    n = 1 is also torchmetrics' BLEUScore(n_gram=1)."""
    if not pred:
        return 0.0
    precisions = []
    for k in range(1, n + 1):
        hyp = _ngrams(pred, k)
        precisions.append(Fraction(sum((hyp & _ngrams(ref, k)).values()), max(1, sum(hyp.values()))))
    if precisions[0] == 0:
        return 0.0
    brevity = 1.0 if len(pred) > len(ref) else math.exp(1 - len(ref) / len(pred))
    return brevity * math.exp(math.fsum(math.log(p if p > 0 else sys.float_info.min) / n for p in precisions))


def _rouge(pred: str, ref: str) -> dict[str, float]:
    """rouge 1.0.1 Rouge().get_scores F values: text split into sentences at ".", words at single spaces; ROUGE-N
    on n-gram SETS; ROUGE-L summary level: the union over reference and reply sentences of the words of one
    longest common subsequence each (as sets), over the distinct words on each side. Empty side: 0 (rouge raises)."""
    hyp_s = [" ".join(s.split()) for s in pred.lower().split(".") if s]
    ref_s = [" ".join(s.split()) for s in ref.lower().split(".") if s]
    if not hyp_s or not ref_s:
        return {"rouge1": 0.0, "rouge2": 0.0, "rougel": 0.0}
    hyp_words = [w for s in hyp_s for w in s.split(" ")]
    ref_words = [w for s in ref_s for w in s.split(" ")]
    out = {f"rouge{n}": _f(set(_ngrams(hyp_words, n)), set(_ngrams(ref_words, n))) for n in (1, 2)}
    union: set[str] = set()
    for r in ref_s:
        for h in hyp_s:
            union |= _lcs_words(r.split(" "), h.split(" "))
    p, rec = len(union) / len(set(hyp_words)), len(union) / len(set(ref_words))
    return out | {"rougel": 2 * p * rec / (p + rec + 1e-8)}


def _f(hyp: set, ref: set) -> float:
    overlap = len(hyp & ref)
    p = overlap / len(hyp) if hyp else 0.0
    r = overlap / len(ref) if ref else 0.0
    return 2 * p * r / (p + r + 1e-8)


def _lcs_words(x: list[str], y: list[str]) -> set[str]:
    """The words of the longest common subsequence rouge reconstructs (ties: it steps back in y first)."""
    table = [[0] * (len(y) + 1) for _ in range(len(x) + 1)]
    for i in range(1, len(x) + 1):
        for j in range(1, len(y) + 1):
            table[i][j] = table[i - 1][j - 1] + 1 if x[i - 1] == y[j - 1] else max(table[i - 1][j], table[i][j - 1])
    words, i, j = set(), len(x), len(y)
    while i and j:
        if x[i - 1] == y[j - 1]:
            words.add(x[i - 1])
            i, j = i - 1, j - 1
        elif table[i - 1][j] > table[i][j - 1]:
            i -= 1
        else:
            j -= 1
    return words
