"""Write docs/api.md from the public API's signatures and docstrings.

Run ``make docs`` (or ``python tools/gen_api_docs.py``); tests/test_api_docs.py fails when the
committed page is out of date.
"""

from __future__ import annotations

import ast
import dataclasses
import enum
import inspect
import itertools
import re
import sys
import textwrap
from pathlib import Path
from typing import Any

from pydantic import BaseModel

import sae_lens_stitch

STEPS: list[tuple[str, list[str]]] = [
    (
        "Load and save",
        ["sae_lens_stitch.io.sources", "sae_lens_stitch.io.load", "sae_lens_stitch.io.save"],
    ),
    ("Activations from a model", ["sae_lens_stitch.evaluation.model_activations"]),
    ("Match", ["sae_lens_stitch.analysis.match"]),
    (
        "Classify and families",
        ["sae_lens_stitch.analysis.classify", "sae_lens_stitch.analysis.families"],
    ),
    (
        "Relate latents beyond cosine",
        [
            "sae_lens_stitch.analysis.correlate",
            "sae_lens_stitch.analysis.agreement",
            "sae_lens_stitch.analysis.decompose",
        ],
    ),
    (
        "Surgery",
        [
            "sae_lens_stitch.surgery.operations",
            "sae_lens_stitch.registry",
            "sae_lens_stitch.checks",
        ],
    ),
    (
        "Assembly",
        ["sae_lens_stitch.assembly.assemble", "sae_lens_stitch.assembly.refit"],
    ),
    (
        "Evaluate",
        [
            "sae_lens_stitch.evaluation.metrics",
            "sae_lens_stitch.analysis.effects",
            "sae_lens_stitch.evaluation.curves",
            "sae_lens_stitch.report.document",
        ],
    ),
    ("Publish", ["sae_lens_stitch.io.publish"]),
    (
        "Study (all steps)",
        [
            "sae_lens_stitch.study.run",
            "sae_lens_stitch.study.config",
            "sae_lens_stitch.study.shared",
        ],
    ),
    ("Provenance", ["sae_lens_stitch.provenance"]),
    ("Errors", ["sae_lens_stitch.errors", "sae_lens_stitch.validation"]),
]


def _doc(obj: Any) -> str:
    return inspect.cleandoc(obj.__doc__ or "").strip()


def _signature(name: str, obj: Any) -> str:
    try:
        sig = str(inspect.signature(obj))
    except (TypeError, ValueError):
        return name
    # callables as defaults print with their address: keep the name only
    sig = re.sub(r"<function ([\w.<>]+) at 0x[0-9a-f]+>", r"\1", sig)
    return f"{name}{sig}"


def _attribute_docs(cls: type) -> dict[str, str]:
    """Docstrings written under class attributes (``x: int`` then ``\"\"\"...\"\"\"``)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if klass.__module__.split(".")[0] != "sae_lens_stitch":
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError, SyntaxError):
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for stmt, nxt in itertools.pairwise(body):
            if (
                isinstance(stmt, ast.AnnAssign)
                and isinstance(stmt.target, ast.Name)
                and isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)
            ):
                docs[stmt.target.id] = " ".join(inspect.cleandoc(nxt.value.value).split())
    return docs


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, str):
        return annotation
    return (getattr(annotation, "__name__", None) or str(annotation)).replace("typing.", "")


def _fields(obj: Any) -> list[str]:
    rows: list[str] = []
    if isinstance(obj, type) and (issubclass(obj, BaseModel) or dataclasses.is_dataclass(obj)):
        docs = _attribute_docs(obj)
        if issubclass(obj, BaseModel):
            pairs = [(n, _type_name(f.annotation)) for n, f in obj.model_fields.items()]
        else:
            pairs = [(f.name, _type_name(f.type)) for f in dataclasses.fields(obj)]
        for fname, ann in pairs:
            desc = f": {docs[fname]}" if fname in docs else ""
            rows.append(f"- `{fname}` ({ann}){desc}")
    elif isinstance(obj, type) and issubclass(obj, enum.Enum):
        rows.extend(f"- `{member.name}` = `{member.value!r}`" for member in obj)
    return rows


def render() -> str:
    names = [n for n in sae_lens_stitch.__all__ if not n.startswith("_")]
    objects = {n: getattr(sae_lens_stitch, n) for n in names}
    lines = [
        "# API reference",
        "",
        "Generated from the docstrings by `make docs` (tools/gen_api_docs.py); do not edit by hand.",
        "Everything below is importable from `sae_lens_stitch`. Tensor names carry shape suffixes",
        "(`values_SK`: S source latents by K matches; N tokens, D d_in, L latents).",
        "",
    ]
    placed: set[str] = set()
    for title, modules in STEPS:
        members = [n for n in names if objects[n].__module__ in modules]
        if not members:
            continue
        lines += [f"## {title}", ""]
        for name in sorted(members, key=lambda n: (modules.index(objects[n].__module__), n)):
            obj = objects[name]
            placed.add(name)
            kind = "class" if isinstance(obj, type) else "function"
            lines += [f"### `{name}` ({kind}, `{obj.__module__}`)", ""]
            if not (isinstance(obj, type) and issubclass(obj, (BaseModel, Exception, enum.Enum))):
                lines += ["```python", _signature(name, obj), "```", ""]
            doc = _doc(obj)
            if doc:
                lines += [doc, ""]
            fields = _fields(obj)
            if fields:
                lines += ["Fields:", "", *fields, ""]
    missing = sorted(set(names) - placed)
    if missing:
        raise SystemExit(f"public names with no section in tools/gen_api_docs.py: {missing}")
    return "\n".join(lines).rstrip() + "\n"


def main() -> int:
    target = Path(__file__).resolve().parent.parent / "docs" / "api.md"
    target.write_text(render())
    print(f"wrote {target}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
