"""The embedded default: the whole method on the demo family, end to end.

:func:`run_demo` is :func:`~sae_lens_stitch.study.run_study` on the shipped family (or a
retrained one) with synthetic tokens (fit tokens of one seed, evaluation tokens of another),
plus what only a family with a known ground truth allows: the classification scored against
the ground truth, the swap curve in two more orders, and the method's claims, each with what
was measured and whether it agrees. The study's steps (classification, insert effects,
stitching, swap curves, Frankenstein, assembly, report) are in ``OUT/steps/``; the
Frankenstein and assembled SAEs are also copied publish-ready to ``OUT/frankenstein_sae`` and
``OUT/assembled_sae`` (optionally pushing the first).
"""

from __future__ import annotations

import itertools
import json
import math
import time
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict

from sae_lens_stitch._atomic import atomic_write_text
from sae_lens_stitch.analysis.classify import ClassificationSummary
from sae_lens_stitch.analysis.effects import InsertEffectsSummary
from sae_lens_stitch.analysis.families import FeatureFamily
from sae_lens_stitch.analysis.match import DEFAULT_THRESHOLD
from sae_lens_stitch.assembly.assemble import AssemblyResult
from sae_lens_stitch.assembly.pareto import Pareto
from sae_lens_stitch.demo.data import DemoFamily, family_dir, load_family
from sae_lens_stitch.demo.scoring import NoveltyScore, score_novelty
from sae_lens_stitch.demo.train import TrainingRecipe
from sae_lens_stitch.evaluation.curves import Curve, FrankensteinPlane, swap_curve
from sae_lens_stitch.evaluation.metrics import Metrics, evaluate
from sae_lens_stitch.io.load import load_sae
from sae_lens_stitch.io.save import save_sae
from sae_lens_stitch.provenance import get_provenance
from sae_lens_stitch.study.config import StudyConfig
from sae_lens_stitch.study.run import RESULT_FILE as STEP_RESULT
from sae_lens_stitch.study.run import STEPS_DIR, run_study

N_TOKENS = 32_768
N_TOKENS_QUICK = 4_096
EVAL_SEED = 1234
"""Seed of the demo's evaluation activations (the family was trained on other seeds)."""
PUBLISH_FOLDER = "frankenstein_sae"
ASSEMBLED_FOLDER = "assembled_sae"
FIT_SEED = 4321
"""Seed of the tokens the assembly and the refits are fitted on (evaluation: EVAL_SEED)."""
RESULT_FILE = "demo.json"


class Claim(BaseModel):
    """One of the method's claims and what the demo measured about it."""

    model_config = ConfigDict(extra="forbid")

    claim: str
    measured: str
    agrees: bool | None
    """Whether the measurement agrees with the claim (None: nothing to compare)."""


class PairResult(BaseModel):
    """Measurements for one width pair (small -> large)."""

    model_config = ConfigDict(extra="forbid")

    small: int
    large: int
    classification: ClassificationSummary
    ground_truth: NoveltyScore
    """Precision / recall of "novel" against the ground truth (see demo.scoring)."""
    insert_effects: InsertEffectsSummary
    sign_agreement: float
    """Fraction of live large latents whose insert-effect sign agrees with the cosine proxy."""
    auroc: float | None
    mean_delta_mse_proxy_novel: float | None
    """Mean ΔMSE of inserting one proxy-novel latent alone (negative: it helps)."""
    mean_delta_mse_proxy_reconstruction: float | None
    n_families: int
    n_split_families: int
    """Families with one small latent and several large ones (feature splitting)."""
    mse_small: float
    mse_stitched: float
    """MSE of the small SAE with every novel latent of the large one inserted."""
    d_sae_stitched: int
    l0_small: float
    l0_stitched: float
    swap_monotone: bool | None
    swap_increases: int | None
    swap_steps: int
    swap_monotone_effect_order: bool | None
    """The same curve with families ordered by their effect alone (most helpful first)."""
    swap_increases_effect_order: int | None
    swap_monotone_novel_first: bool | None
    """The curve that inserts the novel latents first, then swaps families (index order)."""
    swap_increases_novel_first: int | None
    swap_mse_end: float
    mse_large: float


class FrankensteinResult(BaseModel):
    model_config = ConfigDict(extra="forbid")

    d_sae: int
    widths: list[int]
    inserted_per_width: list[int]
    metrics: Metrics
    trained_fvu_at_same_width: float
    """FVU of the trained family interpolated (in log width) at the Frankenstein's d_sae."""
    trained_l0_at_same_width: float
    beats_trained_at_same_width: bool
    higher_l0_than_trained: bool
    publish_folder: str


class AssemblyDemo(BaseModel):
    """The assembled SAE of the demo family against the method's fixed rules."""

    model_config = ConfigDict(extra="forbid")

    result: AssemblyResult
    pareto: Pareto
    folder: str


class DemoResult(BaseModel):
    """Everything :func:`run_demo` measured (written to ``demo.json``)."""

    model_config = ConfigDict(extra="forbid")

    out_dir: str
    family_dir: str
    widths: list[int]
    n_tokens: int
    threshold: float
    quick: bool
    pairs: list[PairResult]
    metrics: dict[str, Metrics]
    frankenstein: FrankensteinResult
    plane: FrankensteinPlane
    assembly: AssemblyDemo | None = None
    claims: list[Claim]
    report: str
    pushed: dict[str, Any] | None = None
    seconds: float

    def lines(self) -> list[str]:
        """A short human summary."""
        out = [f"demo family: widths {self.widths}, {self.n_tokens} synthetic tokens"]
        for p in self.pairs:
            gt = p.ground_truth
            prec = "n/a" if gt.precision is None else f"{gt.precision:.2f}"
            rec = "n/a" if gt.recall is None else f"{gt.recall:.2f}"
            out.append(
                f"  {p.small:>4} -> {p.large:<4} novel {p.classification.novel_fraction:.0%} "
                f"(precision {prec}, recall {rec} vs ground truth); sign agreement "
                f"{p.sign_agreement:.0%}; swap {'monotone' if p.swap_monotone else 'NOT monotone'}"
                f"; MSE {p.mse_small:.4f} -> stitched {p.mse_stitched:.4f}"
            )
        f = self.frankenstein
        out.append(
            f"  Frankenstein: {f.d_sae} latents, FVU {f.metrics.fvu.value:.4f} vs trained "
            f"{f.trained_fvu_at_same_width:.4f} at that width; L0 {f.metrics.l0.value:.2f} vs "
            f"{f.trained_l0_at_same_width:.2f}"
        )
        if self.assembly is not None:
            r = self.assembly.result
            out.append(
                f"  assembled: {r.eval.d_sae} latents (width budget {r.width_budget}), FVU "
                f"{r.eval.fvu.value:.4f}, L0 {r.eval.l0.value:.2f}; see steps/assemble/pareto.png"
            )
        for c in self.claims:
            mark = {True: "agrees", False: "DISAGREES", None: "n/a"}[c.agrees]
            out.append(f"  [{mark}] {c.claim}: {c.measured}")
        out.append(f"report: {self.report}")
        out.append(f"publish-ready SAE folder: {f.publish_folder}")
        if self.pushed:
            out.append(f"pushed: {self.pushed.get('commit_url')}")
        out.append(f"done in {self.seconds:.1f} s")
        return out


def _interp_log_width(widths: list[int], values: list[float], width: int) -> float:
    """Piecewise-linear interpolation in log2(width), extrapolating from the end segments."""
    xs = [math.log2(w) for w in widths]
    x = math.log2(width)
    i = 0
    while i < len(xs) - 2 and x > xs[i + 1]:
        i += 1
    x0, x1, y0, y1 = xs[i], xs[i + 1], values[i], values[i + 1]
    return y0 + (y1 - y0) * (x - x0) / (x1 - x0)


def _mean(values: torch.Tensor) -> float | None:
    return float(values.mean()) if values.numel() else None


def _pair(
    k: int,
    saes: list[Any],
    acts_ND: torch.Tensor,
    family: DemoFamily,
    steps: dict[str, Any],
    threshold: float,
) -> PairResult:
    """One width pair's figures: the study's steps, plus what only the demo measures (the
    ground truth, and the swap curve in two more orders)."""
    small, large = saes[k], saes[k + 1]
    cls = steps["classify"]["pairs"][k]
    eff = steps["effects"]["pairs"][k]
    curve = Curve.model_validate(steps["curves"]["curves"][k])
    stitched = steps["stitch"]["pairs"][k]["variants"][0]
    metrics = steps["evaluate"]["metrics"]
    m_small, m_large = (Metrics.model_validate(m) for m in list(metrics.values())[k : k + 2])
    novel_mask = torch.zeros(large.cfg.d_sae, dtype=torch.bool)
    novel_mask[cls["novel_by_cosine"]] = True
    score = score_novelty(small, large, novel_mask, family.truth)
    fams = [FeatureFamily.model_validate(f) for f in cls["families"]]
    delta = torch.tensor(eff["delta_mse"], dtype=torch.float64)
    max_cos = torch.tensor(cls["max_cosine"])
    dead = torch.zeros(large.cfg.d_sae, dtype=torch.bool)
    dead[cls["dead"]] = True
    proxy_novel = max_cos < threshold
    by_effect = swap_curve(
        small,
        large,
        acts_ND,
        families=fams,
        threshold=threshold,
        include_novel=True,
        order="effect",
    )
    novel_first = swap_curve(
        small, large, acts_ND, families=fams, threshold=threshold, novel_first=True
    )
    summary = InsertEffectsSummary.model_validate(eff["summary"])
    p = summary.proxy
    return PairResult(
        small=small.cfg.d_sae,
        large=large.cfg.d_sae,
        classification=ClassificationSummary.model_validate(cls["summary"]),
        ground_truth=score,
        insert_effects=summary,
        sign_agreement=p.accuracy.value,
        auroc=None if p.auroc is None else p.auroc.value,
        mean_delta_mse_proxy_novel=_mean(delta[~dead & proxy_novel]),
        mean_delta_mse_proxy_reconstruction=_mean(delta[~dead & ~proxy_novel]),
        n_families=len(fams),
        n_split_families=sum(len(f.small_indices) == 1 and len(f.large_indices) > 1 for f in fams),
        mse_small=m_small.mse.value,
        mse_stitched=stitched["metrics"]["mse"]["value"],
        d_sae_stitched=small.cfg.d_sae + stitched["n_inserted"],
        l0_small=m_small.l0.value,
        l0_stitched=stitched["metrics"]["l0"]["value"],
        swap_monotone=curve.monotone,
        swap_increases=curve.n_increases,
        swap_steps=len(curve.points) - 1,
        swap_monotone_effect_order=by_effect.monotone,
        swap_increases_effect_order=by_effect.n_increases,
        swap_monotone_novel_first=novel_first.monotone,
        swap_increases_novel_first=novel_first.n_increases,
        swap_mse_end=curve.points[-1].mse,
        mse_large=m_large.mse.value,
    )


def _claims(pairs: list[PairResult], fr: FrankensteinResult) -> list[Claim]:
    fractions = ", ".join(
        f"{p.small}->{p.large}: {p.classification.novel_fraction:.0%}" for p in pairs
    )
    agree = ", ".join(f"{p.small}->{p.large}: {p.sign_agreement:.0%}" for p in pairs)
    helps = [
        p.mean_delta_mse_proxy_novel is not None
        and p.mean_delta_mse_proxy_novel < 0
        and (
            p.mean_delta_mse_proxy_reconstruction is None
            or p.mean_delta_mse_proxy_reconstruction > 0
        )
        for p in pairs
    ]
    monotone = [p.swap_monotone for p in pairs]
    precision = [p.ground_truth.precision for p in pairs]
    recall = [p.ground_truth.recall for p in pairs]
    return [
        Claim(
            claim="a sizeable share of the larger SAE's latents is novel (authors: ~35%)",
            measured=f"novel fraction per width pair: {fractions}",
            agrees=all(0.1 <= p.classification.novel_fraction <= 0.9 for p in pairs),
        ),
        Claim(
            claim="the cosine proxy finds the latents that are new relative to the smaller SAE",
            measured="precision / recall of 'novel' vs ground truth: "
            + ", ".join(
                f"{p.small}->{p.large}: {'n/a' if a is None else f'{a:.2f}'} / "
                f"{'n/a' if b is None else f'{b:.2f}'}"
                for p, a, b in zip(pairs, precision, recall, strict=True)
            ),
            agrees=all(a is not None and a >= 0.5 for a in precision)
            and all(b is not None and b >= 0.5 for b in recall),
        ),
        Claim(
            claim="the insert effect's sign agrees with the cosine proxy",
            measured=f"sign agreement per pair: {agree}",
            agrees=all(p.sign_agreement >= 0.5 for p in pairs),
        ),
        Claim(
            claim="inserting a novel latent lowers MSE; inserting a reconstruction latent raises it",
            measured="mean ΔMSE (novel / reconstruction) per pair: "
            + ", ".join(
                f"{p.small}->{p.large}: {_fmt(p.mean_delta_mse_proxy_novel)} / "
                f"{_fmt(p.mean_delta_mse_proxy_reconstruction)}"
                for p in pairs
            ),
            agrees=all(helps),
        ),
        Claim(
            claim="stitching every novel latent into the smaller SAE lowers its MSE",
            measured=", ".join(
                f"{p.small}->{p.large}: {p.mse_small:.4f} -> {p.mse_stitched:.4f}" for p in pairs
            ),
            agrees=all(p.mse_stitched < p.mse_small for p in pairs),
        ),
        Claim(
            claim="swapping families (then inserting novel latents) one at a time lowers the "
            "error monotonically",
            measured=", ".join(
                f"{p.small}->{p.large}: {_rises(p.swap_monotone, p.swap_increases)} in "
                f"{p.swap_steps} steps (families by index; by effect: "
                f"{_rises(p.swap_monotone_effect_order, p.swap_increases_effect_order)}; novel "
                f"latents first: {_rises(p.swap_monotone_novel_first, p.swap_increases_novel_first)})"
                for p in pairs
            ),
            agrees=all(m is True for m in monotone),
        ),
        Claim(
            claim="Frankenstein's SAE reconstructs better than trained SAEs of the same width",
            measured=f"FVU {fr.metrics.fvu.value:.4f} at {fr.d_sae} latents vs "
            f"{fr.trained_fvu_at_same_width:.4f} for the trained family at that width",
            agrees=fr.beats_trained_at_same_width,
        ),
        Claim(
            claim="... but with a higher L0",
            measured=f"L0 {fr.metrics.l0.value:.2f} vs {fr.trained_l0_at_same_width:.2f}",
            agrees=fr.higher_l0_than_trained,
        ),
    ]


def _rises(monotone: bool | None, increases: int | None) -> str:
    return "monotone" if monotone else f"{increases} rises"


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.2e}"


def run_demo(
    out_dir: str | Path = "runs/demo",
    *,
    retrain: bool = False,
    push: str | None = None,
    quick: bool = False,
    threshold: float = DEFAULT_THRESHOLD,
    family: str | Path | None = None,
    recipe: TrainingRecipe | None = None,
    endpoint: str | None = None,
    show_progress: bool | None = None,
    overwrite: bool = False,
) -> DemoResult:
    """Run the whole method on the demo family and write the report into ``out_dir``
    (created with its parents): ``report.{json,md,html}``, ``steps/`` (the study's steps and
    their plots), ``demo.json`` and the
    publish-ready ``frankenstein_sae/`` (SAE-Lens layout). ``retrain`` first trains the family
    again into ``out_dir/family`` (minutes) and uses it; ``family`` names another family folder;
    ``push`` publishes the Frankenstein SAE to that Hub repo; ``quick`` uses fewer tokens;
    ``recipe`` overrides the training recipe used with ``retrain``; ``endpoint`` the Hub
    endpoint used with ``push``. Like :func:`~sae_lens_stitch.io.publish.push_to_hub`, ``push``
    refuses to replace the SAE's existing folder in the repo unless ``overwrite``."""
    start = time.perf_counter()
    out = Path(out_dir).expanduser().absolute()
    out.mkdir(parents=True, exist_ok=True)
    if retrain:
        from sae_lens_stitch.demo.train import train_family

        train_family(out / "family", recipe, show_progress=show_progress)
        family = out / "family"
    fam = load_family(family)
    n_tokens = N_TOKENS_QUICK if quick else N_TOKENS
    acts_ND = fam.truth.sample(n_tokens, seed=EVAL_SEED)
    fit_ND = fam.truth.sample(n_tokens, seed=FIT_SEED)
    saes = fam.saes
    widths = [s.cfg.d_sae for s in saes]
    names = [f"trained {w}" for w in widths]
    config = StudyConfig(threshold=threshold, eval_fraction=0.5, width=widths[1], agreement=True)
    tokens = torch.cat([fit_ND, acts_ND])  # the study reports on the second half
    study = run_study(
        saes,
        tokens,
        out,
        config=config.model_copy(update={"skip": ["report"]}),
        names=names,
        overwrite=True,
        show_progress=show_progress,
    )
    steps = {
        name: json.loads((out / STEPS_DIR / name / STEP_RESULT).read_text(encoding="utf-8"))
        for name in study.steps_run + study.steps_reused
    }
    metrics_by_width = {
        w: Metrics.model_validate(steps["evaluate"]["metrics"][n])
        for w, n in zip(widths, names, strict=True)
    }
    pairs = [_pair(k, saes, acts_ND, fam, steps, threshold) for k in range(len(saes) - 1)]
    plane = FrankensteinPlane.model_validate(steps["frankenstein"]["plane"])
    frank, fr = _frankenstein(
        out / STEPS_DIR / "frankenstein" / steps["frankenstein"]["folder"],
        acts_ND,
        metrics_by_width,
        out,
    )
    metrics = {f"trained[{w}]": metrics_by_width[w] for w in widths}
    metrics[f"frankenstein[{frank.cfg.d_sae}]"] = fr.metrics
    assembly = _assembly(out, steps["assemble"])
    metrics[f"assembled[{assembly.result.eval.d_sae}]"] = assembly.result.eval
    claims = _claims(pairs, fr)
    notes = _notes(fam, widths, n_tokens, pairs, claims, assembly)
    run_study(  # the report, from the finished steps, with the demo's notes
        saes,
        tokens,
        out,
        config=config.model_copy(update={"only": ["report"]}),
        names=names,
        show_progress=show_progress,
        title="sae-lens-stitch demo: synthetic hierarchy family",
        notes=notes,
    )
    pushed = None
    if push:
        from sae_lens_stitch.io.publish import push_to_hub

        pushed = push_to_hub(
            frank, push, metrics=fr.metrics, overwrite=overwrite, endpoint=endpoint
        ).model_dump(mode="json")
    result = DemoResult(
        out_dir=str(out),
        family_dir=str(family_dir(family)),
        widths=widths,
        n_tokens=n_tokens,
        threshold=threshold,
        quick=quick,
        pairs=pairs,
        metrics=metrics,
        frankenstein=fr,
        plane=plane,
        assembly=assembly,
        claims=claims,
        report=str(out / "report.html"),
        pushed=pushed,
        seconds=time.perf_counter() - start,
    )
    atomic_write_text(out / RESULT_FILE, result.model_dump_json(indent=2))
    return result


def _frankenstein(
    folder: Path,
    acts_ND: torch.Tensor,
    metrics_by_width: dict[int, Metrics],
    out: Path,
) -> tuple[Any, FrankensteinResult]:
    """The study's Frankenstein SAE, evaluated, compared with the trained family interpolated
    at its width, and copied publish-ready to ``out/frankenstein_sae``."""
    frank = load_sae(folder)
    m_fr = evaluate(frank, acts_ND)
    details = get_provenance(frank).operations[-1].details
    widths = sorted(metrics_by_width)
    fvu_same = _interp_log_width(
        widths, [metrics_by_width[w].fvu.value for w in widths], frank.cfg.d_sae
    )
    l0_same = _interp_log_width(
        widths, [metrics_by_width[w].l0.value for w in widths], frank.cfg.d_sae
    )
    publish = save_sae(frank, out / PUBLISH_FOLDER, overwrite=True)
    fr = FrankensteinResult(
        d_sae=frank.cfg.d_sae,
        widths=widths,
        inserted_per_width=list(details.get("inserted_per_width", [])),
        metrics=m_fr,
        trained_fvu_at_same_width=fvu_same,
        trained_l0_at_same_width=l0_same,
        beats_trained_at_same_width=m_fr.fvu.value < fvu_same,
        higher_l0_than_trained=m_fr.l0.value > l0_same,
        publish_folder=str(publish),
    )
    return frank, fr


def _notes(
    fam: DemoFamily,
    widths: list[int],
    n_tokens: int,
    pairs: list[PairResult],
    claims: list[Claim],
    assembly: AssemblyDemo,
) -> list[str]:
    """The report's notes: the family, the ground truth, each pair, each claim, the outputs."""
    return [
        f"Demo family: standard ReLU/L1 SAEs of widths {widths} trained on a synthetic activation "
        f"model with parent/child feature hierarchies ({fam.truth.n_features} ground-truth "
        f"features, d_in {fam.truth.d_in}); {n_tokens} evaluation tokens (seed {EVAL_SEED}).",
        "Ground truth: an SAE represents a feature when a decoder row has cosine >= 0.9 with it; "
        "a large latent is truly novel when the feature it tracks (best cosine, >= 0.5) is not "
        "represented by the smaller SAE.",
        *[
            f"{p.small}->{p.large}: novel precision {_opt(p.ground_truth.precision)}, recall "
            f"{_opt(p.ground_truth.recall)}, feature recall {_opt(p.ground_truth.feature_recall)}; "
            f"{p.n_split_families} of {p.n_families} families split one small latent"
            for p in pairs
        ],
        *[
            f"[{ {True: 'agrees', False: 'disagrees', None: 'n/a'}[c.agrees] }] {c.claim}: {c.measured}"
            for c in claims
        ],
        f"Publish-ready Frankenstein SAE: {PUBLISH_FOLDER}/ (SAE-Lens layout; "
        "`sae-stitch push` or `sae-stitch demo --push REPO`).",
        *_assembly_notes(assembly),
    ]


def _assembly(out: Path, step: dict[str, Any]) -> AssemblyDemo:
    """The study's assembled SAE (from the smallest SAE, kept, up to the second width, fitted
    on tokens of another seed), copied to ``out/assembled_sae``."""
    sae = load_sae(out / STEPS_DIR / "assemble" / step["folder"])
    folder = save_sae(sae, out / ASSEMBLED_FOLDER, overwrite=True)
    return AssemblyDemo(
        result=AssemblyResult.model_validate(step["result"]),
        pareto=Pareto.model_validate(step["pareto"]),
        folder=str(folder),
    )


def _assembly_notes(assembly: AssemblyDemo) -> list[str]:
    r = assembly.result
    fixed = sorted(
        (p for p in assembly.pareto.points if p.kind != "assembled"), key=lambda p: p.fvu
    )
    best_fixed = next((p for p in fixed if p.width <= r.eval.d_sae), None)
    rises = sum(
        1 for a, b in itertools.pairwise(r.path) if b.move != "refit" and b.mse_eval > a.mse_eval
    )
    return [
        f"Assembled SAE ({ASSEMBLED_FOLDER}/): from the {r.widths[0]}-latent SAE (kept), "
        f"{len(r.path) - 1} greedy moves under a width budget of {r.width_budget}, refit: "
        f"{r.eval.d_sae} latents, FVU {r.eval.fvu.value:.4f}, L0 {r.eval.l0.value:.2f} on the "
        f"evaluation tokens (fitted on {r.n_fit_tokens} tokens of seed {FIT_SEED}); "
        f"the path never rises on fit tokens and rises at {rises} of {len(r.path) - 1} moves on "
        "evaluation tokens.",
        "Best of the fixed rules and trained SAEs at that width or less: "
        + (
            f"{best_fixed.label}, FVU {best_fixed.fvu:.4f}."
            if best_fixed is not None
            else "none is that small."
        ),
    ]


def _opt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"
