"""The within-group severity read-out."""

from __future__ import annotations

import pytest
import torch

from shamisa_bench.graphs.nodes import NodeMeta
from shamisa_bench.losses import severity_readout_loss


def _nodes(groups: int = 6, levels: int = 5, refs: int = 2, seed: int = 0) -> NodeMeta:
    gen = torch.Generator().manual_seed(seed)
    n = refs + groups * levels
    comp = torch.cat([torch.full((refs,), -1), torch.arange(groups).repeat_interleave(levels)])
    return NodeMeta(
        item=torch.zeros(n, dtype=torch.long),
        view=torch.zeros(n, dtype=torch.long),
        is_ref=torch.arange(n) < refs,
        comp=comp,
        level=torch.cat([torch.full((refs,), -1), torch.arange(levels).repeat(groups)]),
        var_severity=torch.cat([torch.full((refs,), float("nan")), 4 * torch.rand(groups * levels, generator=gen)]),
    )


def test_features_that_encode_severity_read_it_out_better() -> None:
    nodes = _nodes()
    gen = torch.Generator().manual_seed(1)
    noise = torch.randn(len(nodes), 64, generator=gen)
    encoding = noise.clone()
    encoding[:, 0] = torch.nan_to_num(nodes.var_severity, nan=0.0) * 3  # severity along one axis
    assert float(severity_readout_loss(encoding, nodes)) < 0.5 * float(severity_readout_loss(noise, nodes))


def test_group_offsets_and_reference_features_do_not_matter() -> None:
    nodes = _nodes()
    h = torch.randn(len(nodes), 32, generator=torch.Generator().manual_seed(2))
    shifted = h.clone()
    comp = nodes.comp
    shifted[~nodes.is_ref] += torch.randn(6, 32, generator=torch.Generator().manual_seed(3))[comp[~nodes.is_ref]]
    shifted[nodes.is_ref] = 100.0
    assert float(severity_readout_loss(shifted, nodes)) == pytest.approx(float(severity_readout_loss(h, nodes)),
                                                                         rel=1e-5)


def test_gradient_flows_to_distorted_features_only() -> None:
    nodes = _nodes()
    h = torch.randn(len(nodes), 16, generator=torch.Generator().manual_seed(4), requires_grad=True)
    severity_readout_loss(h, nodes).backward()
    assert float(h.grad[nodes.is_ref].abs().max()) == 0.0 and float(h.grad[~nodes.is_ref].abs().max()) > 0.0


def test_bad_input_is_named() -> None:
    nodes = _nodes()
    with pytest.raises(ValueError, match="shape"):
        severity_readout_loss(torch.zeros(len(nodes) - 1, 8), nodes)
    flat = NodeMeta(**{**{k: getattr(nodes, k) for k in NodeMeta.__dataclass_fields__},
                       "var_severity": torch.where(nodes.is_ref, float("nan"), 2.0)})
    with pytest.raises(ValueError, match="two different severities"):
        severity_readout_loss(torch.randn(len(nodes), 8), flat)
    refs_only = NodeMeta(**{k: getattr(nodes, k)[nodes.is_ref] for k in NodeMeta.__dataclass_fields__})
    with pytest.raises(ValueError, match="no distorted crops"):
        severity_readout_loss(torch.randn(len(refs_only), 8), refs_only)


def test_the_added_term_is_the_weighted_readout_and_nothing_at_zero() -> None:
    from shamisa_bench.losses.severity import add_severity_term

    nodes = _nodes()
    h = torch.randn(len(nodes), 16, generator=torch.Generator().manual_seed(2), requires_grad=True)
    total = torch.tensor(3.0)
    same, none = add_severity_term(total, h, nodes, 0.0)
    assert same is total and none is None
    added, severity = add_severity_term(total, h, nodes, 2.5)
    assert float(severity.detach()) == pytest.approx(float(severity_readout_loss(h.detach(), nodes)))
    assert float(added.detach()) == pytest.approx(3.0 + 2.5 * float(severity.detach()))
    added.backward()
    assert h.grad is not None and float(h.grad.abs().sum()) > 0
    # every group's levels alike: nothing to read out, a zero term (the run goes on)
    flat = NodeMeta(**{**{k: getattr(nodes, k) for k in NodeMeta.__dataclass_fields__},
                       "var_severity": torch.where(nodes.is_ref, nodes.var_severity, torch.ones(len(nodes)))})
    added, severity = add_severity_term(total, h, flat, 2.5)
    assert float(severity.detach()) == 0.0 and float(added.detach()) == 3.0
    with pytest.raises(ValueError, match="must have shape"):
        add_severity_term(total, h[:-1], nodes, 1.0)
