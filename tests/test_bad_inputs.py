"""The bad-input catalogue: every entry is one bad input, the typed error it must raise and a
fragment of the message (the offending value, or what was expected). Adding a case is one line
in a table below. API cases call the library; CLI cases call ``main(argv)`` in-process and must
print exactly one error line (no traceback), exit 1 and leave nothing on disk.

Tables:

* ``API_CASES``: ``(id, call(env), error type, fragment)``.
* ``CLI_CASES``: ``(command line, error type, fragment)``; ``{name}`` in the line is replaced by
  ``env.paths[name]`` (the SAE folders, bad files, ``{out}`` a folder that must not appear,
  ``{nl}`` a newline).
* Cross products (a bad value at every entry point that takes it) are built from small
  tables of values and entry points: ``BAD_THRESHOLDS`` x ``THRESHOLD_CALLS`` and so on.
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import make_sae
from sae_lens import SAE

import sae_lens_stitch.cli as cli
from sae_lens_stitch import (
    BudgetError,
    CorruptSAEError,
    DeviceError,
    FeatureFamily,
    IncompatibleSAEsError,
    InvalidActivationsError,
    InvalidArgumentError,
    InvalidDestinationError,
    InvalidIndicesError,
    PathExistsError,
    SaveError,
    SourceNotFoundError,
    StitchError,
    assemble,
    check_indices,
    classify_features,
    dead_latents,
    evaluate,
    feature_families,
    firing_counts,
    frankenstein,
    frankenstein_plane,
    insert_effects,
    insertion_curve,
    load_sae,
    match_features,
    push_to_hub,
    remove_features,
    save_sae,
    stitch,
    swap,
    swap_curve,
)
from sae_lens_stitch.analysis.match import similar_pairs, similarity_stats
from sae_lens_stitch.cli.common import CLIError
from sae_lens_stitch.errors import InvalidNameError, StudyError
from sae_lens_stitch.evaluation.activations import read_activations
from sae_lens_stitch.io.sources import parse_source

D_IN = 16
NO_GPU = not torch.cuda.is_available()


@dataclass
class Env:
    root: Path
    small: SAE[Any]
    large: SAE[Any]
    acts: torch.Tensor
    paths: dict[str, str] = field(default_factory=dict)


# ---------------------------------------------------------------------------- files

GOOD_CFG_EDITS: dict[str, Callable[[dict[str, Any]], Any]] = {}


def _without(key: str) -> Callable[[dict[str, Any]], Any]:
    return lambda cfg: {k: v for k, v in cfg.items() if k != key}


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], Any]:
    return lambda cfg: {**cfg, key: value}


CORRUPT_CFGS: dict[str, tuple[Callable[[dict[str, Any]], Any], str]] = {
    # name: (edit of the good cfg.json, message fragment)
    "no_d_sae": (_without("d_sae"), "no 'd_sae'"),
    "no_d_in": (_without("d_in"), "no 'd_in'"),
    "str_d_in": (_set("d_in", "16"), "d_in must be a positive integer; got '16'"),
    "zero_d_in": (_set("d_in", 0), "d_in must be a positive integer; got 0"),
    "neg_d_sae": (_set("d_sae", -8), "d_sae must be a positive integer; got -8"),
    "float_d_sae": (_set("d_sae", 12.5), "d_sae must be a positive integer; got 12.5"),
    "bool_d_in": (_set("d_in", True), "d_in must be a positive integer; got True"),
    "null_d_in": (_set("d_in", None), "d_in must be a positive integer; got None"),
    "list_d_sae": (_set("d_sae", [12]), "d_sae must be a positive integer; got [12]"),
    "null_metadata": (_set("metadata", None), "metadata must be a JSON object; got None"),
    "list_metadata": (_set("metadata", [1, 2]), "metadata must be a JSON object; got [1, 2]"),
    "str_metadata": (_set("metadata", "x"), "metadata must be a JSON object; got 'x'"),
    "int_architecture": (_set("architecture", 5), "architecture must be a string; got 5"),
    "unknown_architecture": (_set("architecture", "banana"), "banana"),
    "list_cfg": (lambda cfg: [cfg], "must hold a JSON object"),
    "str_cfg": (lambda cfg: "cfg", "must hold a JSON object; it holds 'cfg'"),
    "num_cfg": (lambda cfg: 42, "must hold a JSON object; it holds 42"),
    "null_cfg": (lambda cfg: None, "must hold a JSON object; it holds None"),
    "wrong_d_sae": (_set("d_sae", 13), "corrupt"),
    "wrong_d_in": (_set("d_in", 17), "corrupt"),
    "int_dtype": (_set("dtype", 32), "dtype must be a string; got 32"),
    "bad_dtype": (_set("dtype", "float7"), "float7"),
}
CORRUPT_FILES: dict[str, tuple[str, bytes | None, str]] = {
    # name: (file, new content (None: a folder instead), message fragment)
    "cfg_not_json": ("cfg.json", b"{not json", "not valid JSON"),
    "cfg_empty": ("cfg.json", b"", "not valid JSON"),
    "cfg_binary": ("cfg.json", b"\xff\xfe\x00\x01garbage", "not valid JSON"),
    "weights_garbage": ("sae_weights.safetensors", b"garbage" * 10, "corrupt"),
    "weights_empty": ("sae_weights.safetensors", b"", "corrupt"),
    "sparsity_garbage": ("sparsity.safetensors", b"\x00" * 64, "corrupt"),
}


def _write_acts(root: Path) -> dict[str, str]:
    """Bad activation files, by name."""
    good = torch.randn(64, D_IN)
    files: dict[str, Any] = {
        "nan.pt": good.clone().index_fill_(0, torch.tensor([3]), float("nan")),
        "inf.pt": good.clone().index_fill_(0, torch.tensor([5]), float("inf")),
        "complex.pt": torch.randn(64, D_IN, dtype=torch.complex64),
        "bool.pt": torch.ones(64, D_IN, dtype=torch.bool),
        "wrong_din.pt": torch.randn(64, D_IN + 1),
        "scalar.pt": torch.tensor(1.0),
        "empty.pt": torch.zeros(0, D_IN),
        "two_tensors.pt": {"a": good, "b": good},
        "not_tensor.pt": [1, 2, 3],
    }
    paths = {}
    for name, value in files.items():
        torch.save(value, root / name)
        paths[name] = str(root / name)
    arrays = {
        "complex.npy": np.ones((64, D_IN), dtype=np.complex64),
        "nan.npy": np.full((64, D_IN), np.nan, dtype=np.float32),
        "inf.npy": np.full((64, D_IN), -np.inf, dtype=np.float64),
        "str.npy": np.array([["a"] * D_IN]),
        "wrong_din.npy": np.ones((64, 3), dtype=np.float32),
    }
    for name, value in arrays.items():
        np.save(root / name, value)
        paths[name] = str(root / name)
    np.save(root / "object.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    paths["object.npy"] = str(root / "object.npy")
    raw = {
        "garbage.pt": b"definitely not torch",
        "garbage.npy": b"not numpy either",
        "garbage.safetensors": b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage",
        "truncated.pt": b"PK\x03\x04truncated",
        "acts.txt": b"1 2 3",
        "acts.csv": b"1,2,3",
    }
    for name, content in raw.items():
        (root / name).write_bytes(content)
        paths[name] = str(root / name)
    (root / "folder.pt").mkdir()
    paths["folder.pt"] = str(root / "folder.pt")
    paths["missing.pt"] = str(root / "missing.pt")
    return paths


def _write_index_files(root: Path) -> dict[str, str]:
    contents = {
        "idx_binary": b"\x00\xff\xfe\x80\x81binary",
        "idx_empty": b"  \n",
        "idx_empty_json": b"[]",
        "idx_bad_json": b"[1, 2",
        "idx_floats_json": b"[1.5, 2]",
        "idx_nested_json": b"[[1, 2]]",
        "idx_object_json": b'[{"a": 1}]',
        "idx_words": b"one two",
        "idx_negative_json": b"[-3]",
        "idx_out_of_range": b"0 1 99",
        "idx_dup": b"1 2 1",
        "idx_huge": b"1000000000000000000000000000000",
    }
    paths = {}
    for name, content in contents.items():
        (root / name).write_bytes(content)
        paths[name] = str(root / name)
    (root / "idx_folder").mkdir()
    paths["idx_folder"] = str(root / "idx_folder")
    paths["idx_missing"] = str(root / "idx_missing")
    return paths


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Env:
    root = tmp_path_factory.mktemp("bad")
    small = make_sae("standard", 8, D_IN, seed=1)
    large = make_sae("standard", 16, D_IN, seed=2)
    e = Env(root=root, small=small, large=large, acts=torch.randn(64, D_IN))
    e.paths["small"] = str(save_sae(small, root / "small"))
    e.paths["large"] = str(save_sae(large, root / "large"))
    other = make_sae("standard", 12, 8, seed=3)
    e.paths["other"] = str(save_sae(other, root / "other"))
    good_cfg = json.loads((root / "small" / "cfg.json").read_text())
    for name, (edit, _) in CORRUPT_CFGS.items():
        folder = root / f"corrupt_{name}"
        folder.mkdir()
        (folder / "cfg.json").write_text(json.dumps(edit(good_cfg)))
        (folder / "sae_weights.safetensors").write_bytes(
            (root / "small" / "sae_weights.safetensors").read_bytes()
        )
        e.paths[f"corrupt_{name}"] = str(folder)
    for name, (file, content, _) in CORRUPT_FILES.items():
        folder = root / f"corrupt_{name}"
        folder.mkdir()
        for good in ("cfg.json", "sae_weights.safetensors"):
            (folder / good).write_bytes((root / "small" / good).read_bytes())
        if content is None:
            (folder / file).unlink(missing_ok=True)
            (folder / file).mkdir()
        else:
            (folder / file).write_bytes(content)
        e.paths[f"corrupt_{name}"] = str(folder)
    (root / "a_file").write_text("x")
    e.paths["a_file"] = str(root / "a_file")
    e.paths["no_cfg"] = str(root)  # a folder without cfg.json
    e.paths["missing"] = str(root / "missing_sae")
    data = root / "data"
    data.mkdir()
    e.paths.update(_write_acts(data))
    e.paths.update(_write_index_files(data))
    torch.save(e.acts, data / "good.pt")
    e.paths["good.pt"] = str(data / "good.pt")
    e.paths["out"] = str(root / "out")
    e.paths["out_in_file"] = str(root / "a_file" / "out")
    e.paths["out_no_parent"] = str(root / "no" / "parent" / "out")
    e.paths["nl"] = "\n"
    e.paths["long_name"] = str(root / ("x" * 300))
    return e


def listing(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


# ---------------------------------------------------------------------------- API tables

NAN, INF = float("nan"), float("inf")
BAD_THRESHOLDS: list[tuple[Any, str]] = [
    (1.5, "got 1.5"),
    (-0.5001 - 1, "got -1.5001"),
    (1.0000001, "got 1.0000001"),
    (NAN, "got nan"),
    (INF, "got inf"),
    (-INF, "got -inf"),
    ("0.7", "got '0.7' (str)"),
    (True, "got True (bool)"),
    (None, "got None"),
    ([0.7], "got [0.7] (list)"),
    (complex(0.5, 0.1), "(complex)"),
    (torch.tensor([0.5, 0.6]), "a tensor of shape (2,)"),
    (np.float64("nan"), "got nan"),
]
THRESHOLD_CALLS: dict[str, Callable[[Env, Any], object]] = {
    "stitch": lambda e, t: stitch(e.small, e.large, threshold=t),
    "stitch_explicit": lambda e, t: stitch(e.small, e.large, [0], threshold=t),
    "swap": lambda e, t: swap(e.small, e.large, threshold=t),
    "classify": lambda e, t: classify_features(e.small, e.large, threshold=t),
    "families": lambda e, t: feature_families(e.small, e.large, threshold=t),
    "frankenstein": lambda e, t: frankenstein([e.small, e.large], threshold=t),
    "similar_pairs": lambda e, t: similar_pairs(e.large, e.small, threshold=t),
    "similarity_stats": lambda e, t: similarity_stats(torch.zeros(3), t),
    "insertion_curve": lambda e, t: insertion_curve(e.small, e.large, e.acts, threshold=t),
    "swap_curve": lambda e, t: swap_curve(e.small, e.large, e.acts, threshold=t),
    "frankenstein_plane": lambda e, t: frankenstein_plane([e.small, e.large], e.acts, threshold=t),
    "insert_effects": lambda e, t: insert_effects(e.small, e.large, e.acts, threshold=t),
}

BAD_INDICES: list[tuple[Any, str]] = [
    (5, "got 5 (int); wrap a single index in a list"),
    ("0,1", "got '0,1' (str)"),
    (b"\x00", "(bytes)"),
    (2.0, "got 2.0 (float)"),
    ([10**30], "1000000000000000000000000000000"),
    ([-(10**30)], "-1000000000000000000000000000000"),
    ([-1], "out of range for 16 latents (allowed: 0..15): [-1]"),
    ([16], "out of range for 16 latents (allowed: 0..15): [16]"),
    ([0, 0], "duplicate"),
    (range(10**12), "out of range for 16 latents (allowed: 0..15): [999999999999]"),
    (range(-3, 4), "[-3]"),
    (range(10**30), "[999999999999999999999999999999]"),
    ([1.0], "got 1.0 (float)"),
    ([True], "got True (bool)"),
    ([0, "1"], "got '1' (str)"),
    ([[0, 1]], "got [0, 1] (list)"),
    ([None], "got None"),
    (torch.tensor([[0, 1], [2, 3]]), "must be 1-D"),
    (torch.tensor(3), "must be 1-D"),
    (torch.tensor([0.0, 1.0]), "dtype torch.float32"),
    (torch.tensor([True, False]), "dtype torch.bool"),
    (torch.tensor([0, 99]), "[99]"),
    (np.array([0.5]), "dtype float64"),
    (np.array([[0, 1]]), "must be 1-D"),
    (np.array([2**40], dtype=np.int64), "1099511627776"),
    (np.array([0, 0]), "duplicate"),
    ({"a": 1}, "got 'a' (str)"),
    (object(), "(object)"),
]
INDEX_CALLS: dict[str, Callable[[Env, Any], object]] = {
    "stitch": lambda e, idx: stitch(e.small, e.large, idx),
    "remove_features": lambda e, idx: remove_features(e.large, idx),
    "check_indices": lambda e, idx: check_indices(idx, 16),
}

BAD_ACTIVATIONS: list[tuple[str, Callable[[], Any], str]] = [
    ("nan", lambda: torch.randn(32, D_IN).index_fill_(0, torch.tensor([2]), NAN), "non-finite"),
    ("inf", lambda: torch.full((32, D_IN), INF), "512 non-finite"),
    (
        "neg_inf_one",
        lambda: torch.zeros(8, D_IN).index_fill_(1, torch.tensor([0]), -INF),
        "8 non-finite",
    ),
    ("complex", lambda: torch.randn(32, D_IN, dtype=torch.complex64), "complex"),
    ("bool", lambda: torch.ones(32, D_IN, dtype=torch.bool), "booleans"),
    ("wrong_d_in", lambda: torch.randn(32, D_IN + 1), "d_in=16; got shape (32, 17)"),
    ("scalar", lambda: torch.tensor(1.0), "got shape ()"),
    ("path_string", lambda: "acts.npy", "got 'acts.npy' (str)"),
    ("path", lambda: Path("acts.npy"), "(PosixPath)"),
    ("number", lambda: 5, "got 5 (int)"),
    ("batches_with_nan", lambda: [torch.randn(4, D_IN), torch.full((4, D_IN), NAN)], "non-finite"),
    ("batches_of_strings", lambda: ["a", "b"], "got 'a' (str)"),
    ("numpy_complex", lambda: np.ones((8, D_IN), dtype=np.complex128), "complex128"),
    ("numpy_nan", lambda: np.full((8, D_IN), np.nan, dtype=np.float32), "non-finite"),
    ("empty_list", lambda: [], "empty"),
]
ACTIVATION_CALLS: dict[str, Callable[[Env, Any], object]] = {
    "evaluate": lambda e, x: evaluate(e.large, x),
    "firing_counts": lambda e, x: firing_counts(e.large, x),
    "dead_latents": lambda e, x: dead_latents(e.large, x),
    "classify": lambda e, x: classify_features(e.small, e.large, activations=x),
    "stitch": lambda e, x: stitch(e.small, e.large, activations=x),
    "frankenstein": lambda e, x: frankenstein([e.small, e.large], activations=x),
    "insertion_curve": lambda e, x: insertion_curve(e.small, e.large, x),
    "insert_effects": lambda e, x: insert_effects(e.small, e.large, x),
}
EMPTY_OK = {"batches_of_strings"}  # (an empty list is "no tokens" for every entry point)

BAD_DEVICES: list[tuple[Any, str]] = [
    ("banana", "invalid device 'banana'"),
    ("", "invalid device ''"),
    (" cpu", "invalid device ' cpu'"),
    ("cpu\n", "invalid device 'cpu\\n'"),
    ("cuda:99", "'cuda:99' is not available"),
    ("meta", "'meta' holds no data"),
    ("cpu:x", "invalid device 'cpu:x'"),
    (5, "invalid device 5 (int)"),
    (None, "invalid device None"),
    (["cpu"], "invalid device ['cpu'] (list)"),
] + ([("cuda", "'cuda' is not available")] if NO_GPU else [])

BAD_REPO_IDS = ["abc\n", "me/repo\n", "me/repo/x", "me", "/repo", "me/", "m e/repo", "me/..",
                "../me", "me/re\x00po", "", "me/-repo", "me/repo.", "me\n/repo", "me//repo",
                "-me/repo", "me/re po", "me/re\tpo", "a" * 60 + "/" + "b" * 60]  # fmt: skip
BAD_PATHS_IN_REPO = ["abc\n", "", "/", "..", "a/../b", "a b", "a\tb", ".", "a/./b", "x\n/y",
                     "a\\b", "a?b", "caf\u00e9"]  # fmt: skip
BAD_REVISIONS = ["main\n", "", "a b", "..", "a..b", "-x", "ma\x00in"]
BAD_SOURCES: list[tuple[Any, str]] = [
    ("hf://me", "hf://OWNER/REPO"),
    ("hf://", "hf://OWNER/REPO"),
    ("hf://me/re po", "hf://OWNER/REPO"),
    ("hf://me/repo\n/x", "hf://OWNER/REPO"),
    ("hf://me/repo@", "around '@'"),
    ("hf://me/repo@a b", "is not a branch"),
    ("hf://me/repo@ma\nin", "is not a branch"),
    ("hf://me/repo/../x", "without '..'"),
    ("hf://me/repo//x", "without '..' or '//'"),
    ("release:", "empty release or SAE id"),
    (":sae", "empty release or SAE id"),
    ("rel:sae@", "around '@'"),
    ("rel:sa\ne", "control characters"),
    ("rel:sa\x00e", "NUL"),
    ("", "expected a non-empty string"),
    ("   ", "expected a non-empty string"),
    (5, "expected a non-empty string"),
    (None, "expected a non-empty string"),
    (("only-one",), "a pair must be"),
    (("rel", ""), "a pair must be"),
    (("rel", " "), "a pair must be"),
    (("rel\n", "id"), "control characters"),
    (("rel", "id\t"), "control characters"),
    ("no-colon-no-folder", "no such local folder"),
]

API_CASES: list[tuple[str, Callable[[Env], object], type[Exception], str]] = [
    # --- SAEs that are not SAEs, swapped arguments
    ("save swapped", lambda e: save_sae("x", e.small), InvalidArgumentError, "got 'x' (str)"),  # pyright: ignore[reportArgumentType]
    ("save sae=None", lambda e: save_sae(None, e.root / "n"), InvalidArgumentError, "got None"),  # pyright: ignore[reportArgumentType]
    ("save folder=5", lambda e: save_sae(e.small, 5), InvalidArgumentError, "got 5 (int)"),  # pyright: ignore[reportArgumentType]
    ("save folder=''", lambda e: save_sae(e.small, ""), InvalidArgumentError, "got ''"),
    ("save folder=sae", lambda e: save_sae(e.small, e.large), InvalidArgumentError, "swapped"),  # pyright: ignore[reportArgumentType]
    ("save folder NUL", lambda e: save_sae(e.small, "a\x00b"), InvalidArgumentError, "not a valid path"),
    ("save exists", lambda e: save_sae(e.small, e.paths["small"]), PathExistsError, "overwrite=True"),
    ("save over a file", lambda e: save_sae(e.small, e.paths["a_file"], overwrite=True), PathExistsError, "not a folder"),
    ("save under a file", lambda e: save_sae(e.small, Path(e.paths["a_file"]) / "x"), InvalidArgumentError, "is not a folder"),
    ("save name too long", lambda e: save_sae(e.small, e.root / ("x" * 300)), SaveError, "File name too long"),
    ("save parent name too long", lambda e: save_sae(e.small, e.root / ("x" * 300) / "s"), SaveError, "File name too long"),
    ("save under /proc", lambda e: save_sae(e.small, "/proc/self/sae"), SaveError, "cannot save to '/proc/self/sae'"),
    ("save overwrite='yes'", lambda e: save_sae(e.small, e.root / "ow", overwrite="yes"), InvalidArgumentError, "got 'yes'"),  # pyright: ignore[reportArgumentType]
    ("stitch strings", lambda e: stitch("a", "b"), InvalidArgumentError, "base must be an SAE-Lens SAE; got 'a'"),  # pyright: ignore[reportArgumentType]
    ("stitch donor path", lambda e: stitch(e.small, e.paths["large"]), InvalidArgumentError, "load it first"),  # pyright: ignore[reportArgumentType]
    ("classify None", lambda e: classify_features(e.small, None), InvalidArgumentError, "large must be an SAE-Lens SAE; got None"),  # pyright: ignore[reportArgumentType]
    ("families dict", lambda e: feature_families({}, e.large), InvalidArgumentError, "small must be an SAE-Lens SAE; got {}"),  # pyright: ignore[reportArgumentType]
    ("match tensor", lambda e: match_features(e.small.W_dec, e.large), InvalidArgumentError, "a tensor of shape (8, 16)"),  # pyright: ignore[reportArgumentType]
    ("remove str", lambda e: remove_features("sae", [0]), InvalidArgumentError, "got 'sae'"),  # pyright: ignore[reportArgumentType]
    ("frankenstein one", lambda e: frankenstein([e.small]), InvalidArgumentError, "at least two SAEs, got 1"),
    ("frankenstein empty", lambda e: frankenstein([]), InvalidArgumentError, "at least two SAEs, got 0"),
    ("frankenstein sae", lambda e: frankenstein(e.small), InvalidArgumentError, "a list of SAEs"),  # pyright: ignore[reportArgumentType]
    ("frankenstein str", lambda e: frankenstein("ab"), InvalidArgumentError, "got 'ab' (str)"),  # pyright: ignore[reportArgumentType]
    ("frankenstein paths", lambda e: frankenstein([e.paths["small"], e.paths["large"]]), InvalidArgumentError, "saes[0] must be"),  # pyright: ignore[reportArgumentType]
    ("frankenstein order", lambda e: frankenstein([e.large, e.small]), InvalidArgumentError, "smallest first; got widths [16, 8]"),
    ("weights kind", lambda e: classify_features(e.small, e.large, weights="decoders"), InvalidArgumentError, "got 'decoders'"),  # pyright: ignore[reportArgumentType]
    ("weights None", lambda e: feature_families(e.small, e.large, weights=None), InvalidArgumentError, "got None"),  # pyright: ignore[reportArgumentType]
    ("match k=0", lambda e: match_features(e.small, e.large, k=0), InvalidArgumentError, "k must be an integer between 1 and 16; got 0"),
    ("match k=99", lambda e: match_features(e.small, e.large, k=99), InvalidArgumentError, "got 99"),
    ("match k=1.5", lambda e: match_features(e.small, e.large, k=1.5), InvalidArgumentError, "got 1.5"),  # pyright: ignore[reportArgumentType]
    ("match device", lambda e: match_features(e.small, e.large, device="banana"), DeviceError, "invalid device 'banana'"),
    ("similar_pairs device", lambda e: similar_pairs(e.small, e.large, threshold=0.5, device="cuda:99"), DeviceError, "'cuda:99'"),
    ("assemble eval_fraction str", lambda e: assemble([e.small, e.large], e.acts, width=4, eval_fraction="0.5"), InvalidArgumentError, "eval_fraction must be a number strictly between 0 and 1; got '0.5'"),
    ("assemble eval_fraction nan", lambda e: assemble([e.small, e.large], e.acts, width=4, eval_fraction=NAN), InvalidArgumentError, "got nan"),
    ("assemble width 0", lambda e: assemble([e.small, e.large], e.acts, width=0), BudgetError, "got 0"),
    ("assemble no budget", lambda e: assemble([e.small, e.large], e.acts), BudgetError, "give a width budget"),
    ("assemble pool dup", lambda e: assemble([e.small, e.large], e.acts, width=4, pool=[1, 1]), BudgetError, "twice"),
    ("assemble nan acts", lambda e: assemble([e.small, e.large], torch.full((300, D_IN), NAN), width=4), InvalidActivationsError, "non-finite"),
    ("chunk 0", lambda e: match_features(e.small, e.large, chunk_size=0), InvalidArgumentError, "chunk_size must be an integer 1 or more; got 0"),
    ("batch_size 0", lambda e: evaluate(e.large, e.acts, batch_size=0), InvalidArgumentError, "batch_size must be an integer 1 or more; got 0"),
    ("batch_size float", lambda e: evaluate(e.large, e.acts, batch_size=2.5), InvalidArgumentError, "got 2.5"),  # pyright: ignore[reportArgumentType]
    ("classify batch_size", lambda e: classify_features(e.small, e.large, batch_size=-1), InvalidArgumentError, "got -1"),
    ("dead_mask shape", lambda e: classify_features(e.small, e.large, dead_mask=torch.zeros(3, dtype=torch.bool)), InvalidArgumentError, "shape (3,)"),
    ("dead_mask list", lambda e: classify_features(e.small, e.large, dead_mask=[True]), InvalidArgumentError, "got [True]"),  # pyright: ignore[reportArgumentType]
    ("swap families ints", lambda e: swap(e.small, e.large, [1, 2]), InvalidArgumentError, "got an entry 1 (int)"),  # pyright: ignore[reportArgumentType]
    ("swap families str", lambda e: swap(e.small, e.large, "0"), InvalidArgumentError, "got '0'"),  # pyright: ignore[reportArgumentType]
    ("swap family range", lambda e: swap(e.small, e.large, [FeatureFamily(small_indices=[99], large_indices=[0], max_cosine=1.0)]), InvalidIndicesError, "[99]"),
    ("swap family overlap", lambda e: swap(e.small, e.large, [FeatureFamily(small_indices=[0], large_indices=[0], max_cosine=1.0)] * 2), InvalidIndicesError, "must not overlap"),
    ("incompatible d_in", lambda e: stitch(e.small, load_sae(e.paths["other"]), [0]), IncompatibleSAEsError, "d_in differs"),
    # --- loading
    ("load missing", lambda e: load_sae(e.paths["missing"]), SourceNotFoundError, "missing_sae"),
    ("load no cfg", lambda e: load_sae(e.paths["no_cfg"]), SourceNotFoundError, "has no cfg.json"),
    ("load a file", lambda e: load_sae(e.paths["a_file"]), SourceNotFoundError, "a_file"),
    ("load dtype str", lambda e: load_sae(e.paths["small"], dtype="float8"), InvalidArgumentError, "got 'float8'"),
    ("load dtype int", lambda e: load_sae(e.paths["small"], dtype=torch.int32), InvalidArgumentError, "torch.int32"),
    ("load dtype 5", lambda e: load_sae(e.paths["small"], dtype=5), InvalidArgumentError, "got 5"),  # pyright: ignore[reportArgumentType]
    ("load revision local", lambda e: load_sae(e.paths["small"], revision="main"), SourceNotFoundError, "does not apply"),
    ("load revision newline", lambda e: load_sae(e.paths["small"], revision="main\n"), InvalidDestinationError, "'main\\n'"),
    ("read_activations folder", lambda e: read_activations(e.paths["folder.pt"], D_IN), InvalidActivationsError, "is a folder"),
    ("read_activations None", lambda e: read_activations(None, D_IN), InvalidActivationsError, "got None"),  # pyright: ignore[reportArgumentType]
    ("read_activations d_in 0", lambda e: read_activations(e.paths["good.pt"], 0), InvalidArgumentError, "d_in must be an integer 1 or more; got 0"),
    ("read_activations d_in str", lambda e: read_activations(e.paths["good.pt"], "16"), InvalidArgumentError, "got '16'"),  # pyright: ignore[reportArgumentType]
    ("evaluate dense_threshold", lambda e: evaluate(e.large, e.acts, dense_threshold=2.0), InvalidArgumentError, "dense_threshold must be a finite number in [0, 1]; got 2.0"),
    ("evaluate dense_threshold nan", lambda e: evaluate(e.large, e.acts, dense_threshold=NAN), InvalidArgumentError, "got nan"),
    ("push sae str", lambda e: push_to_hub("sae", "me/repo"), InvalidArgumentError, "got 'sae'"),  # pyright: ignore[reportArgumentType]
    ("push token int", lambda e: push_to_hub(e.small, "me/repo", token=5), InvalidArgumentError, "token must be a non-empty string; got a non-string"),  # pyright: ignore[reportArgumentType]
    ("push metrics list", lambda e: push_to_hub(e.small, "me/repo", metrics=[1]), InvalidArgumentError, "metrics must be a mapping"),  # pyright: ignore[reportArgumentType]
    ("push metrics str", lambda e: push_to_hub(e.small, "me/repo", metrics="mse"), InvalidArgumentError, "got 'mse'"),  # pyright: ignore[reportArgumentType]
    ("push private str", lambda e: push_to_hub(e.small, "me/repo", private="no"), InvalidArgumentError, "private must be True or False; got 'no'"),  # pyright: ignore[reportArgumentType]
    ("push overwrite int", lambda e: push_to_hub(e.small, "me/repo", overwrite=1), InvalidArgumentError, "overwrite must be True or False; got 1"),  # pyright: ignore[reportArgumentType]
    ("push path_in_repo int", lambda e: push_to_hub(e.small, "me/repo", path_in_repo=5), InvalidDestinationError, "got 5 (int)"),  # pyright: ignore[reportArgumentType]
    ("push message empty", lambda e: push_to_hub(e.small, "me/repo", commit_message=" "), InvalidArgumentError, "commit_message"),
]  # fmt: skip


def _cross_cases() -> list[tuple[str, Callable[[Env], object], type[Exception], str]]:
    cases: list[tuple[str, Callable[[Env], object], type[Exception], str]] = []
    for (value, fragment), (op, fn) in (
        (v, o) for v in BAD_THRESHOLDS for o in THRESHOLD_CALLS.items()
    ):
        cases.append(
            (f"threshold {value!r} {op}", lambda e, fn=fn, v=value: fn(e, v), InvalidArgumentError, fragment)
        )  # fmt: skip
    for (value, fragment), (op, fn) in ((v, o) for v in BAD_INDICES for o in INDEX_CALLS.items()):
        cases.append(
            (f"indices {value!r} {op}", lambda e, fn=fn, v=value: fn(e, v), InvalidIndicesError, fragment)
        )  # fmt: skip
    for (name, make, fragment), (op, fn) in (
        (a, o) for a in BAD_ACTIVATIONS for o in ACTIVATION_CALLS.items()
    ):
        cases.append(
            (f"activations {name} {op}", lambda e, fn=fn, m=make: fn(e, m()), InvalidActivationsError, fragment)
        )  # fmt: skip
    for value, fragment in BAD_DEVICES:
        cases.append((f"device {value!r}", lambda e, v=value: load_sae(e.paths["small"], device=v), DeviceError, fragment))  # fmt: skip
    for name, (_, fragment) in CORRUPT_CFGS.items():
        cases.append((f"load cfg {name}", lambda e, n=name: load_sae(e.paths[f"corrupt_{n}"]), CorruptSAEError, fragment))  # fmt: skip
    for name, (_, _, fragment) in CORRUPT_FILES.items():
        cases.append((f"load {name}", lambda e, n=name: load_sae(e.paths[f"corrupt_{n}"]), CorruptSAEError, fragment))  # fmt: skip
    for repo in BAD_REPO_IDS:
        cases.append((f"push repo {repo!r}", lambda e, r=repo: push_to_hub(e.small, r), InvalidDestinationError, repr(repo)[:20]))  # fmt: skip
    for path in BAD_PATHS_IN_REPO:
        cases.append((f"push path {path!r}", lambda e, p=path: push_to_hub(e.small, "me/repo", path_in_repo=p), InvalidDestinationError, repr(path)))  # fmt: skip
    for rev in BAD_REVISIONS:
        cases.append((f"push revision {rev!r}", lambda e, r=rev: push_to_hub(e.small, "me/repo", revision=r), InvalidDestinationError, repr(rev)))  # fmt: skip
    for source, fragment in BAD_SOURCES:
        cases.append((f"source {source!r}", lambda e, s=source: parse_source(s), SourceNotFoundError, fragment))  # fmt: skip
        cases.append((f"load source {source!r}", lambda e, s=source: load_sae(s), SourceNotFoundError, fragment))  # fmt: skip
    return cases


ALL_API = API_CASES + _cross_cases()


@pytest.mark.parametrize(
    ("call", "error", "fragment"), [c[1:] for c in ALL_API], ids=[c[0] for c in ALL_API]
)
def test_api_bad_input(env: Env, call: Callable[[Env], object], error: type[Exception], fragment: str) -> None:  # fmt: skip
    before = listing(env.root)
    with pytest.raises(error) as info:
        call(env)
    assert isinstance(info.value, StitchError)
    assert fragment in str(info.value), str(info.value)
    assert listing(env.root) == before, "a failed call left files behind"


# ---------------------------------------------------------------------------- CLI tables

PAIR = "{small} {large}"
CLI_CASES: list[tuple[str, type[Exception], str]] = [
    # indices (checked against the width before a range is expanded)
    (f"stitch {PAIR} --indices 0-200000000 --out {{out}}", InvalidIndicesError, "0-200000000 out of range for 16 latents"),
    (f"stitch {PAIR} --indices 0-20000000 --out {{out}}", InvalidIndicesError, "0-20000000"),
    (f"stitch {PAIR} --indices 1000000000000000000000000000000 --out {{out}}", InvalidIndicesError, "1000000000000000000000000000000 out of range"),
    (f"stitch {PAIR} --indices 99 --out {{out}}", InvalidIndicesError, "99 out of range for 16 latents (allowed: 0..15)"),
    (f"stitch {PAIR} --indices 16 --out {{out}}", InvalidIndicesError, "16 out of range"),
    (f"stitch {PAIR} --indices 0,0 --out {{out}}", InvalidIndicesError, "duplicate --indices: [0]"),
    (f"stitch {PAIR} --indices 0-15,3 --out {{out}}", InvalidIndicesError, "17 latents but there are only 16"),
    (f"stitch {PAIR} --indices=-1 --out {{out}}", InvalidIndicesError, "'-1'"),
    (f"stitch {PAIR} --indices 5-2 --out {{out}}", InvalidIndicesError, "'5-2': end before start"),
    (f"stitch {PAIR} --indices a --out {{out}}", InvalidIndicesError, "'a'"),
    (f"stitch {PAIR} --indices 1.5 --out {{out}}", InvalidIndicesError, "'1.5'"),
    (f"stitch {PAIR} --indices '' --out {{out}}", InvalidIndicesError, "no indices"),
    (f"stitch {PAIR} --indices , --out {{out}}", InvalidIndicesError, "no indices"),
    (f"stitch {PAIR} --indices 1-2-3 --out {{out}}", InvalidIndicesError, "'1-2-3'"),
    (f"stitch {PAIR} --indices 0x10 --out {{out}}", InvalidIndicesError, "'0x10'"),
    (f"stitch {PAIR} --indices \u0661 --out {{out}}", InvalidIndicesError, "'\u0661'"),
    (f"stitch {PAIR} --indices @{{idx_binary}} --out {{out}}", CLIError, "is not a text file"),
    (f"stitch {PAIR} --indices @{{idx_folder}} --out {{out}}", CLIError, "is a folder"),
    (f"stitch {PAIR} --indices @{{idx_missing}} --out {{out}}", CLIError, "does not exist"),
    (f"stitch {PAIR} --indices @{{idx_empty}} --out {{out}}", CLIError, "is empty"),
    (f"stitch {PAIR} --indices @{{idx_empty_json}} --out {{out}}", CLIError, "empty list"),
    (f"stitch {PAIR} --indices @{{idx_bad_json}} --out {{out}}", CLIError, "not valid JSON"),
    (f"stitch {PAIR} --indices @{{idx_floats_json}} --out {{out}}", CLIError, "list of integers"),
    (f"stitch {PAIR} --indices @{{idx_nested_json}} --out {{out}}", CLIError, "list of integers"),
    (f"stitch {PAIR} --indices @{{idx_object_json}} --out {{out}}", CLIError, "list of integers"),
    (f"stitch {PAIR} --indices @{{idx_words}} --out {{out}}", CLIError, "'one'"),
    (f"stitch {PAIR} --indices @{{idx_negative_json}} --out {{out}}", CLIError, "negative indices [-3]"),
    (f"stitch {PAIR} --indices @{{idx_out_of_range}} --out {{out}}", InvalidIndicesError, "99 out of range"),
    (f"stitch {PAIR} --indices @{{idx_dup}} --out {{out}}", InvalidIndicesError, "duplicate --indices: [1]"),
    (f"stitch {PAIR} --indices @{{idx_huge}} --out {{out}}", InvalidIndicesError, "1000000000000000000000000000000 out of range"),
    (f"stitch {PAIR} --indices @ --out {{out}}", CLIError, "is a folder"),
    (f"swap {PAIR} --families 2,2 --out {{out}}", CLIError, "[2] more than once"),
    (f"swap {PAIR} --families x --out {{out}}", InvalidIndicesError, "'x'"),
    (f"swap {PAIR} --families 0-100000000000 --out {{out}}", CLIError, "lists 100000000001 indices (at most 16777216)"),
    (f"stitch {PAIR} --indices 0-3,0-3,0-3,0-3,0-3 --out {{out}}", InvalidIndicesError, "20 latents but there are only 16"),
    (f"swap {PAIR} --families @{{idx_binary}} --out {{out}}", CLIError, "is not a text file"),
    (f"swap {PAIR} --families '' --out {{out}}", InvalidIndicesError, "no indices"),
    # output folders
    (f"stitch {PAIR} --out {{small}}", CLIError, "already exists; pass --overwrite"),
    (f"stitch {PAIR} --out {{out_no_parent}}", CLIError, "does not exist; create it first"),
    (f"stitch {PAIR} --out {{out_in_file}}", CLIError, "does not exist"),
    (f"stitch {PAIR} --out {{a_file}} --overwrite", CLIError, "is not a folder"),
    (f"compare {PAIR} --out {{a_file}}", CLIError, "exists and is not a folder"),
    (f"compare {PAIR} --out {{out_no_parent}}", CLIError, "create it first"),
    (f"stitch {PAIR} --out {{long_name}}", CLIError, "File name too long"),
    (f"compare {PAIR} --out {{long_name}}", CLIError, "File name too long"),
    (f"classify {PAIR} --out ''", CLIError, "is not a valid path"),
    # sources
    ("compare {missing} {large} --out {out}", SourceNotFoundError, "missing_sae"),
    ("compare hf://me {large} --out {out}", SourceNotFoundError, "hf://OWNER/REPO"),
    ("compare 'hf://me/re po' {large} --out {out}", SourceNotFoundError, "hf://OWNER/REPO"),
    ("compare hf://me/repo@ {large} --out {out}", SourceNotFoundError, "around '@'"),
    ("compare rel: {large} --out {out}", SourceNotFoundError, "empty release"),
    ("compare {no_cfg} {large} --out {out}", SourceNotFoundError, "has no cfg.json"),
    ("compare {small} {other} --out {out}", IncompatibleSAEsError, "d_in differs"),
    ("evaluate {a_file} --synthetic --out {out}", SourceNotFoundError, "a_file"),
    # assemble / refit / evaluate numbers
    ("assemble {small} {large} --activations {good.pt} --out {out}", CLIError, "needs a budget"),
    ("assemble {small} {large} --activations {good.pt} --width 0 --out {out}", InvalidArgumentError, "--width must be an integer 1 or more; got 0"),
    ("assemble {small} {large} --activations {good.pt} --width=-5 --out {out}", InvalidArgumentError, "got -5"),
    ("assemble {small} {large} --activations {good.pt} --l0 0 --out {out}", InvalidArgumentError, "--l0 must be a positive finite number; got 0.0"),
    ("assemble {small} {large} --activations {good.pt} --l0 nan --out {out}", InvalidArgumentError, "got nan"),
    ("assemble {small} {large} --activations {good.pt} --l0 inf --out {out}", InvalidArgumentError, "got inf"),
    ("assemble {small} {large} --activations {good.pt} --l0=-1 --out {out}", InvalidArgumentError, "got -1.0"),
    ("assemble {small} {large} --activations {good.pt} --width 4 --max-moves=-1 --out {out}", InvalidArgumentError, "--max-moves must be an integer 0 or more; got -1"),
    ("assemble {small} {large} --activations {good.pt} --width 4 --significance=-1 --out {out}", InvalidArgumentError, "--significance"),
    ("assemble {small} {large} --activations {good.pt} --width 4 --significance nan --out {out}", InvalidArgumentError, "got nan"),
    ("assemble {small} {large} --activations {good.pt} --width 4 --start 9 --out {out}", CLIError, "--start 9"),
    ("assemble {small} {large} --activations {good.pt} --width 4 --pool x --out {out}", InvalidIndicesError, "'x'"),
    ("assemble {small} {large} --activations {good.pt} --width 4 --pool '' --out {out}", InvalidIndicesError, "no indices"),
    ("refit {small} --activations {good.pt} --eval-fraction 0 --out {out}", InvalidArgumentError, "--eval-fraction must be a number strictly between 0 and 1; got 0"),
    ("refit {small} --activations {good.pt} --eval-fraction 1 --out {out}", InvalidArgumentError, "got 1"),
    ("refit {small} --activations {good.pt} --eval-fraction nan --out {out}", InvalidArgumentError, "got nan"),
    ("refit {small} --activations {good.pt} --eval-fraction=-0.5 --out {out}", InvalidArgumentError, "got -0.5"),
    ("refit {small} --activations {good.pt} --eval-fraction 2 --out {out}", InvalidArgumentError, "got 2"),
    ("refit {small} --activations {good.pt} --eval-fraction inf --out {out}", InvalidArgumentError, "got inf"),
    ("evaluate {small} --synthetic --n-tokens 0 --out {out}", InvalidArgumentError, "--n-tokens must be an integer between 1 and"),
    ("evaluate {small} --synthetic --n-tokens=-5 --out {out}", InvalidArgumentError, "got -5"),
    ("evaluate {small} --synthetic --n-tokens 99999999999 --out {out}", InvalidArgumentError, "got 99999999999"),
    ("evaluate {small} --synthetic --out {out}", CLIError, "--synthetic generates the demo family's activations (d_in 48)"),
    ("evaluate {small} --out {out}", CLIError, "evaluate needs activations"),
    # push: destinations (checked before the folder is read or the network touched)
    ("push {small} me/repo --path-in-repo ''", CLIError, "empty"),
    ("push {small} me/repo --path-in-repo /", CLIError, "empty"),
    ("push {small} 'me/repo{nl}'", InvalidDestinationError, "repo 'me/repo\\n' (str) must be OWNER/NAME"),
    ("push {small} 'abc{nl}'", InvalidDestinationError, "'abc\\n'"),
    ("push {small} me", InvalidDestinationError, "repo 'me' (str) must be OWNER/NAME"),
    ("push {small} me/repo/x", InvalidDestinationError, "'me/repo/x'"),
    ("push {small} me/..", InvalidDestinationError, "'me/..'"),
    ("push {small} 'm e/repo'", InvalidDestinationError, "'m e/repo'"),
    ("push {small} me/repo --path-in-repo 'abc{nl}'", InvalidDestinationError, "--path-in-repo 'abc\\n'"),
    ("push {small} me/repo --path-in-repo a/../b", InvalidDestinationError, "'a/../b'"),
    ("push {small} me/repo --path-in-repo 'a b'", InvalidDestinationError, "'a b'"),
    ("push {small} me/repo --revision 'main{nl}'", InvalidDestinationError, "--revision 'main\\n'"),
    ("push {small} me/repo --revision 'a b'", InvalidDestinationError, "'a b'"),
    ("push {small} me/repo --revision ''", InvalidDestinationError, "''"),
    ("push {no_cfg} me/repo", CLIError, "is not an SAE folder"),
    ("push {small} me/repo --metrics {idx_folder}", CLIError, "is a folder; expected a JSON file"),
    ("push {small} me/repo --metrics {idx_binary}", CLIError, "is not valid JSON"),
    ("push {small} me/repo --metrics {idx_missing}", CLIError, "does not exist"),
    ("push {small} me/repo --metrics {idx_empty_json}", CLIError, "must hold a JSON object"),
    ("push {corrupt_null_metadata} me/repo", CorruptSAEError, "metadata must be a JSON object"),
    ("demo --push 'me/repo{nl}'", InvalidDestinationError, "--push 'me/repo\\n'"),
    ("demo --overwrite", CLIError, "--push"),
    # frankenstein
    ("frankenstein {small} --out {out}", CLIError, "at least two SAEs, got 1"),
    ("frankenstein {small} {other} --out {out}", IncompatibleSAEsError, "d_in differs"),
    # study, names, effect-chosen indices (issue 13)
    ("study {small} --activations {good.pt} --out {out}", CLIError, "study needs two or more SAEs of one hook, got 1"),
    ("study {small} {large} --activations {good.pt} --only bogus --out {out}", CLIError, "unknown step(s) ['bogus']"),
    ("study {small} {large} --activations {good.pt} --skip curves,curves --out {out}", StudyError, "listed twice"),
    ("study {small} {large} --activations {good.pt} --eval-fraction 1.5 --out {out}", StudyError, "eval_fraction"),
    ("study {small} {large} --activations {good.pt} --width 0 --out {out}", StudyError, "width"),
    ("study {small} {large} --activations {good.pt} --config {idx_missing} --out {out}", StudyError, "does not exist"),
    ("study {small} {large} --activations {good.pt} --model x --out {out}", CLIError, "not both"),
    ("study {small} {other} --activations {good.pt} --out {out}", StudyError, "must have one d_in"),
    ("stitch {small} {large} --top-k-by-effect 0 --activations {good.pt} --out {out}", InvalidArgumentError, "--top-k-by-effect"),
    ("stitch {small} {large} --top-k-by-effect 3 --out {out}", CLIError, "needs --activations"),
    ("stitch {small} {large} --indices 1 --top-k-by-effect 3 --activations {good.pt} --out {out}", CLIError, "not both"),
    ("compare {small} {large} --name a --name b --name c --out {out}", CLIError, "3 --name given for 2 SAE(s)"),
    ("compare {small} {large} --name '' --name b --out {out}", InvalidNameError, "one non-empty line"),
    ("compare {small} {large} --name a --out {out}", CLIError, "1 --name given for 2 SAE(s)"),
    ("compare {small} {large} --name a --name a --out {out}", CLIError, "--name 'a' is given to more than one SAE"),
    ("study {small} {large} --out {out}", CLIError, "study needs activations"),
    # clean
    ("clean {out_no_parent}", CLIError, "does not exist"),
]  # fmt: skip

CLI_THRESHOLDS = ["1.5", "-1.01", "nan", "inf", "-inf", "1e309", "2"]
THRESHOLD_COMMANDS = [
    f"compare {PAIR} --out {{out}}",
    f"classify {PAIR} --out {{out}}",
    f"families {PAIR} --out {{out}}",
    f"stitch {PAIR} --out {{out}}",
    f"swap {PAIR} --out {{out}}",
    "frankenstein {small} {large} --out {out}",
    "assemble {small} {large} --activations {good.pt} --width 4 --out {out}",
]
CLI_DEVICES = ["banana", "cuda:99", "meta", "cpu:x", "'cpu '"] + (["cuda"] if NO_GPU else [])
DEVICE_COMMANDS = [
    f"compare {PAIR} --out {{out}}",
    f"classify {PAIR} --out {{out}}",
    f"stitch {PAIR} --out {{out}}",
    "evaluate {small} --synthetic --out {out}",
    "refit {small} --activations {good.pt} --out {out}",
]
BAD_ACT_FILES: list[tuple[str, str]] = [
    ("nan.pt", "non-finite"),
    ("inf.pt", "non-finite"),
    ("complex.pt", "complex64"),
    ("bool.pt", "torch.bool"),
    ("wrong_din.pt", "(64, 17)"),
    ("scalar.pt", "shape ()"),
    ("empty.pt", "are empty"),
    ("two_tensors.pt", "name the tensor 'activations'"),
    ("not_tensor.pt", "does not hold a tensor"),
    ("complex.npy", "complex64"),
    ("nan.npy", "non-finite"),
    ("inf.npy", "non-finite"),
    ("str.npy", "expected real numbers"),
    ("wrong_din.npy", "(64, 3)"),
    ("object.npy", "not a valid .npy"),
    ("garbage.pt", "not a PyTorch file"),
    ("garbage.npy", "not a valid .npy"),
    ("garbage.safetensors", "not a valid safetensors file"),
    ("truncated.pt", "corrupt or truncated PyTorch file"),
    ("acts.txt", "expected a .pt, .pth, .safetensors or .npy file"),
    ("acts.csv", "expected a .pt"),
    ("folder.pt", "is a folder"),
    ("missing.pt", "does not exist"),
]
ACT_COMMANDS = [
    "evaluate {small} --activations {act} --out {out}",
    f"classify {PAIR} --activations {{act}} --out {{out}}",
    f"stitch {PAIR} --activations {{act}} --out {{out}}",
    "refit {small} --activations {act} --out {out}",
]


def _cli_cases() -> list[tuple[str, type[Exception], str]]:
    cases = list(CLI_CASES)
    for command in THRESHOLD_COMMANDS:
        for value in CLI_THRESHOLDS:
            cases.append((f"{command} --threshold={value}", InvalidArgumentError, "--threshold must be a cosine between -1 and 1"))  # fmt: skip
    for command in DEVICE_COMMANDS:
        for device in CLI_DEVICES:
            cases.append((f"{command} --device {device}", DeviceError, "--device"))
    for command in ACT_COMMANDS:
        for name, fragment in BAD_ACT_FILES:
            cases.append((command.replace("{act}", "{" + name + "}"), InvalidActivationsError, fragment))  # fmt: skip
    for name, (_, fragment) in CORRUPT_CFGS.items():
        cases.append((f"compare {{corrupt_{name}}} {{large}} --out {{out}}", CorruptSAEError, fragment))  # fmt: skip
        cases.append((f"evaluate {{corrupt_{name}}} --synthetic --out {{out}}", CorruptSAEError, fragment))  # fmt: skip
    for name, (_, _, fragment) in CORRUPT_FILES.items():
        cases.append((f"compare {{corrupt_{name}}} {{large}} --out {{out}}", CorruptSAEError, fragment))  # fmt: skip
    return cases


ALL_CLI = _cli_cases()


def _argv(line: str, env: Env) -> list[str]:
    """The command line's words with every ``{name}`` replaced by ``env.paths[name]``."""
    return [
        re.sub(r"\{([\w.]+)\}", lambda m: env.paths[m.group(1)], token)
        for token in shlex.split(line)
    ]


@pytest.mark.parametrize(("line", "error", "fragment"), ALL_CLI, ids=[c[0] for c in ALL_CLI])
def test_cli_bad_input(
    env: Env,
    line: str,
    error: type[Exception],
    fragment: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[BaseException] = []
    original = cli.report_error

    def record(err: BaseException, **kwargs: Any) -> int:
        seen.append(err)
        return original(err, **kwargs)

    monkeypatch.setattr(cli, "report_error", record)
    monkeypatch.chdir(env.root)
    before = listing(env.root)
    code = cli.main(_argv(line, env))
    _, err = capsys.readouterr()
    assert code == 1, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sae-stitch: error: "), err
    assert "Traceback" not in err and "unexpected" not in err, err
    assert len(seen) == 1 and isinstance(seen[0], error), repr(seen)
    assert isinstance(seen[0], StitchError)
    assert cli.cli_wording(fragment) in lines[0], lines[0]
    assert listing(env.root) == before, "a failed command left files behind"


def test_catalogue_size() -> None:
    """The issue's goal: at least 300 bad inputs, API and CLI together."""
    assert len(ALL_API) + len(ALL_CLI) >= 300
    assert len({c[0] for c in ALL_API}) == len(ALL_API)
    assert len({c[0] for c in ALL_CLI}) == len(ALL_CLI)


def test_debug_shows_the_traceback(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["--debug", *_argv("compare {corrupt_null_metadata} {large} --out {out}", env)])
    _, err = capsys.readouterr()
    assert code == 1 and "Traceback" in err and "CorruptSAEError" in err
    assert not os.path.exists(env.paths["out"]) and math.isfinite(1.0)
