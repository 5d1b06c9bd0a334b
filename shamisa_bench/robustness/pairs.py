"""Full-reference metrics in a robustness run: every generated image against its source.

The reference of a grid or composition image is its source image as the run holds it (the
pristine 8-bit pixels, the ``<source>/pristine`` image of the set); the pristine image is
scored against itself. The invariance images (flipped, shifted by a pixel, rescaled) are
not scored by a full-reference metric: it compares pixel-aligned pairs, so a flip or a
shift is a difference to it by design and a rescaled image has another size. They are
recorded per image with :data:`NOT_APPLICABLE` (counted and listed in the metric's record,
never dropped silently), and the report's invariance figures of an FR metric are empty.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from shamisa_bench.harness.adapters.fr import is_full_reference
from shamisa_bench.robustness.generate import invariance_name

__all__ = ["NOT_APPLICABLE", "reference_tensors"]

NOT_APPLICABLE = ("not applicable: a full-reference metric compares pixel-aligned pairs, and an invariance "
                  "transform (flip, shift, rescale) changes the alignment or the size by design")


def reference_tensors(adapter: Any, dset: Any, names: Sequence[str]) -> dict[str, Any]:
    """Image name -> its source's pixels (3, H, W), or None for an invariance image; {} for an NR metric."""
    if not is_full_reference(adapter):
        return {}
    sources = sorted(enumerate(dset.sources.names), key=lambda item: -len(item[1]))  # longest prefix first
    invariance = {invariance_name(s, t) for s in dset.sources.names for t in dset.params.invariance}
    out: dict[str, Any] = {}
    for name in names:
        index = next((i for i, s in sources if name.startswith(s + "/")), None)
        if index is None:
            raise ValueError(f"{name}: no source image of the set is its prefix")
        out[name] = None if name in invariance else dset.sources.pixels[index]
    return out
