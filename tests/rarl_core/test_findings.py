"""Tests for the synthetic findings: lesions land where the answer says, stand out, and every question is true."""

from __future__ import annotations

import numpy as np
import pytest

from rarl_core import findings
from rarl_core.findings import QUADRANTS, Lesion, ask, describe, draw, plan

SIZE = 112


def _grey(level: float = 0.5) -> np.ndarray:
    return np.full((SIZE, SIZE, 3), level, np.float32)


def _quadrant_of(x: float, y: float) -> str:
    return ("upper " if y < SIZE / 2 else "lower ") + ("left" if x < SIZE / 2 else "right")


@pytest.mark.parametrize("family", list(findings.FAMILY_WEIGHTS))
def test_plans_have_the_lesions_their_family_needs(family):
    rng = np.random.default_rng(0)
    counts = set()
    for _ in range(200):
        lesions, polarity = plan(family, rng)
        quadrants = [q for q, _ in lesions]
        assert len(set(quadrants)) == len(quadrants) and set(quadrants) <= set(QUADRANTS)
        assert polarity in ("bright", "dark")
        counts.add(len(lesions))
        if family == "larger":
            (q1, r1), (q2, r2) = lesions
            assert findings.side_of(q1) != findings.side_of(q2) and r1 >= 1.45 * r2
    expected = {"presence": {0, 1, 2, 3}, "count": {0, 1, 2, 3}, "larger": {2}}.get(family, {1})
    assert counts == expected


@pytest.mark.parametrize("polarity", ["bright", "dark"])
def test_a_drawn_lesion_sits_in_its_quadrant_and_stands_out(polarity):
    rng = np.random.default_rng(1)
    for quadrant in QUADRANTS:
        image, (lesion,) = draw(_grey(), [(quadrant, 9.0)], polarity, rng)
        assert lesion.quadrant == quadrant == _quadrant_of(lesion.cx, lesion.cy)
        centre = image[int(lesion.cy), int(lesion.cx)].mean()
        assert (centre - 0.5 if polarity == "bright" else 0.5 - centre) >= findings.MIN_CONTRAST - 0.1
        changed = np.argwhere(np.abs(image - 0.5).max(axis=2) > 0.02)
        assert {_quadrant_of(x + 0.5, y + 0.5) for y, x in changed} == {quadrant}  # nothing outside its quadrant


def test_no_lesion_where_it_could_not_be_seen():
    rng = np.random.default_rng(2)
    assert draw(_grey(0.0), [("upper left", 9.0)], "bright", rng) is None  # air is not tissue
    assert draw(_grey(0.95), [("upper left", 9.0)], "dark", rng) is None  # nor saturated bone
    assert draw(_grey(0.8), [("upper left", 9.0)], "bright", rng) is None  # too little room to be brighter
    image, lesions = draw(_grey(0.3), [], "bright", rng)
    assert lesions == [] and np.array_equal(image, _grey(0.3))


def _lesion(quadrant: str, radius: float = 9.0, polarity: str = "dark") -> Lesion:
    return Lesion(quadrant, 0.0, 0.0, radius, polarity)


@pytest.mark.parametrize(
    "family, lesions, answers",
    [
        ("presence", [], {"no"}),
        ("presence", [_lesion("lower left")], {"yes"}),
        ("count", [_lesion("upper left"), _lesion("lower right")], {"2"}),
        ("count", [], {"0"}),
        ("side", [_lesion("upper right")], {"right", "yes", "no"}),
        ("quadrant", [_lesion("lower left")], {"lower left"}),
        ("polarity", [_lesion("lower left", polarity="bright")], {"brighter", "yes", "no"}),
        ("larger", [_lesion("upper right", 12.0), _lesion("lower left", 6.0)], {"right", "upper right"}),
    ],
)
def test_every_wording_is_true_and_its_reasoning_concludes_the_answer(family, lesions, answers):
    rng = np.random.default_rng(3)
    seen = set()
    for _ in range(40):
        q = ask(family, lesions, rng)
        seen.add(q.answer)
        assert q.reasoning.endswith(f", so {q.answer}") and q.answer in answers
        if q.answer_type == "multiple_choice":
            assert q.answer in q.choices and len(set(q.choices)) == 4
        if q.answer_type == "closed" and family in ("side", "polarity"):  # asked about the other option: "no"
            asked = next(o for o in ("left", "right", "brighter", "darker") if f" {o} " in f" {q.question} ")
            truth = findings.side_of(lesions[0].quadrant) if family == "side" else (
                "brighter" if lesions[0].polarity == "bright" else "darker")
            assert (q.answer == "yes") == (asked == truth)
    assert seen == answers  # every wording occurs


def test_the_reasoning_names_the_cue():
    assert describe([]) == "no round spot stands out from the background"
    assert describe([_lesion("upper left", polarity="bright")]) == "one bright round spot at upper left"
    two = [_lesion("upper left"), _lesion("lower right")]
    assert describe(two) == "2 dark round spots at upper left and lower right"
    larger = ask("larger", [_lesion("lower left", 6.0), _lesion("upper right", 12.0)], np.random.default_rng(0))
    assert larger.reasoning.startswith("large dark spot at upper right, small one at lower left, so ")


def test_an_unknown_family_is_named():
    with pytest.raises(ValueError, match="unknown finding family 'shape'"):
        plan("shape", np.random.default_rng(0))
