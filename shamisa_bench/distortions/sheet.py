"""Contact sheet: one row per type at its five anchor levels, plus a composition group."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from shamisa_bench.distortions.catalog import CATALOG, check_type, severity_to_value
from shamisa_bench.distortions.compose import (
    apply_composition_group,
    sample_composition,
)
from shamisa_bench.distortions.engine import distort

__all__ = ["center_crop", "contact_sheet"]

_LABEL_W = 210
_HEADER_H = 22
_CAPTION_H = 16
_GAP = 4


def center_crop(img: Tensor, size: int) -> Tensor:
    """Centre ``size x size`` crop of ``(3, H, W)``, zero-padded (centred) if smaller."""
    h, w = img.shape[-2:]
    ph, pw = max(0, size - h), max(0, size - w)
    if ph or pw:
        img = F.pad(img, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))
        h, w = img.shape[-2:]
    top, left = (h - size) // 2, (w - size) // 2
    return img[:, top : top + size, left : left + size]


def _to_pil(x: Tensor) -> Image.Image:
    arr = (x.detach().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(np.ascontiguousarray(arr))


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has no sized default font
        return ImageFont.load_default()


def _fmt(v: float) -> str:
    return f"{v:g}" if abs(v) >= 0.01 or v == 0 else f"{v:.4f}"


def contact_sheet(
    image: Tensor,
    types: Sequence[str] | None = None,
    *,
    seed: int = 0,
    size: int = 224,
    composition: bool = True,
) -> Image.Image:
    """Render the engine on one image, for a person to judge.

    Args:
        image: ``(3, H, W)`` float in [0, 1]; its centre ``size`` crop is used at full scale.
        types: the rows (default: all 26 types, catalog order).
        seed: seed of the random types and of the composition group.
        size: crop side in pixels.
        composition: add a row with one sampled composition group (5 levels).

    Returns:
        A ``PIL.Image.Image``: the reference crop on the left, one column per anchor level
        (labelled with its value), type names on the left.

    Raises:
        ValueError: for an unknown type name.
    """
    names = list(types) if types else list(CATALOG)
    for name in names:
        check_type(name)
    x = center_crop(image, size)[None]
    cell_w, cell_h = size + _GAP, size + _CAPTION_H + _GAP
    n_rows = len(names) + (1 if composition else 0)
    width = _LABEL_W + 6 * cell_w
    height = _HEADER_H + n_rows * cell_h
    sheet = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    font, small = _font(13), _font(11)
    draw.text((_LABEL_W, 4), "reference", fill=(0, 0, 0), font=font)
    for lvl in range(5):
        draw.text((_LABEL_W + (lvl + 1) * cell_w, 4), f"level {lvl + 1} (severity {lvl})", fill=(0, 0, 0), font=font)
    ref = _to_pil(x[0])
    for row, name in enumerate(names):
        top = _HEADER_H + row * cell_h
        entry = CATALOG[name]
        draw.text((4, top + 4), name, fill=(0, 0, 0), font=font)
        draw.text((4, top + 22), entry.group, fill=(90, 90, 90), font=small)
        sheet.paste(ref, (_LABEL_W, top))
        for lvl in range(5):
            gen = torch.Generator().manual_seed(seed)
            y = distort(x, name, float(lvl), generator=gen)
            left = _LABEL_W + (lvl + 1) * cell_w
            sheet.paste(_to_pil(y[0]), (left, top))
            value = severity_to_value(name, float(lvl))[0]
            draw.text((left, top + size + 1), f"{name} = {_fmt(value)}", fill=(0, 0, 0), font=small)
    if composition:
        top = _HEADER_H + len(names) * cell_h
        gen = torch.Generator().manual_seed(seed)
        plan = sample_composition(4, 5, "gaussian", generator=gen)
        crops, meta = apply_composition_group(x, plan)
        draw.text((4, top + 4), "composition group", fill=(0, 0, 0), font=font)
        for k, t in enumerate(meta.types):
            mark = "  <- varies" if k == meta.var_pos else f"  s={float(meta.severities[0, k]):.2f}"
            draw.text((4, top + 22 + 15 * k), f"{k + 1}. {t}{mark}", fill=(0, 0, 0), font=small)
        sheet.paste(ref, (_LABEL_W, top))
        for lvl in range(meta.severities.shape[0]):
            left = _LABEL_W + (lvl + 1) * cell_w
            sheet.paste(_to_pil(crops[lvl]), (left, top))
            s = float(meta.severities[lvl, meta.var_pos])
            v = float(meta.values[lvl, meta.var_pos])
            draw.text((left, top + size + 1), f"severity {s:.2f}, value {_fmt(v)}", fill=(0, 0, 0), font=small)
    return sheet
