"""Synthetic findings drawn onto the starter set's real images, and the questions they answer.

Why: questions about the source image itself (modality, plane, organ) can only be memorised per file, so nothing a
model learns on group A's files can carry over to group B's (issue 12: on the old set the SFT model scored below a
blank image on the unseen group). A round lesion drawn onto the picture looks the same whatever file is under it, so
a model that learns to see it on group A's backgrounds can be tested, honestly, on group B's.

Answers are true by construction: the generator decides how many lesions there are, in which quadrant of the image,
how large and whether brighter or darker than the tissue around them, then asks about exactly that. Sides and
quadrants are the image's own (left of the picture), never the patient's. A lesion is drawn only where it stands
out from its whole surround (see `draw`), so every answer is visible.

The reasoning names the visible cue and ends ", so <answer>" (the SFT target is <think>reasoning</think><answer>..),
e.g. "one dark round spot at lower left, so left". Two families need two cues: the side or quadrant of the LARGER
of two lesions (where each lesion is, and which is larger), so the reasoning step carries information the answer
alone does not.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

QUADRANTS = ("upper left", "upper right", "lower left", "lower right")
COUNTS = ("0", "1", "2", "3")

# Question family -> relative weight in the set. Position questions (side, quadrant, larger) get more rows than
# polarity because they have more answers to learn.
FAMILY_WEIGHTS = {"presence": 2.0, "count": 2.0, "side": 2.0, "quadrant": 2.0, "polarity": 1.0, "larger": 2.0}

Q_PRESENT = "Is there a round lesion in this image?"
Q_COUNT = "How many round lesions are there?"
Q_COUNT_MC = "How many round lesions does the image show?"
Q_SIDE = "On which side of the image is the lesion, left or right?"
Q_SIDE_YES_NO = "Does the lesion lie in the {side} half of the image?"
Q_QUADRANT = "In which quadrant is the lesion?"
Q_QUADRANT_MC = "Which quadrant of the image contains the lesion?"
Q_POLARITY = "How does the lesion compare with its surroundings: brighter or darker?"
Q_POLARITY_YES_NO = "Is the lesion {polarity} than its surroundings?"
Q_LARGER_SIDE = "On which side of the image is the larger lesion, left or right?"
Q_LARGER_QUADRANT_MC = "Which quadrant holds the larger of the two lesions?"

RADIUS = (8.0, 13.0)  # px at 112 px: a lesion is 16-26 px across, in a 56-px quadrant
LARGER_RADIUS, SMALLER_RADIUS = (11.0, 13.5), (6.0, 7.5)  # "which is larger": at least 1.45x apart
# Contrast: a lesion differs from the mean of its surround by 0.55-0.8 (display units in [0, 1]), and lies beyond
# the surround's 90th (10th) percentile by 0.2. Measured: at 0.35-0.6 the lesions were as blob-like as anatomy
# (a difference-of-Gaussians detector found them with AUC 0.80 in-domain, 0.76 unseen); at these values 0.96 / 0.84.
CONTRAST = (0.55, 0.8)
MIN_CONTRAST = 0.5
MARGIN_PERCENTILE = 0.2
TISSUE = (0.15, 0.85)  # a lesion sits in tissue: the mean of its surround is neither air nor saturated bone
_EDGE = 1.5  # px of soft rim
_PLACEMENT_TRIES = 30


@dataclass(frozen=True)
class Lesion:
    quadrant: str  # one of QUADRANTS; the lesion lies wholly inside it
    cx: float  # centre, px from the left
    cy: float  # centre, px from the top
    radius: float
    polarity: str  # "bright" | "dark"


@dataclass(frozen=True)
class Question:
    question: str
    answer: str
    answer_type: str  # closed | open | multiple_choice
    choices: tuple[str, ...]
    reasoning: str


def side_of(quadrant: str) -> str:
    return "left" if quadrant.endswith("left") else "right"


def other_polarity(polarity: str) -> str:
    return "dark" if polarity == "bright" else "bright"


# ---------------------------------------------------------------------------------------------------------------
# Drawing


def plan(family: str, rng: np.random.Generator) -> tuple[list[tuple[str, float]], str]:
    """(quadrant, radius) of each lesion a row of `family` needs, and their polarity (one per image).

    At most one lesion per quadrant, so a count is a count of separate spots and a quadrant names one lesion.
    """
    polarity = "bright" if rng.random() < 0.5 else "dark"
    if family == "larger":  # one lesion on each side, clearly different in size
        left = QUADRANTS[2 * int(rng.integers(2))]
        right = QUADRANTS[2 * int(rng.integers(2)) + 1]
        big, small = (left, right) if rng.random() < 0.5 else (right, left)
        return [(big, float(rng.uniform(*LARGER_RADIUS))), (small, float(rng.uniform(*SMALLER_RADIUS)))], polarity
    if family == "presence":  # half without any lesion, so "yes" and "no" are equally likely
        n = 0 if rng.random() < 0.5 else int(rng.integers(1, 4))
    elif family == "count":
        n = int(rng.integers(0, 4))
    elif family in ("side", "quadrant", "polarity"):
        n = 1
    else:
        raise ValueError(f"unknown finding family {family!r}; known: {', '.join(FAMILY_WEIGHTS)}")
    quadrants = sorted(rng.choice(len(QUADRANTS), size=n, replace=False).tolist())
    return [(QUADRANTS[q], float(rng.uniform(*RADIUS))) for q in quadrants], polarity


def draw(image: np.ndarray, lesions: list[tuple[str, float]], polarity: str,
         rng: np.random.Generator) -> tuple[np.ndarray, list[Lesion]] | None:
    """Draw soft round lesions onto `image` (HxWx3 float in [0, 1]); None when this background cannot show them.

    Each lesion is placed at random inside its quadrant, clear of the midlines and the border, and drawn only where
    it stands out from its whole surround (the ring out to 1.8 radii): the ring's mean is tissue (within TISSUE,
    not air or saturated bone), and the lesion is brighter than the ring's 90th percentile by MARGIN_PERCENTILE and
    than its mean by MIN_CONTRAST (darker, for a dark lesion). Elsewhere it is tried again; the caller draws another
    background when no place works.
    """
    out = image.copy()
    grey = image.mean(axis=2)
    drawn = []
    for quadrant, radius in lesions:
        for _ in range(_PLACEMENT_TRIES):
            cx, cy = _centre_in(quadrant, radius, image.shape[0], rng)
            box, dist = _window(image.shape[0], cx, cy, 1.8 * radius + 1)
            ring = grey[box][(dist >= radius) & (dist < 1.8 * radius)]
            target = _target_intensity(ring, polarity, float(rng.uniform(*CONTRAST)))
            if target is not None:
                break
        else:
            return None
        alpha = np.clip((radius - dist) / _EDGE + 0.5, 0.0, 1.0)[..., None]
        texture = rng.normal(0.0, 0.03, size=alpha.shape).astype(np.float32)
        out[box] = out[box] * (1 - alpha) + alpha * np.clip(target + texture, 0.0, 1.0)
        drawn.append(Lesion(quadrant, cx, cy, radius, polarity))
    return out, drawn


def _centre_in(quadrant: str, radius: float, size: int, rng: np.random.Generator) -> tuple[float, float]:
    """A centre whose lesion lies inside `quadrant`, 4 px clear of the midlines and 3 px of the border."""
    half = size / 2
    lo, hi = radius + 3, half - radius - 4
    x = float(rng.uniform(lo, hi)) if side_of(quadrant) == "left" else float(rng.uniform(size - hi, size - lo))
    y = float(rng.uniform(lo, hi)) if quadrant.startswith("upper") else float(rng.uniform(size - hi, size - lo))
    return x, y


def _window(size: int, cx: float, cy: float, reach: float) -> tuple[tuple[slice, slice], np.ndarray]:
    """The square of pixels within `reach` of the centre, and each pixel's distance from it (pixel centres)."""
    y0, y1 = max(0, int(cy - reach)), min(size, int(np.ceil(cy + reach)) + 1)
    x0, x1 = max(0, int(cx - reach)), min(size, int(np.ceil(cx + reach)) + 1)
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32) + 0.5
    return (slice(y0, y1), slice(x0, x1)), np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2)


def _target_intensity(ring: np.ndarray, polarity: str, contrast: float) -> float | None:
    """The lesion's grey level, or None when this surround is not tissue or the lesion would not stand out from it."""
    mean = float(ring.mean())
    if not TISSUE[0] <= mean <= TISSUE[1]:
        return None
    if polarity == "bright":
        target = min(1.0, mean + contrast)
        visible = target - mean >= MIN_CONTRAST and target >= np.percentile(ring, 90) + MARGIN_PERCENTILE
    else:
        target = max(0.0, mean - contrast)
        visible = mean - target >= MIN_CONTRAST and target <= np.percentile(ring, 10) - MARGIN_PERCENTILE
    return target if visible else None


# ---------------------------------------------------------------------------------------------------------------
# Questions


def ask(family: str, lesions: list[Lesion], rng: np.random.Generator) -> Question:
    """One question of `family` about `lesions`, in one of its wordings (open, yes/no or multiple choice)."""
    cue = describe(lesions)
    if family == "presence":
        answer = "yes" if lesions else "no"
        return Question(Q_PRESENT, answer, "closed", (), f"{cue}, so {answer}")
    if family == "count":
        answer = COUNTS[len(lesions)]
        if rng.random() < 0.5:
            return Question(Q_COUNT, answer, "open", (), f"{cue}, so {answer}")
        return Question(Q_COUNT_MC, answer, "multiple_choice", _shuffled(COUNTS, rng), f"{cue}, so {answer}")
    if family == "larger":
        larger = max(lesions, key=lambda lesion: lesion.radius)
        cue = describe_sizes(lesions)
        if rng.random() < 0.5:
            answer = side_of(larger.quadrant)
            return Question(Q_LARGER_SIDE, answer, "open", (), f"{cue}, so {answer}")
        answer = larger.quadrant
        return Question(Q_LARGER_QUADRANT_MC, answer, "multiple_choice", _shuffled(QUADRANTS, rng),
                        f"{cue}, so {answer}")
    (lesion,) = lesions
    if family == "side":
        return _open_or_yes_no(Q_SIDE, side_of(lesion.quadrant), Q_SIDE_YES_NO, "side", ("left", "right"), cue, rng)
    if family == "quadrant":
        if rng.random() < 0.5:
            return Question(Q_QUADRANT, lesion.quadrant, "open", (), f"{cue}, so {lesion.quadrant}")
        return Question(Q_QUADRANT_MC, lesion.quadrant, "multiple_choice", _shuffled(QUADRANTS, rng),
                        f"{cue}, so {lesion.quadrant}")
    if family == "polarity":
        answer = "brighter" if lesion.polarity == "bright" else "darker"
        return _open_or_yes_no(Q_POLARITY, answer, Q_POLARITY_YES_NO, "polarity", ("brighter", "darker"), cue, rng)
    raise ValueError(f"unknown finding family {family!r}; known: {', '.join(FAMILY_WEIGHTS)}")


def _open_or_yes_no(open_q: str, answer: str, yes_no_q: str, slot: str, options: tuple[str, str], cue: str,
                    rng: np.random.Generator) -> Question:
    """Half open ("left"), half yes/no about one option drawn at random (so half the yes/no answers are "yes")."""
    if rng.random() < 0.5:
        return Question(open_q, answer, "open", (), f"{cue}, so {answer}")
    asked = options[int(rng.integers(2))]
    label = "yes" if asked == answer else "no"
    return Question(yes_no_q.format(**{slot: asked}), label, "closed", (), f"{cue}, so {label}")


def describe(lesions: list[Lesion]) -> str:
    """The visible cue: how many spots, bright or dark, and where."""
    if not lesions:
        return "no round spot stands out from the background"
    polarity = lesions[0].polarity
    if len(lesions) == 1:
        return f"one {polarity} round spot at {lesions[0].quadrant}"
    places = [lesion.quadrant for lesion in lesions]
    return f"{len(lesions)} {polarity} round spots at {', '.join(places[:-1])} and {places[-1]}"


def describe_sizes(lesions: list[Lesion]) -> str:
    """The two cues of a "larger" question: where the large and where the small spot is."""
    large, small = sorted(lesions, key=lambda lesion: -lesion.radius)
    return f"large {large.polarity} spot at {large.quadrant}, small one at {small.quadrant}"


def _shuffled(options: tuple[str, ...], rng: np.random.Generator) -> tuple[str, ...]:
    return tuple(options[i] for i in rng.permutation(len(options)))
