"""Model cards for SAEs pushed to the Hub.

The card's YAML front matter carries ``library_name: saelens``, tags, ``base_model`` (only when
every SAE's model name maps to the same Hub model), and under ``sae_lens_stitch.saes`` one
entry per SAE in the repo: its path, model, hook, architecture, widths, parent SAEs (with the
commit sha each was downloaded at and how many latents came from it), the operations with
their thresholds, and metrics when given (rendered as a metric / value / better table). The body's section between the ``sae-lens-stitch`` markers is regenerated
from those entries on every push; everything else in an existing card is kept.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from huggingface_hub import ModelCard
from pydantic import BaseModel
from sae_lens import SAE

from sae_lens_stitch._version import __version__
from sae_lens_stitch.provenance import get_provenance

CARD_KEY = "sae_lens_stitch"
_BUDGET_KEYS = ("width_budget", "l0_budget", "refit", "n_fit_tokens")
"""Details of an ``assemble`` operation shown on the card."""
BEGIN_MARKER = "<!-- sae-lens-stitch:begin (generated, edits here are replaced) -->"
END_MARKER = "<!-- sae-lens-stitch:end -->"
BASE_TAGS = ("saelens", "sae-lens-stitch", "sparse-autoencoder", "interpretability")

MetricsLike = Mapping[str, Any] | BaseModel


def _json_safe(value: Any) -> Any:
    """``value`` as plain JSON types (drops None entries of dicts)."""
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    plain = json.loads(json.dumps(value, default=str, allow_nan=True))
    return _drop_none(plain)


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value


def hub_model_id(model_name: str | None) -> str | None:
    """The Hub id of a TransformerLens model name (``gpt2-small`` -> ``gpt2``), or None."""
    if not model_name:
        return None
    try:
        from transformer_lens.loading_from_pretrained import get_official_model_name

        return get_official_model_name(model_name)
    except Exception:  # unknown names raise ValueError; anything else: no base_model
        return None


def loadable_by_plain_sae_lens(sae: SAE[Any]) -> bool:
    """Whether SAE-Lens knows the SAE's class without importing this package."""
    return type(sae).__module__.startswith("sae_lens.")


def card_entry(
    sae: SAE[Any], path_in_repo: str, *, metrics: MetricsLike | None = None
) -> dict[str, Any]:
    """The card's YAML entry for ``sae`` stored at ``path_in_repo``."""
    prov = get_provenance(sae)
    counts = prov.counts_by_source()
    md = sae.cfg.metadata
    parents = [
        {"key": key, **src.model_dump(exclude_none=True), "n_latents": counts[key]}
        for key, src in prov.sources.items()
    ]
    operations = [
        {
            "operation": op.operation,
            "threshold": op.threshold,
            "n_latents_in": op.n_latents_in,
            "n_latents_removed": op.n_latents_removed,
            "package_version": op.package_version,
        }
        | (
            {"budgets": {k: op.details.get(k) for k in _BUDGET_KEYS}}
            if op.operation == "assemble"
            else {}
        )
        for op in prov.operations
    ]
    entry: dict[str, Any] = {
        "path": path_in_repo,
        "model_name": getattr(md, "model_name", None),
        "hook_name": getattr(md, "hook_name", None),
        "architecture": sae.cfg.architecture(),
        "d_in": sae.cfg.d_in,
        "d_sae": sae.cfg.d_sae,
        "parents": parents,
        "operations": operations,
        "loadable_by_plain_sae_lens": loadable_by_plain_sae_lens(sae),
        "sae_lens_stitch_version": __version__,
    }
    if metrics is not None:
        entry["metrics"] = _json_safe(metrics)
    return _json_safe(entry)


def _short(revision: Any) -> str:
    return f"`{str(revision)[:12]}`" if revision else "-"


def _parent_name(parent: Mapping[str, Any]) -> str:
    if parent.get("release") and parent.get("sae_id"):
        return f"`{parent['release']}` / `{parent['sae_id']}`"
    if parent.get("repo_id"):
        return f"`{parent['repo_id']}` / `{parent.get('folder') or '.'}`"
    if parent.get("content_hash"):
        return f"in-memory SAE `sha256:{str(parent['content_hash'])[:16]}`"
    return f"`{parent.get('key', '?')}`"


def _format_value(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, str):
        return value.replace("|", "\\|")
    return json.dumps(value).replace("|", "\\|")


def metric_rows(metrics: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str, str]]:
    """``(metric, value, better)`` rows of a metrics mapping: ``{"value", "better"}`` entries
    give their direction, nested mappings are flattened to ``outer.inner`` names."""
    rows: list[tuple[str, str, str]] = []
    for name, value in metrics.items():
        label = f"{prefix}{name}"
        if isinstance(value, Mapping) and "value" in value:
            better = value.get("better")
            rows.append((label, _format_value(value["value"]), str(better) if better else "-"))
        elif isinstance(value, Mapping):
            rows += metric_rows(value, prefix=f"{label}.")
        else:
            rows.append((label, _format_value(value), "-"))
    return rows


def _render_entry(repo_id: str, entry: Mapping[str, Any]) -> list[str]:
    path = entry.get("path", ".")
    lines = [
        f"### `{path}`",
        "",
        f"- model `{entry.get('model_name')}`, hook `{entry.get('hook_name')}`",
        f"- architecture `{entry.get('architecture')}`, d_in {entry.get('d_in')}, "
        f"**{entry.get('d_sae')} latents**",
    ]
    ops = entry.get("operations") or []
    if ops:
        described = []
        for op in ops:
            extra = []
            if op.get("threshold") is not None:
                extra.append(f"threshold {op['threshold']}")
            if op.get("n_latents_in") is not None:
                extra.append(f"{op['n_latents_in']} latents in")
            if op.get("n_latents_removed") is not None:
                extra.append(f"{op['n_latents_removed']} removed")
            for key, value in (op.get("budgets") or {}).items():
                if value is not None:
                    extra.append(f"{key.replace('_', ' ')} {value}")
            described.append(op.get("operation", "?") + (f" ({', '.join(extra)})" if extra else ""))
        lines.append(f"- built by: {' -> '.join(described)}")
    lines += ["", "| parent SAE | revision | latents |", "|---|---|---:|"]
    for parent in entry.get("parents") or []:
        lines.append(
            f"| {_parent_name(parent)} | {_short(parent.get('revision'))} | {parent.get('n_latents')} |"
        )
    metrics = entry.get("metrics")
    if isinstance(metrics, Mapping) and metrics:
        lines += ["", "| metric | value | better |", "|---|---:|---|"]
        lines += [f"| {n} | {v} | {b} |" for n, v, b in metric_rows(metrics)]
    lines += ["", "Load it with SAE-Lens:", "", "```python"]
    if not entry.get("loadable_by_plain_sae_lens", True):
        lines.append(
            f"import sae_lens_stitch.block_topk  # registers the {entry.get('architecture')} architecture"
        )
    lines += [
        "from sae_lens import SAE",
        "",
        f'sae = SAE.from_pretrained("{repo_id}", "{path}")',
        "```",
        "",
    ]
    return lines


def render_section(repo_id: str, entries: list[Mapping[str, Any]]) -> str:
    """The generated part of the card body, markers included."""
    lines = [
        BEGIN_MARKER,
        "## SAEs made with sae-lens-stitch",
        "",
        f"This repo holds {len(entries)} SAE(s) for [SAE-Lens](https://github.com/decoderesearch/SAELens), "
        "built from latents of existing SAEs with "
        "[sae-lens-stitch](https://pypi.org/project/sae-lens-stitch/). Each SAE's config "
        "(`cfg.json`, `metadata.sae_lens_stitch`) records where every latent came from.",
        "",
    ]
    for entry in entries:
        lines += _render_entry(repo_id, entry)
    lines.append(END_MARKER)
    return "\n".join(lines)


def update_card(existing: str | None, repo_id: str, entry: Mapping[str, Any]) -> str:
    """The README.md text after adding (or replacing, by path) ``entry`` in the card
    ``existing`` (None: no card yet). Other SAEs, metadata and text already there are kept."""
    log = logging.getLogger("huggingface_hub.repocard")
    previous_level = log.level
    log.setLevel(logging.ERROR)  # "metadata block not found" for cards without front matter
    try:
        card = ModelCard(existing or "")
    finally:
        log.setLevel(previous_level)
    data = card.data
    data["library_name"] = "saelens"
    section = data.get(CARD_KEY)
    old = section.get("saes", []) if isinstance(section, Mapping) else []
    entries = [e for e in old if isinstance(e, Mapping) and e.get("path") != entry["path"]]
    entries.append(dict(entry))
    entries.sort(key=lambda e: str(e.get("path")))
    data[CARD_KEY] = {"format_version": 1, "saes": entries}

    tags = list(data.get("tags") or [])
    for tag in BASE_TAGS:
        if tag not in tags:
            tags.append(tag)
    data["tags"] = tags
    models = {hub_model_id(e.get("model_name")) for e in entries}
    if len(models) == 1 and None not in models:
        if not data.get("base_model"):
            data["base_model"] = models.pop()
    elif isinstance(data.get("base_model"), str) and data.get("base_model") in models:
        # set by an earlier push; the SAEs no longer share one Hub model
        data.pop("base_model")

    text = card.text or ""
    generated = render_section(repo_id, entries)
    start, end = text.find(BEGIN_MARKER), text.find(END_MARKER)
    if start != -1 and end > start:
        text = text[:start] + generated + text[end + len(END_MARKER) :]
    else:
        text = (text.rstrip() + "\n\n" if text.strip() else "") + generated + "\n"
    card.text = text
    return str(card)
