"""Vision pretraining of the embedded tiny model: teach its randomly initialised vision tower to see objects first.

Why: real VLMs start from a pretrained vision encoder and a projector aligned to the language model. The tiny
default starts from random weights, and measured on the starter set (docs/starter-data.md, issue 12) SFT alone never
learnt to see the lesions: real image = blank image on every question. This stage gives the tower and its patch
merger a short pretraining, as the tiny_model stage's last step, before any training question is seen.

Why it is not the evaluation task: the pretraining pictures are generated here, on the fly, with other objects
(squares, rectangles, triangles, crosses, elongated ellipses; never a circle), placed anywhere (not one per
quadrant), in mixed polarities and a wider contrast range, on group-A training backgrounds and on generic
scikit-image photographs (no group-B file, no medical question). The targets are dense maps, not answers: per image
token, how much of it objects cover, whether they are brighter or darker than their surround, and where the token
itself sits (row, column); per token also the whole image's coarse objectness map, object count and polarities (so
that the layout is in every token the language model may attend to); per patch, object or not and its polarity.
The heads are thrown away; only the tower and merger are saved (`save_pretrained`), so later stages load the model
like any hub checkpoint.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from rarl_core.config import VisionPretrainConfig

SHAPES = ("square", "rectangle", "triangle", "cross", "ellipse")
NATURAL_PICTURES = ("astronaut", "brick", "camera", "cat", "chelsea", "clock", "coffee", "grass", "gravel", "page",
                    "rocket", "text", "colorwheel")  # scikit-image's bundled photographs without round objects
MAX_OBJECTS = 4
RADIUS = (4.0, 13.0)
CONTRAST = (0.25, 0.7)
OBJECT_WEIGHT = 5.0  # loss weight of object tokens/patches against the many empty ones
_COVERED = 0.1  # a token counts as holding an object when objects cover this share of it (a patch: 0.25)


# ---------------------------------------------------------------------------------------------------------------
# Pictures


def natural_backgrounds(n: int, size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """`n` random crops (20-70% of the side) of scikit-image's photographs, half turned grey, gamma-jittered."""
    import skimage.data

    pictures = [np.asarray(getattr(skimage.data, name)(), dtype=np.float32) / 255.0 for name in NATURAL_PICTURES]
    out = []
    for i in range(n):
        picture = pictures[i % len(pictures)]
        picture = np.repeat(picture[..., None], 3, axis=2) if picture.ndim == 2 else picture[..., :3]
        h, w = picture.shape[:2]
        side = int(min(h, w) * rng.uniform(0.2, 0.7))
        y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        crop = Image.fromarray((picture[y : y + side, x : x + side] * 255).astype(np.uint8))
        arr = np.asarray(crop.resize((size, size), Image.Resampling.BOX), dtype=np.float32) / 255.0
        if rng.random() < 0.5:
            arr = np.repeat(arr.mean(axis=2, keepdims=True), 3, axis=2)
        out.append(np.clip(arr ** rng.uniform(0.7, 1.4), 0.0, 1.0))
    return out


def _outline(shape: str, cx: float, cy: float, r: float, angle: float, aspect: float) -> list[tuple[float, float]]:
    if shape == "square":
        points = [(-1, -1), (1, -1), (1, 1), (-1, 1)]
    elif shape == "rectangle":
        points = [(-1, -0.45), (1, -0.45), (1, 0.45), (-1, 0.45)]
    elif shape == "triangle":
        points = [(0, -1.1), (1, 0.8), (-1, 0.8)]
    elif shape == "cross":
        w = 0.35
        points = [(-w, -1), (w, -1), (w, -w), (1, -w), (1, w), (w, w), (w, 1), (-w, 1), (-w, w), (-1, w), (-1, -w),
                  (-w, -w)]
    else:  # an ellipse, elongated (aspect 1.6-3) so that it is never a circle
        points = [(math.cos(t), math.sin(t) / aspect) for t in np.linspace(0, 2 * math.pi, 24, endpoint=False)]
    c, s = math.cos(angle), math.sin(angle)
    return [(cx + r * (x * c - y * s), cy + r * (x * s + y * c)) for x, y in points]


def _alpha(size: int, outline: list[tuple[float, float]]) -> np.ndarray:
    """Soft coverage of a polygon: drawn at twice the size, box-filtered down."""
    mask = Image.new("L", (2 * size, 2 * size), 0)
    ImageDraw.Draw(mask).polygon([(2 * x, 2 * y) for x, y in outline], fill=255)
    return np.asarray(mask.resize((size, size), Image.Resampling.BOX), dtype=np.float32) / 255.0


def draw_objects(background: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """0-MAX_OBJECTS objects on a copy of `background` -> (uint8 image, coverage, signed coverage, count).

    An object is kept only where it stands out from the square around it (beyond its 85th or 15th percentile);
    one that would overlap another is dropped, so `count` is the number of separate objects drawn.
    """
    size = background.shape[0]
    image = np.rot90(background, int(rng.integers(4))).copy()
    grey = image.mean(axis=2)
    cover = np.zeros((size, size), np.float32)
    signed = np.zeros((size, size), np.float32)
    count = 0
    for _ in range(int(rng.integers(0, MAX_OBJECTS + 1))):
        r = float(rng.uniform(*RADIUS))
        cx, cy = rng.uniform(r + 1, size - r - 1, size=2)
        shape = SHAPES[int(rng.integers(len(SHAPES)))]
        alpha = _alpha(size, _outline(shape, cx, cy, r, rng.uniform(0, 2 * math.pi), rng.uniform(1.6, 3.0)))
        if (np.minimum(alpha, cover) > 0.2).sum() > 3 or not (alpha > 0.5).any():
            continue
        surround = (_alpha(size, _outline("square", cx, cy, 1.8 * r, 0.0, 1.0)) > 0.5) & (alpha < 0.01)
        values = grey[surround] if surround.any() else grey[alpha > 0.5]
        target = _stand_out(values, rng)
        if target is None:
            continue
        level, bright = target
        a = alpha[..., None]
        image = image * (1 - a) + a * np.clip(level + rng.normal(0, 0.03, a.shape), 0.0, 1.0)
        cover = np.maximum(cover, alpha)
        signed += alpha * (1.0 if bright else -1.0)
        count += 1
    return (np.clip(image, 0, 1) * 255).round().astype(np.uint8), cover, signed, count


def _stand_out(values: np.ndarray, rng: np.random.Generator) -> tuple[float, bool] | None:
    """(grey level, bright?) of an object that stands out from `values`, trying a random polarity first."""
    mean = float(values.mean())
    first = bool(rng.random() < 0.5)
    for bright in (first, not first):
        level = float(np.clip(mean + (1 if bright else -1) * rng.uniform(*CONTRAST), 0.0, 1.0))
        if (bright and level >= np.percentile(values, 85) + 0.05) or (not bright and level <= np.percentile(values, 15) - 0.05):
            return level, bright
    return None


def _cells(cover: np.ndarray, signed: np.ndarray, cell: int, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Per cell (row-major): covered share, and polarity class 0 none / 1 bright / 2 dark."""
    g = cover.shape[0] // cell
    share = cover.reshape(g, cell, g, cell).mean(axis=(1, 3))
    sign = signed.reshape(g, cell, g, cell).mean(axis=(1, 3))
    return share.reshape(-1), np.where(share < threshold, 0, np.where(sign > 0, 1, 2)).reshape(-1)


# ---------------------------------------------------------------------------------------------------------------
# Training


def pretrain_vision(model_dir: Path, cfg: VisionPretrainConfig, backgrounds: Sequence[np.ndarray],
                    image_pixels: int) -> dict:
    """Pretrain the vision tower + merger of the model saved in `model_dir` and save it back there.

    `backgrounds` are HxWx3 floats in [0, 1] (group-A training images); `cfg.natural_fraction` of the pictures use
    scikit-image photographs instead. Returns the final losses and the seconds spent.
    """
    from transformers import Qwen2VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    began = time.perf_counter()
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model = Qwen2VLForConditionalGeneration.from_pretrained(str(model_dir))
    processor = Qwen2VLImageProcessorPil.from_pretrained(str(model_dir), min_pixels=image_pixels, max_pixels=image_pixels)
    visual = model.model.visual
    patch, merge = model.config.vision_config.patch_size, model.config.vision_config.spatial_merge_size
    size = math.isqrt(image_pixels)
    if size * size != image_pixels or size % (patch * merge):
        raise ValueError(f"vision pretraining draws square pictures of model.max_pixels = {image_pixels} px: that must "
                         f"be the square of a multiple of {patch * merge} (the image token's side), e.g. 112 * 112")
    tokens, patches = size // (patch * merge), size // patch  # per side
    data = _pretraining_set(cfg, list(backgrounds), size, patch * merge, patch, merge, rng, processor)
    heads = _Heads(model.config.text_config.hidden_size, model.config.vision_config.embed_dim, tokens)
    optimiser = torch.optim.AdamW([*visual.parameters(), *heads.parameters()], lr=cfg.learning_rate, weight_decay=0.0)
    warmup = max(1, cfg.steps // 30)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * s / cfg.steps)))
    grid = torch.tensor([[1, patches, patches]] * cfg.batch_size)
    position = torch.arange(tokens * tokens).repeat(cfg.batch_size)
    order = torch.Generator().manual_seed(cfg.seed)
    visual.train()
    for _ in range(cfg.steps):
        idx = torch.randint(0, cfg.images, (cfg.batch_size,), generator=order)
        out = visual(data["pixels"][idx].flatten(0, 1), grid_thw=grid)
        losses = heads.losses(out.pooler_output, out.last_hidden_state, {k: v[idx] for k, v in data.items()},
                              position, tokens)
        optimiser.zero_grad()
        sum(losses.values()).backward()
        optimiser.step()
        schedule.step()
    model.save_pretrained(str(model_dir))
    return {**{f"loss_{k}": round(v.item(), 4) for k, v in losses.items()}, "seconds": time.perf_counter() - began}


def _pretraining_set(cfg: VisionPretrainConfig, backgrounds: list[np.ndarray], size: int, cell: int, patch: int,
                     merge: int, rng: np.random.Generator, processor) -> dict[str, torch.Tensor]:
    """`cfg.images` pictures with their targets, patchified once by the model's own image processor."""
    if not backgrounds:
        raise ValueError("vision pretraining needs group-A training backgrounds; none were given")
    n_natural = round(cfg.images * cfg.natural_fraction)
    pool = natural_backgrounds(min(n_natural, 512), size, rng) if n_natural else []
    pictures, share, polarity, count, patch_share, patch_polarity = [], [], [], [], [], []
    for i in range(cfg.images):
        source = pool if i < n_natural else backgrounds
        image, cover, signed, n = draw_objects(source[int(rng.integers(len(source)))], rng)
        pictures.append(image)
        s, p = _cells(cover, signed, cell, _COVERED)
        ps, pp = _cells(cover, signed, patch, 0.25)
        share.append(s), polarity.append(p), count.append(n)
        patch_share.append(_merge_order(ps, size // patch, merge)), patch_polarity.append(_merge_order(pp, size // patch, merge))
    pixels = torch.cat([processor(images=pictures[i : i + 256], return_tensors="pt")["pixel_values"]
                        for i in range(0, len(pictures), 256)])
    return {
        "pixels": pixels.view(cfg.images, -1, pixels.shape[-1]),
        "share": torch.tensor(np.stack(share)), "polarity": torch.tensor(np.stack(polarity)),
        "count": torch.tensor(count), "patch_share": torch.tensor(np.stack(patch_share)),
        "patch_polarity": torch.tensor(np.stack(patch_polarity)),
    }


def _merge_order(values: np.ndarray, side: int, merge: int) -> np.ndarray:
    """Row-major patch values in the processor's patch order: merge windows row-major, then inside each window."""
    return values.reshape(side // merge, merge, side // merge, merge).transpose(0, 2, 1, 3).reshape(-1)


class _Heads(torch.nn.Module):
    """Linear read-outs of the targets; discarded after pretraining."""

    def __init__(self, hidden: int, embed: int, tokens: int):
        super().__init__()
        cells = tokens * tokens
        self.token = torch.nn.Linear(hidden, 1 + 3 + 2 * tokens)  # share, polarity, own row, own column
        self.layout = torch.nn.Linear(hidden, cells + (MAX_OBJECTS + 1) + 2)  # whole map, count, any bright / dark
        self.patch = torch.nn.Linear(embed, 1 + 3)  # object, polarity

    def losses(self, merged, patches, batch, position, tokens: int) -> dict[str, torch.Tensor]:
        f = torch.nn.functional
        cells = tokens * tokens
        n = batch["share"].shape[0]
        out = self.token(merged)
        share, polarity = batch["share"].reshape(-1), batch["polarity"].reshape(-1)
        weight = 1.0 + (OBJECT_WEIGHT - 1.0) * (share > _COVERED).float()
        classes = torch.tensor([1.0, OBJECT_WEIGHT, OBJECT_WEIGHT])
        layout = self.layout(merged).view(n, cells, -1)
        occupied = (batch["share"] > _COVERED).float()[:, None, :].expand(-1, cells, -1)
        flags = torch.stack([(batch["polarity"] == 1).any(1), (batch["polarity"] == 2).any(1)], 1).float()
        p_out = self.patch(patches)
        p_share, p_polarity = batch["patch_share"].reshape(-1), batch["patch_polarity"].reshape(-1)
        p_object = (p_share > 0.25).float()
        return {
            "share": f.binary_cross_entropy_with_logits(out[:, 0], share, weight=weight),
            "polarity": f.cross_entropy(out[:, 1:4], polarity, weight=classes),
            "row": f.cross_entropy(out[:, 4 : 4 + tokens], position // tokens),
            "column": f.cross_entropy(out[:, 4 + tokens :], position % tokens),
            "map": f.binary_cross_entropy_with_logits(layout[..., :cells], occupied),
            "count": f.cross_entropy(layout[..., cells : cells + MAX_OBJECTS + 1].reshape(-1, MAX_OBJECTS + 1),
                                     batch["count"].repeat_interleave(cells)),
            "any_polarity": f.binary_cross_entropy_with_logits(layout[..., cells + MAX_OBJECTS + 1 :],
                                                               flags[:, None, :].expand(-1, cells, -1)),
            "patch_object": f.binary_cross_entropy_with_logits(p_out[:, 0], p_object,
                                                               weight=1.0 + (OBJECT_WEIGHT - 1.0) * p_object),
            "patch_polarity": f.cross_entropy(p_out[:, 1:], p_polarity, weight=classes),
        }
