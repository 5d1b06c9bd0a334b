"""Tests of the SHAMISA relation graphs on hand-checkable layouts."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from shamisa_bench.graphs import (
    ABLATIONS,
    BRANCHES,
    GraphConfig,
    RelationGraph,
    dist_dist_edges,
    knn_edges,
    ref_dist_edges,
    ref_ref_edges,
    severity_kernel,
    sinkhorn,
    structural_edges,
    structural_pairs,
    topk_entries,
    transport_edges,
    transport_scores,
)
from shamisa_bench.train.steps import LayoutSpec, build_node_meta

# 2 items, 1 content (views 0 = full scale, 1 = x0.5), 2 compositions, 3 levels.
# Node order (the reference's): refs (item, view) at 0..3, then distorted crops
# (item, view, comp, level) at 4 + 12 * item + 6 * view + 3 * comp + level.
SPEC_2V = LayoutSpec(n_items=2, n_contents=1, n_compositions=2, n_levels=3)
SEV_2V = torch.tensor(
    [
        [[0.0, 1.0, 4.0], [2.0, 2.0, 3.0]],  # item 0: comp 0, comp 1
        [[0.5, 0.0, 1.5], [4.0, 3.0, 0.0]],  # item 1
    ]
)


def ref(item: int, view: int) -> int:
    return 2 * item + view


def node(item: int, view: int, comp: int, level: int) -> int:
    return 4 + 12 * item + 6 * view + 3 * comp + level


def k(d: float) -> float:
    return math.exp(-0.75 * d)


def dense(n: int, edges: dict[tuple[int, int], float]) -> torch.Tensor:
    """Symmetric matrix: each edge stored in both directions."""
    w = torch.zeros(n, n)
    for (i, j), v in edges.items():
        w[i, j] = v
        w[j, i] = v
    return w


def directed(n: int, entries: dict[tuple[int, int], float]) -> torch.Tensor:
    w = torch.zeros(n, n)
    for (i, j), v in entries.items():
        w[i, j] = v
    return w


@pytest.fixture()
def nodes2v():
    return build_node_meta(SPEC_2V, SEV_2V)


def test_hand_layout_node_order(nodes2v):
    assert len(nodes2v) == 28
    assert nodes2v.is_ref.nonzero().flatten().tolist() == [0, 1, 2, 3]
    assert nodes2v.item[:4].tolist() == [0, 0, 1, 1] and nodes2v.view[:4].tolist() == [0, 1, 0, 1]
    # node 14 = 4 + 6 + 3 + 1: item 0, view 1, comp 1, level 1 -> severity 2
    assert node(0, 1, 1, 1) == 14
    assert (int(nodes2v.item[14]), int(nodes2v.view[14]), int(nodes2v.comp[14]), int(nodes2v.level[14])) == (0, 1, 1, 1)
    assert float(nodes2v.var_severity[14]) == 2.0
    # node 25: item 1, view 1, comp 1, level 0 -> severity 4
    assert float(nodes2v.var_severity[25]) == 4.0 and int(nodes2v.item[25]) == 1


def test_severity_kernel_values():
    d = torch.tensor([0.0, 1.0, 4.0])
    assert torch.allclose(severity_kernel(d), torch.tensor([1.0, math.exp(-0.75), math.exp(-3.0)]))


def test_ref_dist_every_edge_by_hand(nodes2v):
    # one direction only: row = reference view, column = its distorted crops
    expected = {
        (0, 4): k(0), (0, 5): k(1), (0, 6): k(4), (0, 7): k(2), (0, 8): k(2), (0, 9): k(3),
        (1, 10): k(0), (1, 11): k(1), (1, 12): k(4), (1, 13): k(2), (1, 14): k(2), (1, 15): k(3),
        (2, 16): k(0.5), (2, 17): k(0), (2, 18): k(1.5), (2, 19): k(4), (2, 20): k(3), (2, 21): k(0),
        (3, 22): k(0.5), (3, 23): k(0), (3, 24): k(1.5), (3, 25): k(4), (3, 26): k(3), (3, 27): k(0),
    }  # fmt: skip
    w = ref_dist_edges(nodes2v)
    assert w.dtype == torch.float32
    assert torch.allclose(w, directed(28, expected), atol=1e-7)
    wb = ref_dist_edges(nodes2v, binary=True)
    assert torch.equal(wb, directed(28, {e: 1.0 for e in expected}))


def dd_expected(binary: bool = False) -> dict[tuple[int, int], float]:
    """Every ordered pair of distinct distorted crops of one item and composition."""
    entries = {}
    for b in range(2):
        for c in range(2):
            members = [(v, lv) for v in range(2) for lv in range(3)]
            for v1, l1 in members:
                for v2, l2 in members:
                    if (v1, l1) == (v2, l2):
                        continue
                    d = abs(float(SEV_2V[b, c, l1]) - float(SEV_2V[b, c, l2]))
                    entries[(node(b, v1, c, l1), node(b, v2, c, l2))] = 1.0 if binary else k(d)
    return entries


def test_dist_dist_every_edge_by_hand(nodes2v):
    expected = dd_expected()
    assert len(expected) == 4 * 30  # 4 (item, comp) groups of 6 crops, both directions
    # spot checks written out: item 0 comp 0 levels 0 and 2 (severities 0 and 4), across views
    assert expected[(4, 12)] == expected[(12, 4)] == k(4)  # node(0, 0, 0, 0) and node(0, 1, 0, 2)
    w = dist_dist_edges(nodes2v, topk=4096)
    assert torch.allclose(w, directed(28, expected), atol=1e-7)
    assert torch.equal(w, w.T)
    assert torch.equal(dist_dist_edges(nodes2v, topk=4096, binary=True), directed(28, dd_expected(True)))


def test_dist_dist_topk_cut_and_ties(nodes2v):
    # 32 directed entries have weight 1 (equal severities); ties go by row-major order
    ones = sorted(e for e, v in dd_expected().items() if v == 1.0)
    assert len(ones) == 32
    w = dist_dist_edges(nodes2v, topk=10)
    assert torch.equal(w, directed(28, {e: 1.0 for e in ones[:10]}))
    # 40 = the 32 weight-1 entries plus the 8 at |diff| = 0.5 (item 1, comp 0, levels 0 and 1)
    w40 = dist_dist_edges(nodes2v, topk=40)
    assert int((w40 != 0).sum()) == 40
    assert int((w40 == 1.0).sum()) == 32
    half = [(node(1, v1, 0, l1), node(1, v2, 0, l2)) for v1 in range(2) for v2 in range(2)
            for l1, l2 in ((0, 1), (1, 0))]  # fmt: skip
    for e in half:
        assert math.isclose(float(w40[e]), k(0.5), rel_tol=1e-6)


def test_topk_entries_keeps_heaviest():
    w = directed(4, {(0, 1): 0.2, (0, 2): 0.9, (1, 3): 0.5, (3, 1): 0.9, (2, 2): 0.1})
    assert torch.equal(topk_entries(w, 2), directed(4, {(0, 2): 0.9, (3, 1): 0.9}))
    assert torch.equal(topk_entries(w, 3), directed(4, {(0, 2): 0.9, (3, 1): 0.9, (1, 3): 0.5}))
    assert torch.equal(topk_entries(w, 10), w)
    with pytest.raises(ValueError):
        topk_entries(w, -1)


def test_ref_ref_by_hand(nodes2v):
    refs = [0, 1, 2, 3]
    expected = {(a, b): 1.0 for i, a in enumerate(refs) for b in refs[i + 1 :]}
    assert torch.equal(ref_ref_edges(nodes2v), dense(28, expected))


def test_structural_empty_with_one_content(nodes2v):
    # views 0 and 1 differ in parity: no structural pair exists
    assert not structural_edges(nodes2v).any()
    assert structural_pairs(nodes2v).shape == (2, 0)


def test_structural_by_hand_two_contents():
    spec = LayoutSpec(n_items=2, n_contents=2, n_compositions=2, n_levels=3)
    nodes = build_node_meta(spec, torch.zeros(2, 2, 3))
    assert len(nodes) == 56  # refs 0..7, then node 8 + 24 * item + 6 * view + 3 * comp + level

    def nd(b: int, v: int, c: int, lv: int) -> int:
        return 8 + 24 * b + 6 * v + 3 * c + lv

    # same item, comp and level; views 0-2 (full scale) and 1-3 (x0.5)
    pairs = sorted((nd(b, v, c, lv), nd(b, v + 2, c, lv)) for b in range(2) for v in (0, 1)
                   for c in range(2) for lv in range(3))  # fmt: skip
    assert pairs[:3] == [(8, 20), (9, 21), (10, 22)]
    assert torch.equal(structural_edges(nodes), dense(56, {p: 1.0 for p in pairs}))
    assert structural_pairs(nodes).T.tolist() == [list(p) for p in pairs]


def test_knn_hand_line():
    h = torch.tensor([[0.0], [1.0], [3.0], [7.0]])
    # nearest: 0->1 (d 1), 1->0 (d 1), 2->1 (d 2), 3->2 (d 4); each choice is stored with its
    # reverse and summed, so the mutual pair 0-1 carries twice its affinity 1/2
    w = knn_edges(h, k=1)
    assert torch.allclose(w, dense(4, {(0, 1): 1.0, (1, 2): 1 / 3, (2, 3): 1 / 5}), atol=1e-6)
    full = knn_edges(h, k=10)  # clipped to N - 1: complete graph, every pair mutual
    assert int((full != 0).sum()) == 12
    assert math.isclose(float(full[0, 3]), 2 / 8, rel_tol=1e-6)


def test_knn_symmetric_self_excluded_and_differentiable():
    g = torch.Generator().manual_seed(0)
    h = torch.nn.functional.normalize(torch.randn(40, 8, generator=g), dim=1).requires_grad_()
    w = knn_edges(h, k=5)
    assert torch.equal(w, w.T)
    assert not torch.diagonal(w).any()
    assert ((w != 0).sum(dim=1) >= 5).all()
    assert ((w >= 0) & (w <= 2)).all()
    w.sum().backward()
    assert h.grad is not None and torch.isfinite(h.grad).all() and h.grad.abs().sum() > 0


def test_knn_duplicate_rows_give_finite_gradient():
    h = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], requires_grad=True)
    knn_edges(h, k=1).sum().backward()
    assert torch.isfinite(h.grad).all()


def _swav_sinkhorn(logits: torch.Tensor, eps: float, iters: int) -> torch.Tensor:
    q = torch.exp(logits / eps).T
    q /= q.sum()
    kk, n = q.shape
    for _ in range(iters):
        q /= q.sum(dim=1, keepdim=True)
        q /= kk
        q /= q.sum(dim=0, keepdim=True)
        q /= n
    return (q * n).T


def test_sinkhorn_marginals_and_reference_form():
    g = torch.Generator().manual_seed(1)
    logits = 0.3 * torch.randn(64, 8, generator=g, dtype=torch.float64)
    q = sinkhorn(logits, eps=0.05, iters=6)
    assert q.shape == (64, 8) and not q.requires_grad
    assert torch.allclose(q.sum(dim=1), torch.ones(64, dtype=q.dtype), atol=1e-5)
    assert torch.allclose(q.double(), _swav_sinkhorn(logits, 0.05, 6), atol=1e-5)
    q_long = sinkhorn(logits, eps=0.05, iters=300)
    assert torch.allclose(q_long.sum(dim=0), torch.full((8,), 64 / 8, dtype=q.dtype), rtol=1e-3)
    # each iteration brings the prototype marginal closer to uniform
    err = [float((sinkhorn(logits, 0.05, it).sum(0) - 8).abs().max()) for it in (1, 6, 30)]
    assert err[0] > err[1] > err[2]


def test_sinkhorn_extreme_logits_stay_finite():
    logits = torch.tensor([[50.0, -50.0], [40.0, -60.0], [-30.0, 30.0]])
    q = sinkhorn(logits, eps=0.05, iters=6)
    assert torch.isfinite(q).all()
    with pytest.raises(ValueError):
        sinkhorn(logits, eps=0.0)


def test_transport_scores_by_hand():
    P = torch.tensor([[0.5, 0.5], [0.9, 0.1]], dtype=torch.float64)
    s = transport_scores(P)
    s01 = (math.log(0.5) * 0.9 + math.log(0.5) * 0.1) / 2
    s10 = (math.log(0.9) * 0.5 + math.log(0.1) * 0.5) / 2
    assert math.isclose(float(s[0, 1]), s01, rel_tol=1e-9)  # directed: S is not symmetrised
    assert math.isclose(float(s[1, 0]), s10, rel_tol=1e-9)
    assert math.isclose(float(s[0, 0]), math.log(0.5) * 0.5, rel_tol=1e-9)


def test_transport_topk_count():
    g = torch.Generator().manual_seed(2)
    P = torch.softmax(torch.randn(28, 6, generator=g) / 0.3, dim=1).requires_grad_()
    w = transport_edges(P, topk=8 * 28)
    # 8N of the N^2 directed entries, diagonal included, min-max over the full matrix
    assert int((w != 0).sum()) == 224
    assert float(w.detach().max()) == pytest.approx(1.0) and float(w.detach().min()) >= 0.0
    assert not torch.equal(w, w.T)
    s = transport_scores(P.detach())
    normed = (s - s.min()) / (s.max() - s.min())
    kept = w.detach() != 0
    assert torch.allclose(w.detach()[kept], normed[kept], atol=1e-6)
    assert float(s[kept].min()) >= float(s[~kept].max())  # the kept entries are the highest scores
    # each S_ii is the best score of its column (Gibbs): here every diagonal entry is kept
    assert bool(torch.diagonal(kept).all())
    w.sum().backward()
    assert torch.isfinite(P.grad).all() and P.grad.abs().sum() > 0


def _features(n: int, d: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(n, d, generator=g), dim=1)


def test_relation_graph_combines_branches_fixed(nodes2v):
    torch.manual_seed(0)
    cfg = GraphConfig(aggregator="fixed", knn_k=3, dist_dist_topk=20)
    rg = RelationGraph(feature_dim=8, config=cfg)
    h = _features(28, 8, 3)
    out = rg(h, nodes2v)
    assert torch.allclose(out.branch_weights, torch.full((6,), 1 / 6))
    # kNN enters once, with its aggregator weight, like every branch
    expected = sum(c / 6 * out.branches[b] for b, c in zip(BRANCHES, cfg.coefficients()))
    assert torch.allclose(out.G, expected)
    # stored directed entries: ref-dist 24 (one way), dist-dist top 20, ref-ref 4 * 3,
    # structural 0, transport 8N
    assert out.edge_counts[:4].tolist() == [24.0, 20.0, 12.0, 0.0]
    assert out.edge_counts[5] == 8 * 28
    assert out.edge_counts[4] == float((out.branches["knn"] != 0).sum())
    for i, b in enumerate(BRANCHES):
        if b in out.branches:
            assert torch.allclose(out.weight_sums[i], cfg.coefficients()[i] * out.branches[b].sum()), b
    residual = RelationGraph(feature_dim=8, config=replace(cfg, knn_residual=True))
    torch.manual_seed(0)
    residual.load_state_dict(rg.state_dict())
    out2 = residual(h, nodes2v)
    assert torch.allclose(out2.G - cfg.knn_coef * out2.branches["knn"], out.G, atol=1e-6)


def test_aggregator_weights_sum_to_one_and_stop_grad(nodes2v):
    torch.manual_seed(0)
    h = _features(28, 8, 4).requires_grad_()
    out = RelationGraph(feature_dim=8, config=GraphConfig(knn_k=3))(h, nodes2v)
    assert float(out.branch_weights.sum()) == pytest.approx(1.0)
    assert (out.branch_weights > 0).all()
    assert not out.branch_weights.requires_grad
    assert out.G.requires_grad  # kNN and transport keep their gradient to h
    frozen = RelationGraph(feature_dim=8, config=GraphConfig(knn_k=3))
    assert not any(p.requires_grad for p in frozen.aggregator.parameters())
    assert all(p.requires_grad for p in frozen.prototypes.parameters())
    rg = RelationGraph(feature_dim=8, config=GraphConfig(knn_k=3, stop_grad=False))
    assert all(p.requires_grad for p in rg.aggregator.parameters())
    out2 = rg(h, nodes2v)
    assert out2.branch_weights.requires_grad
    out2.G.sum().backward()
    assert rg.aggregator.mlp[1].weight.grad is not None
    assert rg.aggregator.mlp[1].weight.grad.abs().sum() > 0


def test_detach_structure_same_graph_no_gradient_to_h(nodes2v):
    h = _features(28, 8, 4).requires_grad_()
    torch.manual_seed(0)
    live = RelationGraph(feature_dim=8, config=GraphConfig(knn_k=3))
    torch.manual_seed(0)
    cut = RelationGraph(feature_dim=8, config=GraphConfig(knn_k=3, detach_structure=True))
    a, b = live(h, nodes2v), cut(h, nodes2v)
    assert torch.equal(a.G, b.G)  # the same graph, only its gradient differs
    assert not b.G.requires_grad
    (grad_live,) = torch.autograd.grad(a.G.sum(), h)
    assert grad_live.abs().sum() > 0
    # L_ot still trains h and the prototypes through P
    assert b.P.requires_grad and b.log_p.requires_grad


def test_reference_layout_edge_counts():
    spec = LayoutSpec()  # a0: 2 items, 3 contents, 4 compositions, 5 levels -> 252 nodes
    g = torch.Generator().manual_seed(5)
    nodes = build_node_meta(spec, (2.5 * torch.randn(2, 4, 5, generator=g)).abs().clamp(0, 4))
    torch.manual_seed(0)
    out = RelationGraph(feature_dim=16)(_features(252, 16, 6), nodes)
    counts = dict(zip(BRANCHES, out.edge_counts.tolist()))
    assert counts["ref_dist"] == 2 * 6 * 20
    assert 2 * 4 * 30 * 29 == 6960  # directed dist-dist entries before the cut
    assert counts["dist_dist"] == 4096
    assert counts["ref_ref"] == 12 * 11
    assert counts["structural"] == 2 * 2 * 4 * 5 * 6  # 240 pairs, both directions
    assert counts["knn"] >= 252 * 31
    assert counts["transport"] == 8 * 252
    assert out.structural_pairs.shape == (2, 240)


def test_deterministic(nodes2v):
    h = _features(28, 8, 7)
    torch.manual_seed(3)
    a = RelationGraph(feature_dim=8, config=GraphConfig(knn_k=3))(h, nodes2v)
    torch.manual_seed(3)
    b = RelationGraph(feature_dim=8, config=GraphConfig(knn_k=3))(h, nodes2v)
    assert torch.equal(a.G, b.G) and torch.equal(a.Q, b.Q)


def test_forward_fp32_under_bf16_autocast(nodes2v):
    torch.manual_seed(0)
    rg = RelationGraph(feature_dim=8, config=GraphConfig(knn_k=3))
    h = _features(28, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = rg(h.bfloat16(), nodes2v)
    assert out.G.dtype == torch.float32 and out.P.dtype == torch.float32 and out.Q.dtype == torch.float32


EXPECTED_ACTIVE = {
    "full": BRANCHES,
    "binary": BRANCHES,
    "fixed_weights": BRANCHES,
    **{f"no_{b}": tuple(x for x in BRANCHES if x != b) for b in BRANCHES},
    "metadata_only": ("ref_dist", "dist_dist", "ref_ref", "structural"),
    "structure_only": ("knn", "transport"),
    "vicreg_binary": ("structural",),
    "no_regulariser": BRANCHES,
    "no_ot": BRANCHES,
}


def test_every_ablation_is_covered():
    assert set(EXPECTED_ACTIVE) == set(ABLATIONS)


@pytest.mark.parametrize("name", ABLATIONS)
def test_ablation_active_branches(name):
    spec = LayoutSpec(n_items=2, n_contents=2, n_compositions=2, n_levels=3)
    nodes = build_node_meta(spec, SEV_2V)
    cfg = GraphConfig.ablation(name, knn_k=3)
    assert cfg.active_branches() == EXPECTED_ACTIVE[name]
    torch.manual_seed(0)
    out = RelationGraph(feature_dim=8, config=cfg)(_features(56, 8, 9), nodes)
    active = [b in EXPECTED_ACTIVE[name] for b in BRANCHES]
    for i, b in enumerate(BRANCHES):
        if active[i]:
            assert out.edge_counts[i] > 0, b
            assert out.branch_weights[i] > 0, b
        else:
            assert out.edge_counts[i] == 0 and out.branch_weights[i] == 0 and b not in out.branches, b
    assert float(out.branch_weights.sum()) == pytest.approx(1.0)
    assert (name == "binary") == (cfg.binary and cfg.active_branches() == BRANCHES)
    if name in ("binary", "vicreg_binary"):
        for b in ("ref_dist", "dist_dist", "ref_ref", "structural"):
            if b in out.branches:
                assert set(out.branches[b].unique().tolist()) <= {0.0, 1.0}
    if name in ("fixed_weights", "vicreg_binary"):
        assert cfg.aggregator == "fixed"


def test_config_validation():
    with pytest.raises(ValueError):
        GraphConfig(aggregator="mean")
    with pytest.raises(ValueError):
        GraphConfig(knn_coef=-0.1)
    with pytest.raises(ValueError):
        GraphConfig(knn_k=0)
    with pytest.raises(ValueError):
        GraphConfig(temperature=0.0)
    with pytest.raises(ValueError):
        GraphConfig(ref_dist_coef=float("nan"))
    with pytest.raises(TypeError):
        GraphConfig(binary=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no branch"):
        GraphConfig(**{f"enable_{b}": False for b in BRANCHES})
    with pytest.raises(ValueError, match="unknown ablation"):
        GraphConfig.ablation("no_everything")


def test_bad_inputs(nodes2v):
    rg = RelationGraph(feature_dim=8, config=GraphConfig(knn_k=3))
    with pytest.raises(ValueError, match="nodes describe"):
        rg(_features(27, 8, 0), nodes2v)
    with pytest.raises(ValueError, match=r"\(N, 8\)"):
        rg(_features(28, 9, 0), nodes2v)
    bad = build_node_meta(SPEC_2V, SEV_2V.clone().index_put_((torch.tensor(0),), torch.full((2, 3), 5.0)))
    with pytest.raises(ValueError, match="var_severity"):
        rg(_features(28, 8, 0), bad)
    with pytest.raises(ValueError):
        RelationGraph(feature_dim=0)
