"""The whole method on a user's own family, in one call: :func:`run_study`.

Steps (see :data:`~sae_lens_stitch.study.config.STEPS`), each over every adjacent width pair
where it applies: evaluate the trained SAEs; compare (max-cosine statistics and histograms);
classify (novel by cosine, dead latents, families); insert effects (helps / hurts by effect);
stitch (the smaller SAE with every novel-by-cosine latent of the larger, and with the
helps-by-effect ones only); swap curves; Frankenstein's SAE and the L0-FVU plane; assembly
(the best SAE the family's latents make under a width / L0 budget, refit) with the Pareto
plane; the report (HTML / Markdown / JSON with plots).

The tokens are split once: every figure is reported on the last ``eval_fraction`` of them, and
assembly and refits are fitted on the rest. Each SAE is encoded once per token set
(:class:`~sae_lens_stitch.study.shared.SharedEncodings`) and every exact figure comes from that
one pass; swap curves and the Pareto baselines make their own passes.

Resumable: each step writes ``OUT/steps/NAME/`` (``result.json``, plots, SAE folders) into a
temporary folder renamed into place when it is complete, so a step folder is whole or absent.
A second run with the same inputs and options reuses every finished step; ``OUT/study.json``
records the inputs' fingerprint, and a run with other inputs refuses the folder unless told to
overwrite it.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field
from sae_lens import SAE

from sae_lens_stitch._atomic import atomic_write_text
from sae_lens_stitch.analysis.classify import (
    FeatureCategory,
    FeatureClassification,
    classify_from_matches,
)
from sae_lens_stitch.analysis.effects import effects_from_sums, insert_effects
from sae_lens_stitch.analysis.families import FeatureFamily, feature_families
from sae_lens_stitch.analysis.match import (
    FeatureMatches,
    match_features,
    similarity_histogram,
    similarity_stats,
)
from sae_lens_stitch.assembly.objective import family_union
from sae_lens_stitch.errors import StitchError, StudyError
from sae_lens_stitch.evaluation.curves import (
    Curve,
    FrankensteinPlane,
    PlanePoint,
    swap_curve,
)
from sae_lens_stitch.evaluation.metrics import Metrics, dead_latents, evaluate, materialize
from sae_lens_stitch.io.save import save_sae
from sae_lens_stitch.provenance import content_hash, display_name
from sae_lens_stitch.report.document import PlotFiles, StitchReport, write_report
from sae_lens_stitch.report.plots import (
    plot_curves,
    plot_frankenstein_plane,
    plot_insert_effects,
    plot_match_histogram,
    plot_max_cosine_histograms,
    plot_pareto,
)
from sae_lens_stitch.study.config import STEPS, StepName, StudyConfig
from sae_lens_stitch.study.shared import SharedEncodings

STUDY_FILE = "study.json"
RESULT_FILE = "result.json"
STEPS_DIR = "steps"
_TMP_MARK = ".tmp-study-"
"""Infix of the temporary step folders this module creates (and may remove)."""


class StudyResult(BaseModel):
    """What :func:`run_study` did and found (``OUT/study.json``; stable JSON)."""

    model_config = ConfigDict(extra="forbid")

    out_dir: str
    names: list[str]
    """Display names of the SAEs, smallest first."""
    widths: list[int]
    hook_name: str | None
    n_fit_tokens: int
    n_eval_tokens: int
    config: StudyConfig
    fingerprint: dict[str, str]
    """sha256 of each input that changes results: ``options``, ``saes`` (their weights) and
    ``tokens``."""
    steps_run: list[str] = Field(default_factory=list)
    steps_reused: list[str] = Field(default_factory=list)
    """Steps found finished in the folder (not recomputed)."""
    step_seconds: dict[str, float] = Field(default_factory=dict)
    """Wall time of each step run (the shared encodings count in the first step using them)."""
    findings: list[str] = Field(default_factory=list)
    """Plain statements of what the study measured (also in the report's notes)."""
    warnings: list[str] = Field(default_factory=list)
    """Produced SAEs that reconstruct worse than the SAE they started from, and the like."""
    report: str | None = None
    seconds: float = 0.0

    def lines(self) -> list[str]:
        """A short human summary."""
        out = [
            f"study of {', '.join(f'{n} ({w})' for n, w in zip(self.names, self.widths, strict=True))}"
            f": {self.n_fit_tokens} fit / {self.n_eval_tokens} evaluation tokens",
            *(f"  {f}" for f in self.findings),
        ]
        if self.steps_reused:
            out.append(f"reused finished steps: {', '.join(self.steps_reused)}")
        if self.report:
            out.append(f"report: {self.report}")
        out.append(f"done in {self.seconds:.1f} s")
        return out


# ------------------------------------------------------------------------------ inputs
def _check_family(saes: Sequence[SAE[Any]], names: Sequence[str]) -> None:
    if len(saes) < 2:
        raise StudyError(f"a study needs two or more SAEs of one hook, got {len(saes)}")
    hooks = {n: s.cfg.metadata.hook_name for n, s in zip(names, saes, strict=True)}
    if len(set(hooks.values())) > 1:
        listed = ", ".join(f"{n}: {h!r}" for n, h in hooks.items())
        raise StudyError(f"the SAEs of a study must read one hook; got {listed}")
    d_ins = {n: s.cfg.d_in for n, s in zip(names, saes, strict=True)}
    if len(set(d_ins.values())) > 1:
        listed = ", ".join(f"{n}: {d}" for n, d in d_ins.items())
        raise StudyError(f"the SAEs of a study must have one d_in; got {listed}")
    widths = [s.cfg.d_sae for s in saes]
    if len(set(widths)) != len(widths):
        raise StudyError(f"the SAEs of a study must have different widths; got {widths}")


def _fingerprint(
    saes: Sequence[SAE[Any]], x_ND: torch.Tensor, config: StudyConfig
) -> dict[str, str]:
    """sha256 of each input that changes results: the options, the SAEs, the tokens."""
    options = json.dumps(config.fingerprint_fields(), sort_keys=True).encode()
    tokens = hashlib.sha256(str(tuple(x_ND.shape)).encode())
    tokens.update(x_ND.detach().cpu().float().contiguous().numpy().tobytes())
    return {
        "options": hashlib.sha256(options).hexdigest(),
        "saes": hashlib.sha256("".join(content_hash(s) for s in saes).encode()).hexdigest(),
        "tokens": tokens.hexdigest(),
    }


_WHAT_DIFFERS = {
    "options": "the options (threshold, eval fraction, max tokens, budgets, ...)",
    "saes": "the SAEs (or their order of widths)",
    "tokens": "the tokens",
}


def _split(x_ND: torch.Tensor, config: StudyConfig) -> tuple[torch.Tensor, torch.Tensor]:
    n_eval = round(x_ND.shape[0] * config.eval_fraction)
    fit, ev = x_ND[: x_ND.shape[0] - n_eval], x_ND[x_ND.shape[0] - n_eval :]
    if fit.shape[0] < 2 or ev.shape[0] < 2:
        raise StudyError(
            f"too few tokens ({x_ND.shape[0]}) to split into fit and evaluation parts of two or "
            f"more tokens each at eval_fraction {config.eval_fraction}"
        )
    return fit, ev


# ------------------------------------------------------------------------------ the steps
class _Study:
    """State shared by the steps of one run."""

    def __init__(
        self,
        saes: list[SAE[Any]],
        names: list[str],
        fit_ND: torch.Tensor,
        eval_ND: torch.Tensor,
        config: StudyConfig,
        out: Path,
        show_progress: bool | None,
        warn: Callable[[str], None],
    ):
        self.saes, self.names = saes, names
        self.fit_ND, self.eval_ND = fit_ND, eval_ND
        self.config, self.out = config, out
        self.show_progress = show_progress
        self.warnings: list[str] = []
        self._warn = warn
        self._shared: SharedEncodings | None = None
        self._shared_failed: str | None = None
        self.results: dict[str, dict[str, Any]] = {}
        self._matches: dict[tuple[int, int], tuple[FeatureMatches, FeatureMatches]] = {}
        self.title: str | None = None
        self.notes: list[str] = []

    @property
    def pairs(self) -> list[tuple[int, int]]:
        return list(itertools.pairwise(range(len(self.saes))))

    def pair_name(self, k: int, j: int) -> str:
        return f"{self.names[k]} -> {self.names[j]}"

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        self._warn(message)

    def shared(self) -> SharedEncodings | None:
        """The family's encodings (built on first use); None when the family's stitching is
        not exact (e.g. TopK), where the steps fall back to their own passes."""
        if self._shared is None and self._shared_failed is None:
            try:
                self._shared = SharedEncodings.build(
                    self.saes,
                    self.fit_ND,
                    self.eval_ND,
                    batch_size=self.config.batch_size,
                    show_progress=self.show_progress,
                )
            except StitchError as err:
                self._shared_failed = str(err)
        return self._shared

    def metrics(self, sae: SAE[Any]) -> Metrics:
        """``sae`` (a trained SAE or one made of the family's latents) on the evaluation
        tokens: from the shared encodings where its latents map to the family, else a pass."""
        shared = self.shared()
        if shared is not None:
            union = family_union(sae, self.saes, shared.eval.offsets)
            if union is not None:
                return shared.metrics(union, sae.b_dec.detach().double())
        return evaluate(
            sae, self.eval_ND, batch_size=self.config.batch_size, show_progress=self.show_progress
        )

    def matches(self, k: int, j: int) -> tuple[FeatureMatches, FeatureMatches]:
        """(large -> small, small -> large) decoder-cosine matches of pair (k, j), computed
        once per run for compare, classify and the agreement."""
        if (k, j) not in self._matches:
            small, large = self.saes[k], self.saes[j]
            self._matches[(k, j)] = (
                match_features(
                    large, small, show_progress=self.show_progress, names=("large", "small")
                ),
                match_features(
                    small, large, show_progress=self.show_progress, names=("small", "large")
                ),
            )
        return self._matches[(k, j)]

    def classify(self, k: int, j: int) -> FeatureClassification:
        """Classification of pair (k, j), dead latents from the evaluation tokens."""
        shared = self.shared()
        dead = (
            shared.firing_counts(j) == 0
            if shared is not None
            else dead_latents(self.saes[j], self.eval_ND, batch_size=self.config.batch_size)
        )
        return classify_from_matches(
            self.saes[k],
            self.saes[j],
            *self.matches(k, j),
            threshold=self.config.threshold,
            dead_mask=dead,
        )

    def judge(self, produced: str, m_new: Metrics, start: str, m_start: Metrics) -> None:
        if m_new.fvu.value > m_start.fvu.value:
            self.warn(
                f"{produced} reconstructs worse than {start} it started from (FVU "
                f"{m_new.fvu.value:.4f} > {m_start.fvu.value:.4f} on the evaluation tokens)"
            )


def _plot_ref(plot: PlotFiles) -> dict[str, str]:
    return {"png": Path(plot.png).name, "svg": Path(plot.svg).name, "caption": plot.caption}


def _step_evaluate(st: _Study, folder: Path) -> dict[str, Any]:
    shared = st.shared()
    metrics = {}
    for k, sae in enumerate(st.saes):
        m = shared.trained_metrics(k) if shared is not None else st.metrics(sae)
        metrics[st.names[k]] = m.model_dump(mode="json")
    return {"metrics": metrics}


def _step_compare(st: _Study, folder: Path) -> dict[str, Any]:
    pairs, plots = [], {}
    for k, j in st.pairs:
        forward, backward = st.matches(k, j)
        fwd, bwd = forward.best_values.cpu(), backward.best_values.cpu()
        t = st.config.threshold
        plot = plot_match_histogram(
            folder / f"compare_{k}_{j}",
            fwd,
            bwd,
            t,
            (f"{st.names[j]} -> {st.names[k]} (classifies)", f"{st.names[k]} -> {st.names[j]}"),
            title=f"max decoder cosine: {st.pair_name(k, j)}",
        )
        plots[f"compare {st.pair_name(k, j)}"] = _plot_ref(plot)
        pairs.append(
            {
                "small": st.names[k],
                "large": st.names[j],
                "large_to_small": similarity_stats(fwd, t),
                "small_to_large": similarity_stats(bwd, t),
                "histogram_large_to_small": similarity_histogram(fwd),
                "histogram_small_to_large": similarity_histogram(bwd),
            }
        )
    return {"pairs": pairs, "plots": plots}


def _agreement(st: _Study, k: int, j: int) -> dict[str, Any]:
    """The cosine view against activation correlation, large -> small, on the evaluation
    tokens."""
    from sae_lens_stitch.analysis.agreement import view_agreement
    from sae_lens_stitch.analysis.correlate import correlate_features

    small, large = st.saes[k], st.saes[j]
    return view_agreement(
        st.matches(k, j)[0],
        correlate_features(large, small, st.eval_ND, show_progress=st.show_progress),
        threshold=st.config.threshold,
        names=(st.names[k], st.names[j]),
    ).model_dump(mode="json")


def _step_classify(st: _Study, folder: Path) -> dict[str, Any]:
    pairs, classes = [], {}
    for k, j in st.pairs:
        cls = st.classify(k, j)
        fams = feature_families(st.saes[k], st.saes[j], threshold=st.config.threshold)
        classes[st.pair_name(k, j)] = cls
        pairs.append(
            ({"agreement": _agreement(st, k, j)} if st.config.agreement else {})
            | {
                "summary": cls.summary.model_dump(mode="json"),
                "novel_by_cosine": cls.novel_indices.tolist(),
                "dead": cls.indices_of(FeatureCategory.DEAD).tolist(),
                "max_cosine": [round(float(v), 6) for v in cls.max_cosine.tolist()],
                "families": [f.model_dump(mode="json") for f in fams],
                "family_kinds": dict(Counter(f.kind for f in fams).most_common()),
            }
        )
    plot = plot_max_cosine_histograms(classes, folder / "max_cosine", threshold=st.config.threshold)
    return {"pairs": pairs, "plots": {"max cosine": _plot_ref(plot)}}


def _step_effects(st: _Study, folder: Path, classify: dict[str, Any]) -> dict[str, Any]:
    shared = st.shared()
    pairs, plots = [], {}
    for (k, j), cls in zip(st.pairs, classify["pairs"], strict=True):
        small, large = st.saes[k], st.saes[j]
        max_cos = torch.tensor(cls["max_cosine"])
        if shared is not None:
            delta, base_sse = shared.insert_delta_sse(k, j)
            eff = effects_from_sums(
                small,
                large,
                indices=torch.arange(large.cfg.d_sae),
                delta_sse=delta,
                firing_counts=shared.firing_counts(j),
                base_sse=base_sse,
                total_variance=shared.eval.total_variance,
                n_tokens=shared.eval.n_tokens,
                max_cosine=max_cos,
                threshold=st.config.threshold,
            )
        else:
            eff = insert_effects(
                small,
                large,
                st.eval_ND,
                threshold=st.config.threshold,
                max_cosine=max_cos,
                batch_size=st.config.batch_size,
                show_progress=st.show_progress,
            )
        ranked = eff.helps_ranked()
        plot = plot_insert_effects(
            eff, folder / f"insert_effects_{k}_{j}", title=f"insert effects {st.pair_name(k, j)}"
        )
        plots[f"insert effects {st.pair_name(k, j)}"] = _plot_ref(plot)
        pairs.append(
            {
                "summary": eff.summary.model_dump(mode="json"),
                "helps_by_effect": ranked.tolist(),
                "delta_mse": [float(v) for v in eff.delta_mse.tolist()],
            }
        )
    return {"pairs": pairs, "plots": plots}


def _save_named(sae: SAE[Any], folder: Path, name: str) -> str:
    save_sae(sae, folder / name, overwrite=True)
    return name


def _step_stitch(
    st: _Study,
    folder: Path,
    classify: dict[str, Any],
    effects: dict[str, Any] | None,
    evaluated: dict[str, Any],
) -> dict[str, Any]:
    from sae_lens_stitch.surgery.operations import stitch

    pairs = []
    for idx, (k, j) in enumerate(st.pairs):
        small, large = st.saes[k], st.saes[j]
        m_small = Metrics.model_validate(evaluated["metrics"][st.names[k]])
        variants = [("novel by cosine", classify["pairs"][idx]["novel_by_cosine"])]
        if effects is not None:
            variants.append(("helps by effect", effects["pairs"][idx]["helps_by_effect"]))
        entry: dict[str, Any] = {"small": st.names[k], "large": st.names[j], "variants": []}
        for label, indices in variants:
            if not indices:
                continue
            new = stitch(small, large, torch.tensor(indices, dtype=torch.long))
            produced = f"{st.names[k]} + {len(indices)} {label} of {st.names[j]}"
            m = st.metrics(new)
            st.judge(produced, m, st.names[k], m_small)
            saved = _save_named(new, folder, f"{k}_{j}_{label.replace(' ', '_')}")
            entry["variants"].append(
                {
                    "label": label,
                    "name": produced,
                    "n_inserted": len(indices),
                    "metrics": m.model_dump(mode="json"),
                    "worse_than_small": m.fvu.value > m_small.fvu.value,
                    "folder": saved,
                }
            )
        pairs.append(entry)
    return {"pairs": pairs}


def _step_curves(st: _Study, folder: Path, classify: dict[str, Any]) -> dict[str, Any]:
    curves = []
    shared = st.shared()
    for (k, j), cls in zip(st.pairs, classify["pairs"], strict=True):
        fams = [FeatureFamily.model_validate(f) for f in cls["families"]]
        curves.append(
            swap_curve(
                st.saes[k],
                st.saes[j],
                st.eval_ND,
                families=fams,
                threshold=st.config.threshold,
                include_novel=True,
                batch_size=st.config.batch_size,
                show_progress=st.show_progress,
                encoded=None if shared is None else shared.pair(k, j, st.eval_ND),
            )
        )
    plot = plot_curves(
        curves, folder / "swap_curves", title="swap families, then insert novel latents"
    )
    for c in curves:
        if not c.monotone:
            st.warn(
                f"the swap curve {c.base} -> {c.donor} is not monotone: MSE rises at "
                f"{c.n_increases} of {len(c.points) - 1} steps"
            )
    return {
        "curves": [c.model_dump(mode="json") for c in curves],
        "plots": {"swap curves": _plot_ref(plot)},
    }


def _step_frankenstein(st: _Study, folder: Path, evaluated: dict[str, Any]) -> dict[str, Any]:
    from sae_lens_stitch.surgery.operations import frankenstein_steps

    shared = st.shared()
    dead_free = None if shared is not None else st.eval_ND
    points = []
    for k, name in enumerate(st.names):
        m = Metrics.model_validate(evaluated["metrics"][name])
        points.append(_plane_point(name, "trained", st.saes[k].cfg.d_sae, m))
    last: SAE[Any] | None = None
    for last in frankenstein_steps(st.saes, threshold=st.config.threshold, activations=dead_free):
        points.append(
            _plane_point(
                f"Frankenstein {last.cfg.d_sae}", "frankenstein", last.cfg.d_sae, st.metrics(last)
            )
        )
    assert last is not None
    plane = FrankensteinPlane(
        threshold=st.config.threshold, n_tokens=int(st.eval_ND.shape[0]), points=points
    )
    plot = plot_frankenstein_plane(
        plane, folder / "frankenstein_plane", title=f"Frankenstein vs trained: {st.names}"
    )
    final = points[-1]
    m_start = Metrics.model_validate(evaluated["metrics"][st.names[0]])
    if final.fvu > m_start.fvu.value:
        st.warn(
            f"Frankenstein's SAE ({final.d_sae} latents) reconstructs worse than {st.names[0]} "
            f"it started from (FVU {final.fvu:.4f} > {m_start.fvu.value:.4f})"
        )
    return {
        "plane": plane.model_dump(mode="json"),
        "folder": _save_named(last, folder, "frankenstein_sae"),
        "plots": {"Frankenstein plane": _plot_ref(plot)},
    }


def _plane_point(name: str, kind: Any, d_sae: int, m: Metrics) -> PlanePoint:
    return PlanePoint(
        name=name, kind=kind, d_sae=d_sae, l0=m.l0.value, fvu=m.fvu.value, mse=m.mse.value
    )


def _step_assemble(st: _Study, folder: Path, curves: dict[str, Any] | None) -> dict[str, Any]:
    from sae_lens_stitch.assembly.assemble import assemble
    from sae_lens_stitch.assembly.pareto import pareto

    shared = st.shared()
    if shared is None:
        return {"skipped": f"assembly needs exact stitching: {st._shared_failed}"}
    width = st.config.width
    if width is None and st.config.l0 is None:
        width = st.saes[1].cfg.d_sae
    built = assemble(
        st.saes,
        st.fit_ND,
        eval_activations=st.eval_ND,
        width=width,
        l0=st.config.l0,
        start=0,
        refit=st.config.refit,
        significance=st.config.significance,
        batch_size=st.config.batch_size,
        show_progress=st.show_progress,
        objectives=(shared.fit, shared.eval),
    )
    plane = pareto(
        st.saes,
        st.fit_ND,
        st.eval_ND,
        built,
        threshold=st.config.threshold,
        batch_size=st.config.batch_size,
        show_progress=st.show_progress,
        objectives=(shared.fit, shared.eval),
        swap=None if curves is None else Curve.model_validate(curves["curves"][0]),
    )
    plot = plot_pareto(plane, folder / "pareto")
    return {
        "result": built.result.model_dump(mode="json"),
        "pareto": plane.model_dump(mode="json"),
        "folder": _save_named(built.sae, folder, "assembled_sae"),
        "plots": {"Pareto": _plot_ref(plot)},
    }


def _findings(st: _Study, results: dict[str, dict[str, Any]]) -> list[str]:
    """Plain statements of what the study measured."""
    out: list[str] = []
    ev = results.get("evaluate")
    if ev is not None:
        out.append(
            "trained: "
            + ", ".join(
                f"{n} FVU {Metrics.model_validate(m).fvu.value:.4f}"
                for n, m in ev["metrics"].items()
            )
        )
    for pair in (results.get("stitch") or {}).get("pairs", []):
        for v in pair["variants"]:
            verdict = "WORSE than" if v["worse_than_small"] else "better than"
            out.append(
                f"{v['name']}: FVU {v['metrics']['fvu']['value']:.4f}, {verdict} {pair['small']}"
            )
    fr = results.get("frankenstein")
    if fr is not None:
        last = fr["plane"]["points"][-1]
        first = fr["plane"]["points"][0]
        verdict = "WORSE than" if last["fvu"] > first["fvu"] else "better than"
        out.append(
            f"Frankenstein's SAE: {last['d_sae']} latents, FVU {last['fvu']:.4f}, {verdict} "
            f"{first['name']} ({first['fvu']:.4f})"
        )
    asm = results.get("assemble")
    if asm is not None and "result" in asm:
        out.extend(_assembly_findings(asm, results))
    elif asm is not None:
        out.append(f"assembly skipped: {asm['skipped']}")
    return out


def _assembly_findings(asm: dict[str, Any], results: dict[str, dict[str, Any]]) -> list[str]:
    """The assembled SAE against the trained SAE of the next width (like for like: refit
    against refit) and against every SAE the fixed rules made."""
    r = asm["result"]
    width, fvu = r["eval"]["d_sae"], r["eval"]["fvu"]["value"]
    budgets = ", ".join(
        b
        for b in (
            f"width budget {r['width_budget']}" if r["width_budget"] is not None else "",
            f"L0 budget {r['l0_budget']:g}" if r["l0_budget"] is not None else "",
            "refit" if r["refit"] else "not refit",
        )
        if b
    )
    line = (
        f"assembled SAE: {width} latents, FVU {fvu:.4f}, L0 {r['eval']['l0']['value']:.2f} "
        f"({budgets})"
    )
    points = asm["pareto"]["points"]
    trained = [p for p in points if p["kind"] == "trained" and p["refit"] == r["refit"]]
    above = [p for p in trained if p["width"] >= width]
    if above:
        ref = min(above, key=lambda p: p["width"])
        what = f"the trained {ref['width']}" + (" refit" if ref["refit"] else "")
        verdict = "better than" if fvu < ref["fvu"] else "NOT better than"
        line += f"; {verdict} {what} ({ref['fvu']:.4f})"
    out = [line]
    fixed = [
        (p["label"], p["width"], p["fvu"])
        for p in points
        if p["kind"] in ("stitch_all_novel", "frankenstein") and not p["refit"]
    ] + [
        (v["name"], v["metrics"]["d_sae"], v["metrics"]["fvu"]["value"])
        for pair in (results.get("stitch") or {}).get("pairs", [])
        for v in pair["variants"]
    ]
    beat = [f for f in fixed if f[2] <= fvu]
    if fixed and not beat:
        out.append(
            f"every SAE the method's fixed rules made here ({len(fixed)}: stitching, "
            "Frankenstein) reconstructs worse than the assembled SAE: use "
            "steps/assemble/assembled_sae"
        )
    elif beat:
        listed = "; ".join(f"{name} ({w} latents, FVU {f:.4f})" for name, w, f in beat)
        wider = all(w > width for _, w, _ in beat)
        out.append(
            "fixed-rule SAEs at least as good as the assembled SAE"
            + (f", all wider than its {width} latents" if wider else "")
            + f": {listed}"
        )
    return out


def _step_report(st: _Study, folder: Path, results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    from sae_lens_stitch.analysis.agreement import ViewAgreement
    from sae_lens_stitch.analysis.classify import ClassificationSummary
    from sae_lens_stitch.analysis.effects import InsertEffectsSummary
    from sae_lens_stitch.assembly.pareto import Pareto

    plots: dict[str, PlotFiles] = {}
    for step, res in results.items():
        for name, ref in (res.get("plots") or {}).items():
            base = st.out / STEPS_DIR / step
            plots[name] = PlotFiles(
                png=str(base / ref["png"]), svg=str(base / ref["svg"]), caption=ref["caption"]
            )
    metrics: dict[str, Metrics] = {}
    if "evaluate" in results:
        metrics.update(
            {
                f"trained {n}": Metrics.model_validate(m)
                for n, m in results["evaluate"]["metrics"].items()
            }
        )
    for pair in (results.get("stitch") or {}).get("pairs", []):
        for v in pair["variants"]:
            metrics[v["name"]] = Metrics.model_validate(v["metrics"])
    asm = results.get("assemble") or {}
    if "result" in asm:
        metrics["assembled"] = Metrics.model_validate(asm["result"]["eval"])
    fr = results.get("frankenstein")
    report = StitchReport(
        title=st.title or "sae-lens-stitch study: " + ", ".join(st.names),
        threshold=st.config.threshold,
        classifications=[
            ClassificationSummary.model_validate(p["summary"])
            for p in (results.get("classify") or {}).get("pairs", [])
        ],
        agreements=[
            ViewAgreement.model_validate(p["agreement"])
            for p in (results.get("classify") or {}).get("pairs", [])
            if "agreement" in p
        ],
        metrics=metrics,
        insert_effects=[
            InsertEffectsSummary.model_validate(p["summary"])
            for p in (results.get("effects") or {}).get("pairs", [])
        ],
        curves=[Curve.model_validate(c) for c in (results.get("curves") or {}).get("curves", [])],
        frankenstein=None if fr is None else FrankensteinPlane.model_validate(fr["plane"]),
        pareto=Pareto.model_validate(asm["pareto"]) if "pareto" in asm else None,
        plots=plots,
        notes=[
            *_findings(st, results),
            *(f"warning: {w}" for w in st.warnings),
            *(
                [f"steps not run (--only / --skip): {', '.join(missing)}"]
                if (missing := [s for s in STEPS[:-1] if s not in results])
                else []
            ),
            *st.notes,
        ],
    )
    write_report(report, st.out)
    return {"report": str(st.out / "report.html")}


_NEEDS: dict[StepName, tuple[StepName, ...]] = {
    "evaluate": (),
    "compare": (),
    "classify": (),
    "effects": ("classify",),
    "stitch": ("evaluate", "classify"),
    "curves": ("classify",),
    "frankenstein": ("evaluate",),
    "assemble": (),
    "report": (),
}
"""Steps whose results a step reads (run first when not finished)."""


def _run_step(st: _Study, name: StepName, folder: Path) -> dict[str, Any]:
    r = st.results
    if name == "evaluate":
        return _step_evaluate(st, folder)
    if name == "compare":
        return _step_compare(st, folder)
    if name == "classify":
        return _step_classify(st, folder)
    if name == "effects":
        return _step_effects(st, folder, r["classify"])
    if name == "stitch":
        return _step_stitch(st, folder, r["classify"], r.get("effects"), r["evaluate"])
    if name == "curves":
        return _step_curves(st, folder, r["classify"])
    if name == "frankenstein":
        return _step_frankenstein(st, folder, r["evaluate"])
    if name == "assemble":
        return _step_assemble(st, folder, r.get("curves"))
    return _step_report(st, folder, r)


MIN_EVAL_TOKENS = 1000
"""Below this many evaluation tokens the study warns that its figures are noisy."""


def _load_finished(st: _Study) -> list[str]:
    """Read every finished step not read yet (from this run or an earlier one); return the
    warnings of all finished steps, in step order."""
    for name in STEPS[:-1]:
        path = st.out / STEPS_DIR / name / RESULT_FILE
        if name not in st.results and path.is_file():
            st.results[name] = json.loads(path.read_text(encoding="utf-8"))
    return [w for name in STEPS[:-1] for w in st.results.get(name, {}).get("warnings", [])]


def _clean_leftovers(steps_dir: Path) -> None:
    """Remove the temporary step folders of an interrupted run (only ours: marked names)."""
    if steps_dir.is_dir():
        for child in steps_dir.iterdir():
            if child.is_dir() and child.name.startswith(".") and _TMP_MARK in child.name:
                shutil.rmtree(child, ignore_errors=True)


def _prepare_out(out: Path, fingerprint: dict[str, str], overwrite: bool) -> None:
    record = out / STUDY_FILE
    if record.is_file():
        try:
            previous = json.loads(record.read_text(encoding="utf-8")).get("fingerprint")
        except (OSError, ValueError):
            previous = None
        if previous != fingerprint:
            if not overwrite:
                old = previous if isinstance(previous, dict) else {}
                differs = [w for k, w in _WHAT_DIFFERS.items() if old.get(k) != fingerprint[k]]
                raise StudyError(
                    f"{str(out)!r} holds a study of other inputs ({'; '.join(differs)} "
                    "differ); pass overwrite=True to replace it, or choose another folder"
                )
            shutil.rmtree(out / STEPS_DIR, ignore_errors=True)
            record.unlink()
    elif out.exists() and any(out.iterdir()) and not overwrite:
        raise StudyError(
            f"{str(out)!r} exists and is not a study folder; choose an empty or new folder"
        )
    (out / STEPS_DIR).mkdir(parents=True, exist_ok=True)
    _clean_leftovers(out / STEPS_DIR)


def run_study(
    saes: Sequence[SAE[Any]],
    activations: Any,
    out_dir: str | os.PathLike[str],
    *,
    config: StudyConfig | None = None,
    names: Sequence[str] | None = None,
    overwrite: bool = False,
    show_progress: bool | None = None,
    on_warning: Callable[[str], None] | None = None,
    title: str | None = None,
    notes: Sequence[str] = (),
) -> StudyResult:
    """Run the study of ``saes`` (two or more widths of one hook, any order) on
    ``activations`` (tensor [..., d_in]) into ``out_dir``: see the module docstring.

    ``names``: display names (default :func:`~sae_lens_stitch.display_name`). ``on_warning``
    receives each warning line as it happens (e.g. a produced SAE that reconstructs worse
    than the SAE it started from); all are also in the result. Finished steps found in
    ``out_dir`` are reused; a folder holding another study is refused unless ``overwrite``.
    ``title`` and ``notes``: the report's title and extra notes (after the findings)."""
    start = time.perf_counter()
    config = config or StudyConfig()
    order = sorted(range(len(saes)), key=lambda i: saes[i].cfg.d_sae)
    family = [saes[i] for i in order]
    given = list(names) if names is not None else [display_name(s) for s in saes]
    if len(given) != len(saes):
        raise StudyError(f"{len(given)} names for {len(saes)} SAEs")
    labels = [given[i] for i in order]
    if len(set(labels)) != len(labels):
        labels = [f"{n} ({s.cfg.d_sae})" for n, s in zip(labels, family, strict=True)]
    _check_family(family, labels)
    x_ND = materialize(activations, family[0].cfg.d_in)
    if config.max_tokens is not None:
        x_ND = x_ND[: config.max_tokens]
    if not bool(torch.isfinite(x_ND).all()):
        raise StudyError("activations hold NaN or infinite values")
    fit_ND, eval_ND = _split(x_ND, config)
    fingerprint = _fingerprint(family, x_ND, config)
    out = Path(out_dir).expanduser().absolute()
    _prepare_out(out, fingerprint, overwrite)
    st = _Study(
        family, labels, fit_ND, eval_ND, config, out, show_progress, on_warning or (lambda _: None)
    )
    st.title, st.notes = title, list(notes)
    result = StudyResult(
        out_dir=str(out),
        names=labels,
        widths=[s.cfg.d_sae for s in family],
        hook_name=family[0].cfg.metadata.hook_name,
        n_fit_tokens=int(fit_ND.shape[0]),
        n_eval_tokens=int(eval_ND.shape[0]),
        config=config,
        fingerprint=fingerprint,
    )
    atomic_write_text(out / STUDY_FILE, result.model_dump_json(indent=2))
    if eval_ND.shape[0] < MIN_EVAL_TOKENS:
        st.warn(
            f"only {eval_ND.shape[0]} evaluation tokens: every figure is noisy at this size "
            f"(use {MIN_EVAL_TOKENS} or more; tens of thousands for assembly)"
        )
    early_warnings = list(st.warnings)
    wanted = config.steps()
    todo: list[StepName] = []
    for name in wanted:  # what they read comes first
        for need in (*_NEEDS[name], name):
            if need not in todo:
                todo.append(need)
    if "report" in todo:  # the report gathers whatever is finished
        todo.remove("report")
        todo.append("report")
    for name in todo:
        final = out / STEPS_DIR / name
        if name != "report" and (final / RESULT_FILE).is_file():
            st.results[name] = json.loads((final / RESULT_FILE).read_text(encoding="utf-8"))
            result.steps_reused.append(name)
            continue
        if name == "report":
            st.warnings = early_warnings + _load_finished(st)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}{_TMP_MARK}", dir=out / STEPS_DIR))
        t_step = time.perf_counter()
        try:
            before = len(st.warnings)
            payload = _run_step(st, name, tmp)
            payload["warnings"] = st.warnings[before:]
            (tmp / RESULT_FILE).write_text(json.dumps(payload, indent=1), encoding="utf-8")
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        st.results[name] = payload
        result.steps_run.append(name)
        result.step_seconds[name] = round(time.perf_counter() - t_step, 3)
    st.warnings = early_warnings + _load_finished(st)  # also steps finished by earlier runs
    result.findings = _findings(st, st.results)
    result.warnings = st.warnings
    if "report" in st.results:
        result.report = st.results["report"]["report"]
    result.seconds = time.perf_counter() - start
    atomic_write_text(out / STUDY_FILE, result.model_dump_json(indent=2))
    return result
