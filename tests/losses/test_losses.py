"""Tests of the SHAMISA loss terms on hand-computed cases."""

from __future__ import annotations

import math

import pytest
import torch

from shamisa_bench.graphs import ABLATIONS, GraphConfig, GraphOutput, RelationGraph
from shamisa_bench.losses import (
    TERMS,
    LossConfig,
    ShamisaLoss,
    covariance_loss,
    graph_invariance_loss,
    graph_regulariser,
    ot_loss,
    split_halves,
    variance_loss,
    vicreg_halves,
)
from shamisa_bench.train.steps import LayoutSpec, build_node_meta

# The reference configuration's values (configs/shamisa_a0.yaml of the official code), in full.
C_VAR, C_INV, C_COV = 11.975680785304435, 88.36882206311276, 57.21249573027589
R_GRAPH, OT_WEIGHT = -0.03419084992354765, 0.49057801093072007


def test_variance_loss_by_hand():
    # column 0: values 0, 2 -> unbiased var 2 -> std > 1 -> 0; column 1: var 0 -> std 0.01 -> 0.99
    z = torch.tensor([[0.0, 0.0], [2.0, 0.0]])
    assert variance_loss(z).item() == pytest.approx((0.0 + 0.99) / 2 / 2)
    # column var 0.25 (values 0, 0.5, 1 / ... ) -> std sqrt(0.2501)
    z3 = torch.tensor([[0.0], [0.5], [1.0]])
    assert variance_loss(z3).item() == pytest.approx((1 - math.sqrt(0.25 + 1e-4)) / 2, rel=1e-5)


def test_covariance_loss_by_hand():
    z = torch.tensor([[1.0, 1.0], [-1.0, -1.0]])  # cov [[2, 2], [2, 2]] -> (4 + 4) / 2
    assert covariance_loss(z).item() == pytest.approx(4.0)
    z3 = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]])  # cov [[1, .5], [.5, 1]] -> .5 / 2
    assert covariance_loss(z3).item() == pytest.approx(0.25)
    assert covariance_loss(torch.tensor([[1.0, 0.0], [-1.0, 0.0]])).item() == 0.0


def test_graph_invariance_loss_by_hand_reads_upper_triangle_only():
    z = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    w = torch.tensor([[7.0, 1.0, 0.5], [100.0, 7.0, 2.0], [100.0, 100.0, 7.0]])
    # 1 * 1 + 0.5 * 4 + 2 * 5 = 13, divided by N * E = 6
    assert graph_invariance_loss(z, w).item() == pytest.approx(13 / 6)
    assert graph_invariance_loss(z + 5.0, w).item() == pytest.approx(13 / 6)


def test_graph_regulariser_by_hand():
    w = torch.tensor([[9.0, 1.0, 0.5], [1.0, 9.0, 2.0], [0.5, 2.0, 9.0]])
    assert graph_regulariser(w).item() == pytest.approx(R_GRAPH * 5.25)
    assert graph_regulariser(w, 0.0).item() == 0.0


def test_ot_loss_by_hand():
    P = torch.tensor([[0.5, 0.5], [0.8, 0.2]])
    Q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    pairs = torch.tensor([[0], [1]])
    self_term = (math.log(0.5) + math.log(0.2)) / 4
    swap_term = 0.5 * (math.log(0.8) / 2 + math.log(0.5) / 2)  # Q0 -> P1 and Q1 -> P0
    expected = -0.5 * OT_WEIGHT * (self_term + swap_term)
    assert ot_loss(P, Q, pairs).item() == pytest.approx(expected, rel=1e-6)
    assert ot_loss(P, Q, torch.zeros(2, 0, dtype=torch.long)).item() == pytest.approx(-0.5 * OT_WEIGHT * self_term)
    assert ot_loss(P, Q, pairs, log_p=torch.log(P)).item() == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError):
        ot_loss(P, Q, torch.tensor([[0], [2]]))


def test_ot_loss_gradient_reaches_p_not_q():
    P = torch.tensor([[0.5, 0.5], [0.8, 0.2]], requires_grad=True)
    Q = torch.tensor([[0.6, 0.4], [0.3, 0.7]], requires_grad=True)
    ot_loss(P, Q, torch.tensor([[0], [1]])).backward()
    assert P.grad is not None and P.grad.abs().sum() > 0
    assert Q.grad is None


def test_split_halves():
    z = torch.arange(12.0).reshape(6, 2)
    a, b = split_halves(z)
    assert torch.equal(a, z[:3]) and torch.equal(b, z[3:])
    with pytest.raises(ValueError):
        split_halves(torch.zeros(5, 2))
    with pytest.raises(ValueError):
        split_halves(torch.zeros(2, 2))


def test_vicreg_halves_as_the_reference():
    # 4 references then 6 distorted rows: first half = refs 0, 1 + dists 4, 5, 6
    z = torch.arange(20.0).reshape(10, 2)
    is_ref = torch.tensor([True] * 4 + [False] * 6)
    a, b = vicreg_halves(z, is_ref)
    assert torch.equal(a, z[[0, 1, 4, 5, 6]]) and torch.equal(b, z[[2, 3, 7, 8, 9]])
    with pytest.raises(ValueError):
        vicreg_halves(z, is_ref[:9])
    with pytest.raises(ValueError):
        vicreg_halves(z, is_ref.long())


def _hand_graph(n: int, k: int = 2) -> GraphOutput:
    G = torch.zeros(n, n)
    G[0, 1] = G[1, 0] = 0.5
    G[2, 3] = G[3, 2] = 1.0
    P = torch.full((n, k), 1.0 / k)
    return GraphOutput(
        G=G,
        branch_weights=torch.full((6,), 1 / 6),
        edge_counts=torch.zeros(6),
        weight_sums=torch.zeros(6),
        branches={},
        logits=torch.zeros(n, k),
        P=P,
        log_p=torch.log(P),
        Q=P.clone(),
        structural_pairs=torch.tensor([[0], [2]]),
        is_ref=torch.zeros(n, dtype=torch.bool),
    )


def test_total_by_hand_four_nodes():
    z = torch.tensor([[0.0, 0.0], [2.0, 0.0], [1.0, 1.0], [-1.0, -1.0]])
    out = ShamisaLoss()(z, _hand_graph(4))
    var = 0.2475 + 0.0  # half 1 as in test_variance_loss_by_hand; half 2 has std sqrt(2) in both columns
    cov = 0.0 + 4.0
    pull = (0.5 * 4 + 1.0 * 8) / (4 * 2)
    r = R_GRAPH * (0.25 + 1.0)
    ot = -0.5 * OT_WEIGHT * (math.log(0.5) * 0.5 + math.log(0.5) * 0.5)
    inv = 2 * (pull + ot + r)
    terms = {k: v.item() for k, v in out.terms.items()}
    assert set(terms) == set(TERMS)
    assert terms["var"] == pytest.approx(var, rel=1e-4)
    assert terms["cov"] == pytest.approx(cov)
    assert terms["graph_pull"] == pytest.approx(pull)
    assert terms["r_graph"] == pytest.approx(r)
    assert terms["ot"] == pytest.approx(ot)
    assert terms["inv"] == pytest.approx(inv)
    assert out.total.item() == pytest.approx(C_VAR * var + C_INV * inv + C_COV * cov, rel=1e-5)


def test_collapsed_z_gives_large_variance_loss():
    z = torch.ones(28, 16) * torch.linspace(-1, 1, 16)  # every row equal
    a, _ = split_halves(z)
    assert variance_loss(a).item() == pytest.approx(0.495, abs=1e-6)
    out = ShamisaLoss()(z, _hand_graph(28))
    assert out.terms["var"].item() == pytest.approx(0.99, abs=1e-5)
    assert out.terms["graph_pull"].item() == pytest.approx(0.0, abs=1e-6)
    spread = ShamisaLoss()(torch.randn(28, 16, generator=torch.Generator().manual_seed(0)) * 3, _hand_graph(28))
    assert spread.terms["var"].item() < 0.05


def _step(cfg: GraphConfig | None = None, seed: int = 0, d: int = 16, e: int = 12):
    cfg = cfg if cfg is not None else GraphConfig(knn_k=5)
    spec = LayoutSpec(n_items=2, n_contents=2, n_compositions=2, n_levels=3)
    g = torch.Generator().manual_seed(seed)
    nodes = build_node_meta(spec, 4 * torch.rand(2, 2, 3, generator=g))
    h_raw = torch.randn(spec.n_nodes, d, generator=g, requires_grad=True)
    z = torch.randn(spec.n_nodes, e, generator=g, requires_grad=True)
    torch.manual_seed(seed)
    graph = RelationGraph(cfg, feature_dim=d)
    return nodes, h_raw, z, graph


def test_gradients_finite_on_random_inputs():
    nodes, h_raw, z, graph = _step()
    h = torch.nn.functional.normalize(h_raw, dim=1)
    out = ShamisaLoss()(z, graph(h, nodes))
    assert torch.isfinite(out.total)
    assert all(torch.isfinite(v) for v in out.terms.values())
    out.total.backward()
    for name, t in [("h", h_raw), ("z", z), ("prototypes", next(graph.prototypes.parameters()))]:
        assert t.grad is not None, name
        assert torch.isfinite(t.grad).all(), name
        assert t.grad.abs().sum() > 0, name


def test_fp32_under_bf16_autocast():
    nodes, h_raw, z, graph = _step()
    h = torch.nn.functional.normalize(h_raw, dim=1)
    ref = ShamisaLoss()(z, graph(h, nodes))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        zz = torch.nn.Linear(12, 12).to(torch.float32)(z)  # runs in bf16 under autocast
        assert zz.dtype == torch.bfloat16
        out = ShamisaLoss()(z.bfloat16(), graph(h.bfloat16(), nodes))
    assert out.total.dtype == torch.float32
    assert all(v.dtype == torch.float32 for v in out.terms.values())
    assert out.total.item() == pytest.approx(ref.total.item(), rel=0.05)
    out.total.backward()
    assert torch.isfinite(h_raw.grad).all()


@pytest.mark.parametrize("name", ABLATIONS)
def test_loss_ablations(name):
    nodes, h_raw, z, graph = _step(GraphConfig.ablation(name, knn_k=5))
    out = ShamisaLoss(LossConfig.ablation(name))(z, graph(torch.nn.functional.normalize(h_raw, dim=1), nodes))
    assert torch.isfinite(out.total)
    r, ot = out.terms["r_graph"].item(), out.terms["ot"].item()
    if name in ("no_regulariser", "vicreg_binary"):
        assert r == 0.0
    else:
        assert r < 0.0
    if name in ("no_ot", "vicreg_binary"):
        assert ot == 0.0
    else:
        assert ot > 0.0
    t = out.terms
    assert out.total.item() == pytest.approx(
        (C_VAR * t["var"] + C_INV * t["inv"] + C_COV * t["cov"]).item(), rel=1e-6
    )


def test_disabled_terms_are_zero_and_left_out():
    nodes, h_raw, z, graph = _step()
    g = graph(torch.nn.functional.normalize(h_raw, dim=1), nodes)
    out = ShamisaLoss(LossConfig(enable_inv=False, enable_cov=False))(z, g)
    assert out.terms["inv"].item() == 0.0 and out.terms["cov"].item() == 0.0
    assert out.total.item() == pytest.approx(C_VAR * out.terms["var"].item())


def test_loss_config_validation_and_bad_inputs():
    with pytest.raises(ValueError):
        LossConfig(c_var=-1.0)
    with pytest.raises(ValueError):
        LossConfig(c_inv=float("inf"))
    with pytest.raises(TypeError):
        LossConfig(enable_ot="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown ablation"):
        LossConfig.ablation("nope")
    with pytest.raises(ValueError, match="match the graph"):
        ShamisaLoss()(torch.zeros(5, 2), _hand_graph(4))
    with pytest.raises(TypeError):
        ShamisaLoss()(torch.zeros(4, 2), {"G": torch.zeros(4, 4)})  # type: ignore[arg-type]
