"""Inputs the metric must refuse with a clear message rather than a raw torch error."""

from __future__ import annotations

import pytest
import torch

from shamisa_bench.archs.shamisa_arch import check_images


def test_a_meta_device_tensor_is_refused_clearly() -> None:
    with pytest.raises(ValueError, match=r"images are on the meta device \(shape \(1, 3, 40, 48\)\)"):
        check_images(torch.empty(1, 3, 40, 48, device="meta"))
