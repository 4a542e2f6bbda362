"""Assembly: the quadratic objective is exact against real forward passes, refit keeps every
latent firing as before and never hurts, and assemble respects its budgets and reports what
the built SAE really does."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import torch
from conftest import EXACT_ARCHS, make_sae, make_transcoder, related_pair
from sae_lens import SAE

from sae_lens_stitch import (
    BudgetError,
    IncompatibleSAEsError,
    InvalidActivationsError,
    InvalidArgumentError,
    UnsupportedArchitectureError,
    assemble,
    get_provenance,
    load_sae,
    refit,
    save_sae,
)
from sae_lens_stitch.assembly.assemble import _build
from sae_lens_stitch.assembly.objective import build_objective
from sae_lens_stitch.assembly.refit import solve_scales
from sae_lens_stitch.evaluation.metrics import evaluate


def family(arch: str = "standard", apply_b_dec: bool = True) -> list[SAE[Any]]:
    small, large = related_pair(
        arch, n_small=8, n_novel=6, d_in=16, apply_b_dec_to_input=apply_b_dec
    )
    mid = make_sae(arch, 14, 16, seed=7, apply_b_dec_to_input=apply_b_dec)
    return [small, mid, large]


def acts_for(saes: list[SAE[Any]], n: int = 600, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    big = saes[-1]
    coef = torch.rand(n, big.cfg.d_sae, generator=gen) * (
        torch.rand(n, big.cfg.d_sae, generator=gen) < 0.15
    )
    with torch.no_grad():
        return coef @ big.W_dec + 0.3 * torch.randn(n, big.cfg.d_in, generator=gen) + 0.5


def sse_of(sae: SAE[Any], x: torch.Tensor) -> float:
    m = evaluate(sae, x)
    return m.mse.value * m.n_tokens


@pytest.mark.parametrize("arch", EXACT_ARCHS)
@pytest.mark.parametrize("apply_b_dec", [True, False])
def test_objective_prices_any_subset_and_scales_exactly(arch: str, apply_b_dec: bool) -> None:
    saes = family(arch, apply_b_dec)
    x = acts_for(saes)
    obj = build_objective(saes, x, batch_size=128)
    gen = torch.Generator().manual_seed(3)
    for trial in range(3):
        union_S = torch.randperm(obj.n_latents, generator=gen)[: 10 + 5 * trial].sort().values
        scales = 0.5 + torch.rand(union_S.numel(), generator=gen, dtype=torch.float64)
        bias = obj.best_bias(union_S, scales)
        sae = _build(saes, obj, union_S, scales, bias, start=None)
        assert sse_of(sae, x) == pytest.approx(obj.sse(union_S, scales), rel=1e-5)
        # with a foreign bias (the base SAE's b_dec), the closed form still holds
        other = torch.randn(16, generator=gen, dtype=torch.float64)
        sae2 = _build(saes, obj, union_S, scales, other, start=None)
        assert sse_of(sae2, x) == pytest.approx(obj.sse_with_bias(union_S, scales, other), rel=1e-5)


def test_objective_matches_dense_float64_computation() -> None:
    saes = family()
    x = acts_for(saes, n=300)
    obj = build_objective(saes, x, batch_size=64)
    with torch.no_grad():
        a = torch.cat([s.encode(x) for s in saes], dim=1).double()
    W = torch.cat([s.W_dec for s in saes]).detach().double()
    xc = x.double() - x.double().mean(0)
    ac = a - a.mean(0)
    q_dense = (ac.T @ ac) * (W @ W.T)
    c_dense = ((ac.T @ xc) * W).sum(-1)
    assert torch.allclose(obj.c_U, c_dense, rtol=1e-5, atol=1e-6)
    assert obj.total_variance == pytest.approx(float(xc.pow(2).sum()), rel=1e-9)
    for k in (0, 5, obj.n_latents - 1):
        assert torch.allclose(obj.column(k), q_dense[:, k], rtol=1e-5, atol=1e-6)
    union_S = torch.tensor([1, 4, 9, 20, 30])
    restricted = obj.restrict(union_S)
    v = torch.rand(5, dtype=torch.float64)
    expect = q_dense[union_S][:, union_S] @ v
    assert torch.allclose(restricted.matvec(v), expect, rtol=1e-5, atol=1e-5)
    assert torch.allclose(restricted.dense(), q_dense[union_S][:, union_S], rtol=1e-6, atol=1e-6)
    unsorted = torch.tensor([30, 4, 20, 9])
    assert torch.allclose(
        obj.restrict(unsorted).dense(), q_dense[unsorted][:, unsorted], rtol=1e-6, atol=1e-6
    )
    assert torch.equal(obj.counts_U, (a != 0).sum(0))


@pytest.mark.parametrize("arch", [*EXACT_ARCHS, "topk"])
def test_refit_keeps_activations_and_lowers_error(arch: str) -> None:
    sae = make_sae(arch, 24, 16, seed=1)
    x = acts_for([sae], n=500)
    new = refit(sae, x)
    with torch.no_grad():
        assert torch.allclose(new.encode(x), sae.encode(x), atol=1e-5)
    before, after = evaluate(sae, x), evaluate(new, x)
    assert after.mse.value <= before.mse.value
    assert after.l0.value == pytest.approx(before.l0.value)
    prov = get_provenance(new)
    assert prov.operations[-1].operation == "refit"
    scales = torch.tensor([o.scale for o in prov.latents], dtype=torch.float64)
    assert bool((scales >= 0).all())
    ratio = new.W_dec.norm(dim=-1) / sae.W_dec.norm(dim=-1)
    assert torch.allclose(ratio.double(), scales, rtol=1e-4)
    assert sae.cfg.architecture() == new.cfg.architecture()


def test_refit_solution_is_the_non_negative_least_squares_optimum() -> None:
    saes = family()
    x = acts_for(saes, n=400)
    obj = build_objective(saes, x)
    union_S = torch.arange(obj.n_latents)  # overlapping latents: some scales want to be < 0
    s, info = solve_scales(obj, union_S)
    assert bool((s >= 0).all())
    # brute force: scipy's NNLS on the centred design matrix
    import numpy as np
    from scipy.optimize import nnls

    with torch.no_grad():
        a = torch.cat([m.encode(x) for m in saes], dim=1).double()
    W = torch.cat([m.W_dec for m in saes]).detach().double()
    ac, xc = a - a.mean(0), x.double() - x.double().mean(0)
    design = torch.einsum("ti,id->tdi", ac, W).reshape(-1, obj.n_latents)
    alive = (a != 0).any(0)
    ref, _ = nnls(design[:, alive].numpy(), xc.reshape(-1).numpy(), maxiter=5000)
    sse_ref = float(np.sum((design[:, alive].numpy() @ ref - xc.reshape(-1).numpy()) ** 2))
    assert info.sse_after == pytest.approx(sse_ref, rel=1e-6)
    assert info.sse_after <= info.sse_before


def test_refit_refuses_what_it_cannot_do_exactly() -> None:
    topk = make_sae("topk", 16, 16, rescale_acts_by_decoder_norm=True)
    x = torch.randn(64, 16)
    with pytest.raises(UnsupportedArchitectureError, match="rescale_acts_by_decoder_norm"):
        refit(topk, x)
    with pytest.raises(UnsupportedArchitectureError, match="another hook"):
        refit(make_transcoder("transcoder", 8, 0), torch.randn(64, 12))
    with pytest.raises(InvalidActivationsError, match="NaN"):
        refit(make_sae("standard", 8, 16), torch.full((20, 16), float("nan")))


def test_assemble_path_budgets_and_final_metrics() -> None:
    saes = family()
    x = acts_for(saes, n=1200)
    fit, ev = x[:800], x[800:]
    a = assemble(saes, fit, eval_activations=ev, width=16, start=0, refit=False)
    assert a.sae.cfg.d_sae <= 16
    assert a.path[0].move == "start" and a.path[0].width == 8
    fit_mse = [p.mse_fit for p in a.path]
    assert all(b < a_ for a_, b in itertools.pairwise(fit_mse))  # every move helps
    assert a.path[-1].mse_eval == pytest.approx(a.eval.mse.value, rel=1e-5)
    assert a.path[-1].mse_fit == pytest.approx(a.fit.mse.value, rel=1e-5)
    assert a.path[-1].l0 == pytest.approx(a.fit.l0.value, rel=1e-9)
    real_fit = evaluate(a.sae, fit)
    for name in ("mse", "fvu", "l0", "n_dead", "n_dense"):
        assert getattr(a.fit, name).value == pytest.approx(getattr(real_fit, name).value, rel=1e-5)
    # the kept start SAE's latents are all there, first and unchanged
    prov = get_provenance(a.sae)
    assert [o.index for o in prov.latents[:8]] == list(range(8))
    with torch.no_grad():
        assert torch.allclose(a.sae.encode(ev)[:, :8], saes[0].encode(ev), atol=1e-5)
    assert a.result.selected_per_sae[0] == 8
    again = assemble(saes, fit, eval_activations=ev, width=16, start=0, refit=False)
    assert [p.model_dump() for p in again.path] == [p.model_dump() for p in a.path]

    refit_a = assemble(saes, fit, eval_activations=ev, width=16, start=0)
    assert refit_a.path[-1].move == "refit"
    assert refit_a.fit.mse.value <= a.fit.mse.value + 1e-6
    assert refit_a.path[-1].mse_eval == pytest.approx(refit_a.eval.mse.value, rel=1e-5)
    assert any(o.scale != 1.0 for o in get_provenance(refit_a.sae).latents)
    assert get_provenance(refit_a.sae).operations[-1].details["width_budget"] == 16


def test_assemble_under_an_l0_budget_from_empty() -> None:
    saes = family()
    x = acts_for(saes, n=800)
    a = assemble(saes, x, l0=2.0, refit=False, eval_fraction=0.25)
    assert a.result.n_eval_tokens == 200 and a.result.n_fit_tokens == 600
    assert a.path[0].width == 0
    assert a.path[-1].l0 <= 2.0 + 1e-9
    assert a.fit.l0.value <= 2.0 + 1e-9
    # without keep_start, a start over the budget is cut down first
    b = assemble(saes, x, width=6, start=2, keep_start=False, pool=[0, 1, 2], refit=False)
    assert b.sae.cfg.d_sae <= 6
    assert b.path[1].move == "remove"


def test_assembled_sae_saves_and_loads_with_plain_sae_lens(tmp_path) -> None:
    saes = family()
    x = acts_for(saes, n=800)
    a = assemble(saes, x, width=14, start=0)
    folder = save_sae(a.sae, tmp_path / "assembled")
    plain = SAE.load_from_disk(str(folder))
    with torch.no_grad():
        assert torch.allclose(plain(x), a.sae(x), atol=1e-6)
    loaded = load_sae(str(folder))
    assert [o.scale for o in get_provenance(loaded).latents] == [
        o.scale for o in get_provenance(a.sae).latents
    ]


@pytest.mark.parametrize(
    ("kwargs", "error", "fragment"),
    [
        ({}, BudgetError, "width budget, an L0 budget"),
        ({"width": 0}, BudgetError, "positive integer; got 0"),
        ({"width": 4, "start": 0}, BudgetError, "width budget 4 is below the 8"),
        ({"l0": 0.01, "start": 0}, BudgetError, "L0 budget 0.01 is below"),
        ({"l0": float("nan")}, BudgetError, "got nan"),
        ({"width": 10, "pool": []}, BudgetError, "pool"),
        ({"width": 10, "pool": [0, 0]}, BudgetError, "twice"),
        ({"width": 10, "pool": [5]}, BudgetError, "got 5"),
        ({"width": 10, "start": 3}, BudgetError, "got 3"),
        ({"width": 10, "eval_fraction": 1.5}, InvalidArgumentError, "1.5"),
    ],
)
def test_assemble_bad_budgets(
    kwargs: dict[str, Any], error: type[Exception], fragment: str
) -> None:
    saes = family()
    with pytest.raises(error, match=fragment):
        assemble(saes, acts_for(saes, n=200), **kwargs)


def test_assemble_bad_family_and_activations() -> None:
    saes = family()
    x = acts_for(saes, n=200)
    with pytest.raises(IncompatibleSAEsError, match="d_in"):
        assemble([saes[0], make_sae("standard", 8, 12)], x, width=10)
    with pytest.raises(IncompatibleSAEsError, match="hook_name"):
        assemble([saes[0], make_sae("standard", 8, 16, hook_name="blocks.1.x")], x, width=10)
    with pytest.raises(UnsupportedArchitectureError, match="TopK"):
        assemble([make_sae("topk", 8, 16), make_sae("topk", 12, 16, seed=2)], x, width=10)
    bad = x.clone()
    bad[7, 3] = float("inf")
    with pytest.raises(InvalidActivationsError, match="token 7"):
        assemble(saes, bad, width=10)
    with pytest.raises(InvalidActivationsError, match="too few tokens"):
        assemble(saes, x[:20], width=10)
    with pytest.raises(InvalidActivationsError, match="d_in=16"):
        assemble(saes, x, eval_activations=torch.randn(50, 12), width=10)
    with pytest.raises(InvalidActivationsError, match="empty"):
        assemble(saes, iter([]), width=10)


def test_significance_gate_and_scaled_moves() -> None:
    saes = family()
    x = acts_for(saes, n=1200)
    fit, ev = x[:800], x[800:]
    # no move is significant at an absurd z: the result is the start SAE, refit
    stuck = assemble(saes, fit, eval_activations=ev, width=16, start=0, significance=1e9)
    assert len(stuck.path) == 2 and stuck.path[-1].move == "refit"
    assert stuck.result.selected_per_sae == [8, 0, 0]
    refit_start = evaluate(refit(saes[0], fit), ev)
    assert stuck.eval.mse.value == pytest.approx(refit_start.mse.value, rel=1e-5)
    # without the gate more moves are taken; scaled moves keep the path monotone on fit
    free = assemble(
        saes, fit, eval_activations=ev, width=16, start=0, significance=0.0, scaled=True
    )
    gated = assemble(saes, fit, eval_activations=ev, width=16, start=0, scaled=True)
    assert len(free.path) >= len(gated.path)
    for a in (free, gated):
        steps = [p.mse_fit for p in a.path if p.move != "refit"]
        assert all(b < a_ for a_, b in itertools.pairwise(steps))
        assert a.result.eval_rises == sum(
            1 for u, v in itertools.pairwise(a.path[:-1]) if v.mse_eval > u.mse_eval
        )
    unit = assemble(saes, fit, eval_activations=ev, width=16, start=0)  # width only: scale 1
    assert unit.path[0].mse_fit > free.path[0].mse_fit  # the scaled start is refit first
    by_l0 = assemble(saes, fit, eval_activations=ev, l0=unit.path[0].l0 + 1.0, start=0)
    assert by_l0.path[0].mse_fit == pytest.approx(free.path[0].mse_fit)  # L0 budget: scaled


def test_review_findings_budget_scales_dtypes_duplicates() -> None:
    saes = family()
    x = acts_for(saes, n=800)
    # max_moves may not leave the result over its budget
    with pytest.raises(BudgetError, match="max_moves=3 ran out"):
        assemble(saes, x, width=6, start=2, keep_start=False, pool=[0, 1, 2], max_moves=3)
    for bad in ({"max_moves": -1}, {"significance": float("nan")}, {"significance": -1.0}):
        with pytest.raises(BudgetError, match="got"):
            assemble(saes, x, width=10, **bad)  # type: ignore[arg-type]
    # latents whose activation never varies cannot enter (no infinite scale in scaled mode)
    flat = family()
    with torch.no_grad():
        flat[1].W_enc[:, :6] = 0.0
        flat[1].b_enc[:6] = 1.0
    a = assemble(flat, x, width=12, start=0, scaled=True, significance=0.0)
    assert all(torch.isfinite(torch.tensor([p.mse_fit for p in a.path])))
    assert a.path[-1].mse_eval == pytest.approx(a.eval.mse.value, rel=1e-5)
    assert not {r.index for p in a.path for r in p.added if r.sae == 1} & set(range(6))
    # half-precision SAEs: products in float32
    half = [make_sae("standard", w, 16, seed=w, dtype="bfloat16") for w in (8, 16)]
    built = assemble(half, x.bfloat16(), width=12, start=0)
    assert built.sae.W_dec.dtype == torch.bfloat16
    assert refit(half[0], x.bfloat16()).W_dec.dtype == torch.bfloat16
    # a selection that lists a latent twice is refused
    from sae_lens_stitch import InvalidIndicesError

    obj = build_objective(saes, x)
    with pytest.raises(InvalidIndicesError, match="twice"):
        solve_scales(obj, torch.tensor([1, 2, 1]))


def test_pareto_takes_the_family_in_any_order() -> None:
    from sae_lens_stitch.assembly.pareto import pareto

    saes = family()
    x = acts_for(saes, n=800)
    shuffled = [saes[2], saes[0], saes[1]]
    a = assemble(shuffled, x[:600], eval_activations=x[600:], width=12, start=1)
    plane = pareto(shuffled, x[:600], x[600:], a)
    trained = [p.width for p in plane.points if p.kind == "trained" and not p.refit]
    assert trained == sorted(trained)
    assert any(p.label.startswith("8 + all novel of 22") for p in plane.points)
