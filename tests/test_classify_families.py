"""classify_features and feature_families against brute-force references."""

from __future__ import annotations

import json

import torch
from conftest import make_sae, related_pair

from sae_lens_stitch import (
    ClassificationSummary,
    FeatureCategory,
    classify_features,
    feature_families,
)


def dense_cos(a, b):
    a = a / a.norm(dim=-1, keepdim=True)
    b = b / b.norm(dim=-1, keepdim=True)
    return a @ b.T


def test_classification_matches_dense() -> None:
    small, large = related_pair("standard", n_small=20, n_novel=9, children=3)
    cls = classify_features(small, large, threshold=0.7)
    sims = dense_cos(large.W_dec.detach(), small.W_dec.detach())
    max_cos, arg = sims.max(dim=1)
    torch.testing.assert_close(cls.max_cosine, max_cos, atol=1e-5, rtol=0)
    assert torch.equal(cls.best_partner, arg)
    expect = [
        FeatureCategory.RECONSTRUCTION if c >= 0.7 else FeatureCategory.NOVEL
        for c in max_cos.tolist()
    ]
    assert cls.categories == expect
    # the planted structure: 60 children then 9 random directions
    assert cls.summary.n_reconstruction == 60 and cls.summary.n_novel == 9
    assert cls.novel_indices.tolist() == list(range(60, 69))
    assert torch.equal(cls.n_children, torch.bincount(arg[max_cos >= 0.7], minlength=20))
    assert (cls.n_children == 3).all()
    torch.testing.assert_close(cls.small_max_cosine, sims.max(dim=0).values, atol=1e-5, rtol=0)
    assert abs(cls.summary.novel_fraction - 9 / 69) < 1e-9


def test_summary_json_is_stable() -> None:
    small, large = related_pair("standard", n_small=8, n_novel=3)
    a = classify_features(small, large).summary.model_dump_json()
    b = classify_features(small, large).summary.model_dump_json()
    assert a == b
    back = ClassificationSummary.model_validate_json(a)
    assert back.model_dump_json() == a
    data = json.loads(a)
    assert data["threshold"] == 0.7 and data["d_sae_large"] == 19


def test_dead_mask_reports_dead() -> None:
    small, large = related_pair("standard", n_small=8, n_novel=3)
    dead = torch.zeros(large.cfg.d_sae, dtype=torch.bool)
    dead[[0, 17]] = True
    cls = classify_features(small, large, dead_mask=dead)
    assert cls.categories[0] is FeatureCategory.DEAD and cls.categories[17] is FeatureCategory.DEAD
    assert cls.summary.n_dead == 2 and cls.summary.n_novel == 2


def components_bruteforce(adj_SL: torch.Tensor) -> list[tuple[list[int], list[int]]]:
    n_s, _n_l = adj_SL.shape
    seen_s: set[int] = set()
    out = []
    for start in range(n_s):
        if start in seen_s or not adj_SL[start].any():
            continue
        s_set, l_set, frontier = {start}, set(), [("s", start)]
        while frontier:
            side, i = frontier.pop()
            if side == "s":
                for j in adj_SL[i].nonzero().flatten().tolist():
                    if j not in l_set:
                        l_set.add(j)
                        frontier.append(("l", j))
            else:
                for j in adj_SL[:, i].nonzero().flatten().tolist():
                    if j not in s_set:
                        s_set.add(j)
                        frontier.append(("s", j))
        seen_s |= s_set
        out.append((sorted(s_set), sorted(l_set)))
    return out


def test_families_match_bruteforce_components() -> None:
    small = make_sae("standard", 30, 6, seed=11)
    large = make_sae("standard", 50, 6, seed=12)
    threshold = 0.8
    fams = feature_families(small, large, threshold=threshold, chunk_size=7)
    adj = dense_cos(small.W_dec.detach(), large.W_dec.detach()) >= threshold
    ref = components_bruteforce(adj)
    assert [(f.small_indices, f.large_indices) for f in fams] == ref
    assert any(len(f.small_indices) > 1 or len(f.large_indices) > 1 for f in fams)
    for f in fams:
        assert f.max_cosine >= threshold


def test_planted_families() -> None:
    small, large = related_pair("standard", n_small=10, n_novel=4, children=2)
    fams = feature_families(small, large)
    assert [(f.small_indices, f.large_indices) for f in fams] == [
        ([j], [2 * j, 2 * j + 1]) for j in range(10)
    ]
    assert fams[0].kind == "1->2"
