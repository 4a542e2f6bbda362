"""docs/api.md is generated from the docstrings and must match the code."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_api_reference_is_current() -> None:
    spec = importlib.util.spec_from_file_location(
        "gen_api_docs", ROOT / "tools" / "gen_api_docs.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    expected = module.render()
    actual = (ROOT / "docs" / "api.md").read_text()
    assert actual == expected, "docs/api.md is out of date: run `make docs`"


def test_every_public_name_is_listed_once_and_resolves() -> None:
    import sae_lens_stitch

    assert len(sae_lens_stitch.__all__) == len(set(sae_lens_stitch.__all__))
    for name in sae_lens_stitch.__all__:
        assert getattr(sae_lens_stitch, name) is not None, name
    assert set(sae_lens_stitch._EXPORTS) | {"__version__"} == set(sae_lens_stitch.__all__)
