"""Step 7: gather the measurements into a :class:`StitchReport` and write it as report.json,
a readable report.md and a self-contained report.html (plots inline as base64 PNG).

``StitchReport.model_validate_json(path.read_text())`` reads report.json back.
"""

from __future__ import annotations

import base64
import html
import os
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from sae_lens_stitch._atomic import atomic_write_bytes
from sae_lens_stitch._version import __version__
from sae_lens_stitch.analysis.agreement import ViewAgreement
from sae_lens_stitch.analysis.classify import ClassificationSummary
from sae_lens_stitch.analysis.effects import InsertEffectsSummary
from sae_lens_stitch.assembly.pareto import Pareto
from sae_lens_stitch.evaluation.curves import Curve, FrankensteinPlane
from sae_lens_stitch.evaluation.metrics import Metric, Metrics, ModelMetrics
from sae_lens_stitch.provenance import SourceSAE

REPORT_FILES = ("report.json", "report.md", "report.html")


class PlotFiles(BaseModel):
    """A plot's PNG and SVG files (paths relative to the report folder once written)."""

    model_config = ConfigDict(extra="forbid")

    png: str
    svg: str
    caption: str = ""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class StitchReport(BaseModel):
    """Everything measured about one stitching experiment (stable JSON)."""

    model_config = ConfigDict(extra="forbid")

    title: str = "sae-lens-stitch report"
    created: str = Field(default_factory=_now)
    """UTC time the report was made (ISO 8601)."""
    package_version: str = __version__
    threshold: float | None = None
    """Cosine threshold used for classification (novel below it)."""
    classifications: list[ClassificationSummary] = Field(default_factory=list)
    """One summary per width pair (small, large)."""
    agreements: list[ViewAgreement] = Field(default_factory=list)
    """Per width pair: the decoder-cosine view against activation correlation."""
    metrics: dict[str, Metrics] = Field(default_factory=dict)
    """Reconstruction metrics per SAE (name -> metrics)."""
    model_metrics: dict[str, ModelMetrics] = Field(default_factory=dict)
    """Downstream metrics per SAE spliced into the model."""
    insert_effects: list[InsertEffectsSummary] = Field(default_factory=list)
    """Behavioural insert effects and the cosine proxy's agreement with them."""
    curves: list[Curve] = Field(default_factory=list)
    frankenstein: FrankensteinPlane | None = None
    pareto: Pareto | None = None
    """Trained SAEs, their refits, the fixed rules and an assembled SAE on evaluation tokens."""
    plots: dict[str, PlotFiles] = Field(default_factory=dict)
    """Plot name -> files."""
    notes: list[str] = Field(default_factory=list)
    """Free-text remarks (data used, caveats)."""


# ----------------------------------------------------------------- rendering helpers


def _fmt(value: Any) -> str:
    if isinstance(value, Metric):
        value = value.value
    if isinstance(value, float):
        if value != value:  # NaN
            return "n/a"
        if value == 0 or 1e-3 <= abs(value) < 1e5:
            return f"{value:.4g}"
        return f"{value:.3e}"
    if value is None:
        return "n/a"
    return str(value)


def _arrow(better: str) -> str:
    return "↓" if better == "lower" else "↑"


Table = tuple[list[str], list[list[str]]]


Section = tuple[str, list[str], Table | None]
"""(heading, paragraphs, table) of one report section."""


def _classification_section(report: StitchReport) -> Section | None:
    if not report.classifications:
        return None
    head = [
        "small",
        "large",
        "novel by cosine",
        "reconstruction by cosine",
        "dead",
        "novel fraction",
        "mean max cos",
        "small w/ children",
        "small w/o partner",
    ]
    rows = [
        [
            c.small_name or _name(c.small),
            c.large_name or _name(c.large),
            str(c.n_novel),
            str(c.n_reconstruction),
            str(c.n_dead),
            f"{c.novel_fraction:.1%}",
            _fmt(c.mean_max_cosine),
            str(c.n_small_with_children),
            str(c.n_small_without_partner),
        ]
        for c in report.classifications
    ]
    return (
        "Classification (cosine proxy)",
        [
            "Large latents whose best decoder cosine with the small SAE is below the "
            f"threshold ({_fmt(report.threshold)}) are novel; dead latents (never firing) "
            "are excluded from the fractions."
        ],
        (head, rows),
    )


def _agreement_section(report: StitchReport) -> Section | None:
    if not report.agreements:
        return None
    t_labels = [f"AUROC corr >= {a.correlation_threshold:g}" for a in report.agreements[0].aurocs]
    head = ["small", "large", "latents", "dead", "same best partner", "Spearman", *t_labels]
    head += [f"{row.category}: mean max corr" for row in report.agreements[0].crosstab]
    rows = [
        [
            a.small,
            a.large,
            str(a.n_latents),
            str(a.n_dead),
            f"{a.best_partner_agreement.value:.1%}",
            _fmt(a.rank_correlation),
            *[_fmt(x.auroc) for x in a.aurocs],
            *[_fmt(row.mean_max_correlation) for row in a.crosstab],
        ]
        for a in report.agreements
    ]
    return (
        "Cosine against activation correlation",
        [
            "For each large latent: is its best small partner by decoder cosine also its best "
            "by the Pearson correlation of activations over tokens; the rank correlation of max "
            "cosine with max correlation; how well max cosine separates latents whose max "
            "correlation reaches t (AUROC); the mean max correlation of each cosine category. "
            "Latents that never fire on the tokens (dead) are left out."
        ],
        (head, rows),
    )


def _metrics_section(report: StitchReport) -> Section | None:
    if not report.metrics:
        return None
    first = next(iter(report.metrics.values()))
    keys = ["mse", "fvu", "explained_variance", "l0", "n_dead", "n_dense"]
    head = ["SAE", "d_sae"] + [f"{k} {_arrow(getattr(first, k).better)}" for k in keys]
    rows = [
        [name, str(m.d_sae)] + [_fmt(getattr(m, k)) for k in keys]
        for name, m in report.metrics.items()
    ]
    return (
        "Reconstruction metrics",
        [
            f"On {first.n_tokens} tokens. MSE: mean over tokens of the squared error "
            "summed over dimensions; FVU = 1 - explained variance (SAE-Lens's "
            f"definition); dense: fires on more than {first.dense_threshold:.0%} of tokens."
        ],
        (head, rows),
    )


def _model_metrics_section(report: StitchReport) -> Section | None:
    if not report.model_metrics:
        return None
    keys = [
        "ce_loss_clean",
        "ce_loss_with_sae",
        "ce_loss_zero_ablation",
        "ce_loss_recovered",
        "kl_div_with_sae",
    ]
    first_mm = next(iter(report.model_metrics.values()))
    head = ["SAE", "hook"] + [f"{k} {_arrow(getattr(first_mm, k).better)}" for k in keys]
    rows = [
        [name, mm.hook_name] + [_fmt(getattr(mm, k)) for k in keys]
        for name, mm in report.model_metrics.items()
    ]
    return ("Language-model metrics", [], (head, rows))


def _insert_effects_section(report: StitchReport) -> Section | None:
    if not report.insert_effects:
        return None
    head = [
        "base",
        "donor",
        "latents",
        "helps by effect (MSE down)",
        "hurts by effect (MSE up)",
        "dead",
        "novel by cosine & helps",
        "reconstruction by cosine & hurts",
        "novel by cosine, hurts",
        "reconstruction by cosine, helps",
        "accuracy ↑",
        "AUROC ↑",
    ]
    rows = []
    for e in report.insert_effects:
        p = e.proxy
        rows.append(
            [
                e.base,
                e.donor,
                str(e.n_latents),
                str(e.n_helps),
                str(e.n_hurts),
                str(e.n_dead),
                str(p.both_novel),
                str(p.both_reconstruction),
                str(p.proxy_novel_behaviour_reconstruction),
                str(p.proxy_reconstruction_behaviour_novel),
                _fmt(p.accuracy),
                _fmt(p.auroc),
            ]
        )
    return (
        "Insert effects and the cosine proxy",
        [
            "Helps / hurts by effect: inserting the latent alone into the base lowers MSE or "
            "raises it. Novel / reconstruction by cosine: the classification's proxy (max "
            "decoder cosine below / at or above the threshold). AUROC: max cosine as a score "
            "for hurts-by-effect."
        ],
        (head, rows),
    )


def _curves_section(report: StitchReport) -> Section | None:
    if not report.curves:
        return None
    head = [
        "curve",
        "order",
        "steps",
        "exact",
        "FVU start",
        "FVU end",
        "min FVU (step)",
        "L0 start",
        "L0 end",
        "monotone",
    ]
    rows = []
    for c in report.curves:
        best = min(c.points, key=lambda p: p.fvu)
        rows.append(
            [
                f"{c.kind}: {c.base} -> {c.donor}",
                c.order,
                str(len(c.points) - 1),
                "yes" if c.exact else "approx.",
                _fmt(c.points[0].fvu),
                _fmt(c.points[-1].fvu),
                f"{_fmt(best.fvu)} ({best.step})",
                _fmt(c.points[0].l0),
                _fmt(c.points[-1].l0),
                _fmt(
                    None
                    if c.monotone is None
                    else ("yes" if c.monotone else f"no ({c.n_increases} rises)")
                ),
            ]
        )
    return ("Curves", ["FVU and L0 are lower-is-better."], (head, rows))


def _frankenstein_section(report: StitchReport) -> Section | None:
    if report.frankenstein is None:
        return None
    head = ["SAE", "kind", "d_sae", "L0 ↓", "FVU ↓", "MSE ↓"]
    rows = [
        [p.name, p.kind, str(p.d_sae), _fmt(p.l0), _fmt(p.fvu), _fmt(p.mse)]
        for p in report.frankenstein.points
    ]
    return ("Frankenstein vs trained SAEs", [], (head, rows))


def _pareto_section(report: StitchReport) -> Section | None:
    if report.pareto is None:
        return None
    head = ["SAE", "refit", "width ↓", "L0 ↓", "FVU ↓", "MSE ↓"]
    rows = [
        [p.label, "yes" if p.refit else "no", str(p.width), _fmt(p.l0), _fmt(p.fvu), _fmt(p.mse)]
        for p in sorted(report.pareto.points, key=lambda p: (p.width, p.fvu))
    ]
    text = (
        f"On {report.pareto.n_eval_tokens} evaluation tokens; refits (decoder scales and output "
        f"bias) fitted on {report.pareto.n_fit_tokens} other tokens."
    )
    return ("Assembly and refit against the fixed rules", [text], (head, rows))


def _notes_section(report: StitchReport) -> Section | None:
    if not report.notes:
        return None
    return ("Notes", list(report.notes), None)


_SECTIONS = (
    _classification_section,
    _agreement_section,
    _metrics_section,
    _model_metrics_section,
    _insert_effects_section,
    _curves_section,
    _frankenstein_section,
    _pareto_section,
    _notes_section,
)
"""The report's sections, in display order."""


def _sections(report: StitchReport) -> list[Section]:
    """(heading, paragraphs, table) in display order."""
    return [section for build in _SECTIONS if (section := build(report)) is not None]


def _name(identity: SourceSAE | str) -> str:
    return identity if isinstance(identity, str) else identity.display_name()


def render_markdown(report: StitchReport) -> str:
    """report.md: tables and links to the PNG plots (paths as stored in the report)."""
    lines = [
        f"# {report.title}",
        "",
        f"Created {report.created} with sae-lens-stitch {report.package_version}.",
        "",
    ]
    for heading, paragraphs, table in _sections(report):
        lines += [f"## {heading}", ""]
        for para in paragraphs:
            lines += [para, ""]
        if table is not None:
            head, rows = table
            esc = [[cell.replace("|", "\\|") for cell in row] for row in rows]
            lines.append("| " + " | ".join(head) + " |")
            lines.append("|" + "|".join("---" for _ in head) + "|")
            lines += ["| " + " | ".join(row) + " |" for row in esc]
            lines.append("")
    if report.plots:
        lines += ["## Plots", ""]
        for name, plot in report.plots.items():
            lines += [f"### {name}", ""]
            if plot.caption:
                lines += [plot.caption, ""]
            lines += [f"![{name}]({plot.png})", "", f"[SVG]({plot.svg})", ""]
    return "\n".join(lines)


def render_html(report: StitchReport, plot_root: Path) -> str:
    """report.html: self-contained (plots inline as base64 PNG, read from ``plot_root``)."""
    e = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(report.title)}</title>",
        "<style>body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;margin:1em 0;font-size:0.9em}"
        "th,td{border:1px solid #ccc;padding:4px 8px;text-align:left}"
        "th{background:#f3f3f3}img{max-width:100%}</style>",
        "</head><body>",
        f"<h1>{e(report.title)}</h1>",
        f"<p>Created {e(report.created)} with sae-lens-stitch {e(report.package_version)}.</p>",
    ]
    for heading, paragraphs, table in _sections(report):
        parts.append(f"<h2>{e(heading)}</h2>")
        parts += [f"<p>{e(p)}</p>" for p in paragraphs]
        if table is not None:
            head, rows = table
            parts.append("<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in head) + "</tr>")
            parts += ["<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in rows]
            parts.append("</table>")
    if report.plots:
        parts.append("<h2>Plots</h2>")
        for name, plot in report.plots.items():
            parts.append(f"<h3>{e(name)}</h3>")
            if plot.caption:
                parts.append(f"<p>{e(plot.caption)}</p>")
            png = plot_root / plot.png
            if png.is_file():
                data = base64.b64encode(png.read_bytes()).decode("ascii")
                parts.append(f'<img alt="{e(name)}" src="data:image/png;base64,{data}">')
            else:
                parts.append(f"<p>(missing plot file {e(plot.png)})</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name) or "plot"


def _localise_plots(report: StitchReport, out: Path) -> dict[str, PlotFiles]:
    """Plot paths relative to ``out``; files outside it are copied into ``out/plots``."""
    plots: dict[str, PlotFiles] = {}
    for name, plot in report.plots.items():
        rel: dict[str, str] = {}
        for ext in ("png", "svg"):
            src = Path(getattr(plot, ext))
            if not src.is_absolute() and not src.exists():
                src = out / src
            if not src.is_file():
                raise FileNotFoundError(f"plot {name!r}: {ext} file {src} does not exist")
            src = src.resolve()
            try:
                rel[ext] = src.relative_to(out).as_posix()
            except ValueError:
                dest = out / "plots" / f"{_safe(name)}{src.suffix}"
                dest.parent.mkdir(parents=True, exist_ok=True)
                atomic_write_bytes(dest, src.read_bytes())
                rel[ext] = dest.relative_to(out).as_posix()
        plots[name] = PlotFiles(png=rel["png"], svg=rel["svg"], caption=plot.caption)
    return plots


def write_report(report: StitchReport, out_dir: str | os.PathLike[str]) -> Path:
    """Write report.json, report.md and report.html into ``out_dir`` (created if needed) and
    return the folder. Plot files outside the folder are copied into ``out_dir/plots``; the
    written report refers to plots by paths relative to the folder. Each file is written to a
    temporary name and renamed into place, so a reader never sees a half-written file."""
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    local = report.model_copy(update={"plots": _localise_plots(report, out)})
    staging = Path(tempfile.mkdtemp(prefix=".report.", dir=out))
    try:
        (staging / "report.json").write_text(local.model_dump_json(indent=2), encoding="utf-8")
        (staging / "report.md").write_text(render_markdown(local), encoding="utf-8")
        (staging / "report.html").write_text(render_html(local, out), encoding="utf-8")
        for name in REPORT_FILES:
            os.replace(staging / name, out / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out
