"""Tests for the TRL reward functions: exact values per rule, adversarial completions, and TRL's calling convention."""

from __future__ import annotations

import pytest

from rarl_core.config import REWARD_NAMES
from rarl_core.rewards import (
    REWARD_FUNCS,
    accuracy_reward,
    cue_reward,
    completion_text,
    format_reward,
    reasoning_reward,
    think_conclusion,
)

MRI_Q = "Is this an MRI image?"
MODALITY_Q = "What imaging modality is this?"
OPTIONS = ["CT", "MRI", "ultrasound", "X-ray"]
GOOD_YES = (
    "<think>The image shows soft tissue contrast typical of MRI, so yes, this is an MRI.</think><answer>yes</answer>"
)
GIANT = "<think>" + "the lesion appears bright on this slice " * 250 + "</think><answer>yes</answer>"


def conv(text):
    """A TRL conversational completion."""
    return [{"role": "assistant", "content": text}]


# ---------------------------------------------------------------------------------------------------------------
# format_reward
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        ("<think>t</think><answer>yes</answer>", 1.0),
        ("<think> t </think>\n<answer> yes </answer>\n", 1.0),
        (GIANT, 1.0),
        (conv("<think>t</think><answer>yes</answer>"), 1.0),
        ([{"role": "assistant", "content": [{"type": "text", "text": "<think>t</think><answer>no</answer>"}]}], 1.0),
        # both blocks once, but something off: 0.5
        ("Sure. <think>t</think><answer>yes</answer>", 0.5),
        ("<think>t</think><answer>yes</answer> Hope this helps.", 0.5),
        ("<answer>yes</answer><think>t</think>", 0.5),
        ("<think></think><answer>yes</answer>", 0.5),
        ("<think>t</think><answer></answer>", 0.5),
        # repeated, nested, missing or unclosed: 0
        ("<think>t</think><answer>yes</answer><answer>no</answer>", 0.0),
        ("<think>t</think><answer>yes</answer><answer>yes</answer>", 0.0),
        ("<think>t</think><think>u</think><answer>yes</answer>", 0.0),
        ("<think>t <answer>yes</answer></think>", 0.0),
        ("<think>t</think><answer>yes", 0.0),
        ("<think>t</think>", 0.0),
        ("<answer>yes</answer>", 0.0),
        ("</think>t<think><answer>yes</answer>", 0.0),
        ("yes", 0.0),
        ("", 0.0),
        (None, 0.0),
        (conv(None), 0.0),
    ],
)
def test_format_reward(completion, expected):
    assert format_reward([completion]) == [expected]


def test_format_reward_accepts_trl_keywords():
    out = format_reward(prompts=["p", "p"], completions=["<think>t</think><answer>a</answer>", "a"],
                        completion_ids=[[1], [2]], answer=["a", "a"], trainer_state=None)
    assert out == [1.0, 0.0]


# ---------------------------------------------------------------------------------------------------------------
# accuracy_reward
# ---------------------------------------------------------------------------------------------------------------


def wrap(answer, think="looking at the image"):
    return f"<think>{think}</think><answer>{answer}</answer>"


@pytest.mark.parametrize(
    ("completion", "reference", "kind", "choices", "expected"),
    [
        (wrap("yes"), "yes", "closed", None, 1.0),
        (wrap("Yes, it is present."), "yes", "closed", None, 1.0),
        (wrap("not present"), "no", "closed", None, 1.0),
        (wrap("no"), "yes", "closed", None, 0.0),
        (wrap("yes and no"), "yes", "closed", None, 0.0),
        (wrap("yes and no"), "no", "closed", None, 0.0),
        (wrap("nodule"), "no", "closed", None, 0.0),
        (wrap("normal"), "no", "closed", None, 0.0),
        (wrap("node"), "no", "closed", None, 0.0),
        ("<think>t</think><answer>yes</answer><answer>no</answer>", "no", "closed", None, 1.0),  # last answer counts
        (wrap("B"), "MRI", "multiple_choice", OPTIONS, 1.0),
        (wrap("(b)"), "MRI", "multiple_choice", OPTIONS, 1.0),
        (wrap("MRI"), "MRI", "multiple_choice", OPTIONS, 1.0),
        (wrap("B. MRI"), "MRI", "multiple_choice", OPTIONS, 1.0),
        (wrap("A"), "MRI", "multiple_choice", OPTIONS, 0.0),
        (wrap("A B C D"), "MRI", "multiple_choice", OPTIONS, 0.0),
        (wrap("CT MRI ultrasound X-ray"), "MRI", "multiple_choice", OPTIONS, 0.0),
        (wrap("A. CT B. MRI C. ultrasound D. X-ray"), "MRI", "multiple_choice", OPTIONS, 0.0),
        (wrap("liver"), "Liver", "open", None, 1.0),
        (wrap("pneumonia in the left lower lobe"), "left lower lobe pneumonia", "open", None, pytest.approx(8 / 9)),
        (wrap("kidney"), "liver", "open", None, 0.0),
        (GIANT, "yes", "closed", None, 1.0),
        ("yes", "yes", "closed", None, 0.0),  # untagged answers are not read
        (None, "yes", "closed", None, 0.0),
        ("<think>t</think><answer></answer>", "liver", "open", None, 0.0),
    ],
)
def test_accuracy_reward(completion, reference, kind, choices, expected):
    out = accuracy_reward([completion], answer=[reference], answer_type=[kind],
                          choices=None if choices is None else [choices])
    assert out == [expected]


def test_accuracy_reward_string_and_conversational_agree():
    texts = [wrap("yes"), wrap("no"), wrap("B"), wrap("left lung")]
    refs, kinds = ["yes", "yes", "MRI", "right lung"], ["closed", "closed", "multiple_choice", "open"]
    choices = [[], [], OPTIONS, []]
    as_str = accuracy_reward(texts, answer=refs, answer_type=kinds, choices=choices)
    as_conv = accuracy_reward([conv(t) for t in texts], answer=refs, answer_type=kinds, choices=choices)
    assert as_str == as_conv == [1.0, 0.0, 1.0, 0.5]


def test_accuracy_reward_length_mismatch():
    with pytest.raises(ValueError, match="differ in length"):
        accuracy_reward([wrap("yes")] * 2, answer=["yes"], answer_type=["closed", "closed"])


def test_accuracy_reward_unknown_type():
    with pytest.raises(ValueError, match="'yesno'"):
        accuracy_reward([wrap("yes")], answer=["yes"], answer_type=["yesno"])


# ---------------------------------------------------------------------------------------------------------------
# reasoning_reward
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("completion", "question", "kind", "choices", "expected"),
    [
        # grounded (mentions "mri") and concludes its own yes: every check passes
        (GOOD_YES, MRI_Q, "closed", None, 1.0),
        # same think, opposite answer: the conclusion contradicts the answer -> 0
        (GOOD_YES.replace("<answer>yes", "<answer>no"), MRI_Q, "closed", None, 0.0),
        ("<think>Bright bone in a CT window, not an MRI, so no.</think><answer>no</answer>", MRI_Q, "closed", None,
         1.0),
        ("<think>Bright bone in a CT window, not an MRI, so no.</think><answer>yes</answer>", MRI_Q, "closed", None,
         0.0),
        # constant generic think: present 1, length 1, grounding 0.25 (visual words only), novelty 1, agreement 0.5
        ("<think>The image shows the findings, so the answer is as follows.</think><answer>yes</answer>", MRI_Q,
         "closed", None, 0.75),
        # the "constant think plus no" collapse: grounding 0.25
        ("<think>The image shows the findings, so no.</think><answer>no</answer>", MRI_Q, "closed", None, 0.85),
        # no visual words and no question words: grounding 0
        ("<think>I have considered everything carefully, so no.</think><answer>no</answer>", MRI_Q, "closed",
         None, 0.8),
        # grounded but concludes nothing explicit: agreement 0.5
        ("<think>Soft tissue contrast typical of MRI.</think><answer>yes</answer>", MRI_Q, "closed", None, 0.9),
        # ... and a predicate in the conclusion counts as its yes/no ("MRI is visible" -> yes)
        ("<think>Soft tissue contrast typical of MRI is visible.</think><answer>yes</answer>", MRI_Q, "closed",
         None, 1.0),
        # empty or missing think
        ("<think></think><answer>yes</answer>", MRI_Q, "closed", None, 0.0),
        ("<think>   </think><answer>yes</answer>", MRI_Q, "closed", None, 0.0),
        ("<answer>yes</answer>", MRI_Q, "closed", None, 0.0),
        (None, MRI_Q, "closed", None, 0.0),
        # too short (2 words): length 0; grounding 1 (mri); agreement 0.5
        ("<think>MRI scan</think><answer>yes</answer>", MRI_Q, "closed", None, 0.7),
        # no answer: agreement 0
        ("<think>The image shows soft tissue contrast of MRI.</think>", MRI_Q, "closed", None, 0.8),
        # ambiguous answer "yes and no" cannot agree with anything
        ("<think>The image shows soft tissue contrast of MRI.</think><answer>yes and no</answer>", MRI_Q, "closed",
         None, 0.8),
        # multiple choice: letter answer resolved to its option text
        ("<think>The scan has soft tissue contrast, so the modality is MRI.</think><answer>B</answer>", MODALITY_Q,
         "multiple_choice", OPTIONS, 1.0),
        ("<think>The scan has soft tissue contrast, so the modality is MRI.</think><answer>A</answer>", MODALITY_Q,
         "multiple_choice", OPTIONS, 0.0),
        ("<think>The scan has soft tissue contrast, so the answer is B.</think><answer>MRI</answer>", MODALITY_Q,
         "multiple_choice", OPTIONS, 0.85),
        # open: answer words found in the conclusion
        ("<think>The opacity sits low on the left side, so left lower lobe pneumonia.</think>"
         "<answer>left lower lobe pneumonia</answer>", "Where is the pneumonia?", "open", None, 1.0),
        ("<think>The opacity sits low on the left side, so left lower lobe pneumonia.</think>"
         "<answer>liver</answer>", "Where is the pneumonia?", "open", None, 0.8),
    ],
)
def test_reasoning_reward(completion, question, kind, choices, expected):
    out = reasoning_reward([completion], question=[question], answer=["ignored"], answer_type=[kind],
                           choices=None if choices is None else [choices])
    assert out == [pytest.approx(expected)]


def test_reasoning_reward_ignores_the_reference_answer():
    a = reasoning_reward([GOOD_YES], question=[MRI_Q], answer=["yes"], answer_type=["closed"])
    b = reasoning_reward([GOOD_YES], question=[MRI_Q], answer=["no"], answer_type=["closed"])
    assert a == b == [1.0]


def test_reasoning_reward_penalises_repetition_and_giant_thinks():
    looping = "<think>" + "bright spot " * 30 + "</think><answer>yes</answer>"
    giant = "<think>" + " ".join(f"word{i}" for i in range(2000)) + " mri, so yes.</think><answer>yes</answer>"
    out = reasoning_reward([looping, giant], question=[MRI_Q] * 2, answer_type=["closed"] * 2)
    # looping: present 1, length 1, grounding 0.25 ("bright" is visual), novelty 2 distinct / 58 trigrams,
    # agreement 0.5
    assert out[0] == pytest.approx((1 + 1 + 0.25 + 2 / 58 + 0.5) / 5)
    # giant (~18k chars, 2003 words): present 1, length 0 (past 400 words), grounding 1, novelty 1, agreement 1
    assert len(giant) > 10_000
    assert out[1] == pytest.approx(0.8)


def test_reasoning_reward_generic_think_ranks_below_grounded_agreeing_think():
    generic = "<think>The image shows the findings, so the answer is as follows.</think><answer>yes</answer>"
    out = reasoning_reward([GOOD_YES, generic], question=[MRI_Q] * 2, answer_type=["closed"] * 2)
    assert out[0] > out[1]


def test_reasoning_reward_without_question_or_type():
    # no question: visual words give full grounding; no answer_type: "yes" is read as closed
    out = reasoning_reward([GOOD_YES, conv(GOOD_YES)])
    assert out == [1.0, 1.0]


def test_reasoning_reward_length_mismatch():
    with pytest.raises(ValueError, match="differ in length"):
        reasoning_reward([GOOD_YES], question=[MRI_Q, MRI_Q])


@pytest.mark.parametrize(
    ("think", "expected"),
    [
        ("bright signal, so yes", "yes"),
        ("it is bright. Therefore it is an MRI. Thus yes.", "yes."),
        ("The answer is B", "B"),
        ("First sentence. Second sentence", "Second sentence"),
        ("also bright", "also bright"),  # "so" inside "also" is no marker
        ("", ""),
    ],
)
def test_think_conclusion(think, expected):
    assert think_conclusion(think) == expected


# ---------------------------------------------------------------------------------------------------------------
# names
# ---------------------------------------------------------------------------------------------------------------


def test_reward_function_names_for_trl_logging():
    assert [f.__name__ for f in (format_reward, accuracy_reward, reasoning_reward)] == [
        "format_reward", "accuracy_reward", "reasoning_reward"]
    assert tuple(REWARD_FUNCS) == REWARD_NAMES  # the names grpo.variants weights


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        ("plain", "plain"),
        (None, ""),
        (conv("x"), "x"),
        ({"role": "assistant", "content": "x"}, "x"),
        ([{"role": "user", "content": "question"}, {"role": "assistant", "content": "ans"}], "ans"),
        ([{"role": "assistant", "content": [{"type": "text", "text": "a"}, {"type": "image"},
                                            {"type": "text", "text": "b"}]}], "ab"),
    ],
)
def test_completion_text(completion, expected):
    assert completion_text(completion) == expected


@pytest.mark.parametrize(("n_words", "length_check"), [(3, 1.0), (200, 1.0), (300, 0.5), (400, 0.0), (2, 0.0)])
def test_reasoning_reward_length_check(n_words, length_check):
    # distinct words so novelty is 1; the last two words are "mri yes" (grounding 1, agreement 1)
    words = [f"w{i}" for i in range(n_words - 2)] + ["mri", "yes"]
    completion = f"<think>{' '.join(words)}</think><answer>yes</answer>"
    out = reasoning_reward([completion], question=[MRI_Q], answer_type=["closed"])
    assert out == [pytest.approx((4 + length_check) / 5)]


def test_all_rewards_accept_trls_exact_call():
    """TRL calls f(prompts=, completions=, completion_ids=, **every dataset column, trainer_state=, log_...=)."""
    completions = [conv(GOOD_YES), conv("<think>t</think><answer>A</answer>")]
    kwargs = {
        "prompts": [[{"role": "user", "content": MRI_Q}]] * 2,
        "completions": completions,
        "completion_ids": [[1, 2], [3]],
        "id": ["r0", "r1"],
        "image": ["x.png", "y.png"],
        "question": [MRI_Q, MODALITY_Q],
        "answer": ["yes", "MRI"],
        "answer_type": ["closed", "multiple_choice"],
        "choices": [[], OPTIONS],
        "modality": ["MRI", "MRI"],
        "trainer_state": None,
        "log_extra": lambda *a, **k: None,
        "log_metric": lambda *a, **k: None,
    }
    assert format_reward(**kwargs) == [1.0, 1.0]
    assert accuracy_reward(**kwargs) == [1.0, 0.0]
    out = reasoning_reward(**kwargs)
    assert out[0] == 1.0
    assert out[1] == pytest.approx((1 + 0 + 0 + 1 + 0) / 5)  # 1 word; no grounding; conclusion "t" lacks "CT"


TRUE_CUE = "one bright round finding in the upper left quadrant, so yes"
CUE_CASES = [
    # (completion, reference reasoning, expected cue reward)
    ("<think>One bright round finding in the upper left quadrant, so yes</think><answer>yes</answer>", TRUE_CUE, 1.0),
    # 7 content words: 1 (one), bright, round, finding, upper, left, quadrant
    ("<think>a single bright round finding, upper left quadrant</think><answer>yes</answer>", TRUE_CUE, 6 / 7),
    ("<think>one bright round finding in the lower right quadrant, so yes</think><answer>yes</answer>", TRUE_CUE, 5 / 7),
    ("<think>the answer is yes, so yes</think><answer>yes</answer>", TRUE_CUE, 0.0),  # the conclusion earns nothing
    ("<answer>yes</answer>", TRUE_CUE, 0.0),  # no think, no evidence
    ("<think>two dark findings, so two</think><answer>2</answer>", "2 dark round findings, so 2", 3 / 4),
    ("<think>anything</think><answer>yes</answer>", "", None),  # no reference reasoning: TRL skips the row
]


@pytest.mark.parametrize(("completion", "reasoning", "expected"), CUE_CASES)
def test_cue_reward_pays_for_true_evidence_only(completion, reasoning, expected):
    (score,) = cue_reward([completion], reasoning=[reasoning])
    assert score == (pytest.approx(expected) if expected is not None else None)
