"""stitch / remove / swap / frankenstein: exactness, invariants, provenance."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import EXACT_ARCHS, TRANSCODER_ARCHS, make_sae, make_transcoder, related_pair
from sae_lens import SAE

from sae_lens_stitch import (
    classify_features,
    feature_families,
    frankenstein,
    get_provenance,
    remove_features,
    stitch,
    swap,
)
from sae_lens_stitch.block_topk import BlockTopKSAE


def state_copy(sae: SAE[Any]) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in sae.state_dict().items()}


def assert_unchanged(sae: SAE[Any], before: dict[str, torch.Tensor]) -> None:
    after = sae.state_dict()
    assert after.keys() == before.keys()
    for k, v in before.items():
        assert torch.equal(after[k], v), k


def x_for(sae: SAE[Any], n: int = 256, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, sae.cfg.d_in, generator=gen) * 2


@pytest.mark.parametrize("arch", EXACT_ARCHS)
@pytest.mark.parametrize("base_a", [True, False])
@pytest.mark.parametrize("donor_a", [True, False])
def test_stitch_is_exact(arch: str, base_a: bool, donor_a: bool) -> None:
    base = make_sae(arch, 24, 16, seed=1, apply_b_dec_to_input=base_a)
    donor = make_sae(arch, 40, 16, seed=2, apply_b_dec_to_input=donor_a)
    assert not torch.allclose(base.b_dec, donor.b_dec)
    before_b, before_d = state_copy(base), state_copy(donor)
    idx = [31, 0, 17, 5, 39]
    out = stitch(base, donor, idx)
    assert type(out) is type(base) and out.cfg.d_sae == 24 + len(idx)
    x = x_for(base)
    acts = out.encode(x)
    base_acts, donor_acts = base.encode(x), donor.encode(x)
    assert (donor_acts[:, idx] > 0).float().mean() > 0.05  # the inserted latents do fire
    torch.testing.assert_close(acts[:, :24], base_acts, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(acts[:, 24:], donor_acts[:, idx], atol=1e-5, rtol=1e-5)
    expected = base.decode(base_acts) + donor_acts[:, idx] @ donor.W_dec[idx]
    torch.testing.assert_close(out(x), expected, atol=1e-5, rtol=1e-5)
    assert_unchanged(base, before_b)
    assert_unchanged(donor, before_d)


def test_stitch_hook_z() -> None:
    kw: dict[str, Any] = {"hook_name": "blocks.0.attn.hook_z", "reshape_activations": "hook_z"}
    base = make_sae("standard", 20, 12, seed=1, **kw)
    donor = make_sae("standard", 30, 12, seed=2, **kw)
    out = stitch(base, donor, [3, 4])
    x = torch.randn(10, 5, 3, 4)  # [batch, pos, n_heads, d_head]
    expected = base(x) + (donor.encode(x)[..., [3, 4]] @ donor.W_dec[[3, 4]]).reshape(10, 5, 3, 4)
    torch.testing.assert_close(out(x), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("arch", ["topk", "abstopk"])
def test_topk_stitch_semantics(arch: str) -> None:
    base = make_sae(arch, 24, 16, seed=1, k=4)
    donor = make_sae(arch, 48, 16, seed=2, k=6)
    idx = list(range(0, 48, 3))
    out = stitch(base, donor, idx)
    assert isinstance(out, BlockTopKSAE)
    assert out.cfg.group_k == [4, 6] and out.cfg.k == 10
    x = x_for(base, 512)
    acts = out.encode(x)
    # base latents: exact
    torch.testing.assert_close(acts[:, :24], base.encode(x), atol=1e-5, rtol=1e-5)
    # inserted latents: wherever the donor fires one, the stitched SAE fires it with the same value
    donor_acts = donor.encode(x)[:, idx]
    fired = donor_acts != 0
    assert fired.any()
    torch.testing.assert_close(acts[:, 24:][fired], donor_acts[fired], atol=1e-5, rtol=1e-5)
    # and never more than the group's k
    assert int((acts[:, 24:] != 0).sum(dim=1).max()) <= 6
    # stitching back onto block_topk keeps groups per source
    again = stitch(out, donor, [1, 2])
    assert again.cfg.group_k == [4, 6, 2]
    torch.testing.assert_close(again.encode(x)[:, :40], acts, atol=1e-5, rtol=1e-5)


def test_remove_features_is_exact() -> None:
    sae = make_sae("jumprelu", 30, 16, seed=4)
    before = state_copy(sae)
    drop = [0, 7, 29, 12]
    out = remove_features(sae, drop)
    keep = [i for i in range(30) if i not in drop]
    x = x_for(sae)
    torch.testing.assert_close(out.encode(x), sae.encode(x)[:, keep])
    prov = get_provenance(out)
    assert [o.index for o in prov.latents] == keep
    assert_unchanged(sae, before)


@pytest.mark.parametrize("arch", EXACT_ARCHS)
def test_swap_all_and_insert_novel_covers_large_exactly_once(arch: str) -> None:
    small, large = related_pair(arch, n_small=16, n_novel=8, children=2, d_in=32)
    with torch.no_grad():  # a small latent with no partner: its children point elsewhere
        large.W_dec[0:2] = torch.randn(2, 32)
    threshold = 0.7
    families = feature_families(small, large, threshold=threshold)
    cls = classify_features(small, large, threshold=threshold)
    swapped = swap(small, large, families)
    full = stitch(swapped, large, cls.novel_indices)
    prov = get_provenance(full)
    large_key = next(iter(get_provenance(large).sources))
    small_key = next(iter(get_provenance(small).sources))
    from_large = sorted(o.index for o in prov.latents if o.source == large_key)
    from_small = sorted(o.index for o in prov.latents if o.source == small_key)
    assert from_large == list(range(large.cfg.d_sae))
    family_small = {i for f in families for i in f.small_indices}
    unpartnered = [j for j in range(small.cfg.d_sae) if j not in family_small]
    assert from_small == unpartnered
    assert set(unpartnered) == set((cls.small_max_cosine < threshold).nonzero().flatten().tolist())
    assert 0 in unpartnered
    # latents are exact copies of their origin rows
    for pos, origin in enumerate(prov.latents):
        src = large if origin.source == large_key else small
        torch.testing.assert_close(full.W_dec[pos], src.W_dec[origin.index])


def test_frankenstein_provenance_maps_to_origins() -> None:
    saes = [make_sae("standard", n, 16, seed=n) for n in (8, 16, 32, 64)]
    # make some latents of each width reconstruct the previous width
    with torch.no_grad():
        for prev, nxt in itertools.pairwise(saes):
            nxt.W_dec[: prev.cfg.d_sae] = prev.W_dec + 0.01 * torch.randn_like(prev.W_dec)
    keys = [next(iter(get_provenance(s).sources)) for s in saes]
    out = frankenstein(saes, threshold=0.7)
    prov = get_provenance(out)
    assert set(prov.sources) <= set(keys)
    assert prov.operations[-1].operation == "frankenstein"
    assert [o.index for o in prov.latents[:8]] == list(range(8))
    for pos, origin in enumerate(prov.latents):
        src = saes[keys.index(origin.source)]
        torch.testing.assert_close(out.W_dec[pos], src.W_dec[origin.index])
    assert prov.operations[-1].details["inserted_per_width"] == [
        sum(o.source == k for o in prov.latents) for k in keys[1:]
    ]
    # no intermediate SAE appears as a source
    assert all(s.content_hash is None or s.d_sae in (8, 16, 32, 64) for s in prov.sources.values())


def test_default_stitch_inserts_novel_latents() -> None:
    small, large = related_pair("standard", n_small=12, n_novel=6, children=2)
    out = stitch(small, large)
    prov = get_provenance(out)
    novel = classify_features(small, large).novel_indices.tolist()
    assert [o.index for o in prov.latents[12:]] == novel
    assert prov.operations[-1].threshold == 0.7


LOAD_SCRIPT = """
import json, sys, torch
from sae_lens import SAE
sae = SAE.load_from_disk(sys.argv[1])
x = torch.load(sys.argv[2])
torch.save(sae(x), sys.argv[3])
assert "sae_lens_stitch" not in sys.modules, "plain SAE-Lens load must not import sae_lens_stitch"
print(json.dumps(sae.cfg.metadata.to_dict()["sae_lens_stitch"]))
"""


@pytest.mark.parametrize("arch", EXACT_ARCHS)
def test_saved_stitch_loads_in_plain_sae_lens(arch: str, tmp_path: Path) -> None:
    base = make_sae(arch, 16, 8, seed=1)
    donor = make_sae(arch, 32, 8, seed=2)
    out = stitch(base, donor, [2, 30, 9])
    out.save_model(tmp_path / "sae")
    x = x_for(base, 64)
    torch.save(x, tmp_path / "x.pt")
    res = subprocess.run(
        [
            sys.executable,
            "-c",
            LOAD_SCRIPT,
            str(tmp_path / "sae"),
            str(tmp_path / "x.pt"),
            str(tmp_path / "y.pt"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    torch.testing.assert_close(torch.load(tmp_path / "y.pt"), out(x), atol=0, rtol=0)
    reloaded = SAE.load_from_disk(tmp_path / "sae")
    assert get_provenance(reloaded) == get_provenance(out)
    stored = json.loads(res.stdout.strip().splitlines()[-1])
    assert sum(run[2] for run in stored["latent_runs"]) == 19


@pytest.mark.parametrize("arch", ["transcoder", "skip_transcoder", "jumprelu_transcoder"])
def test_transcoder_stitch_is_exact(arch: str) -> None:
    cls, _ = TRANSCODER_ARCHS[arch]
    base, donor = make_transcoder(arch, 16, 1), make_transcoder(arch, 24, 2)
    out = stitch(base, donor, [3, 20, 7])
    assert type(out) is cls
    x = x_for(base, 128)
    donor_acts = donor.encode(x)[:, [3, 20, 7]]
    torch.testing.assert_close(out.encode(x)[:, 16:], donor_acts, atol=1e-5, rtol=1e-5)
    expected = base(x) + donor_acts @ donor.W_dec[[3, 20, 7]]
    torch.testing.assert_close(out(x), expected, atol=1e-5, rtol=1e-5)


BLOCK_TOPK_LOAD = """
import sys
from sae_lens import SAE
import sae_lens_stitch  # sae_lens is already imported: this registers block_topk
sae = SAE.load_from_disk(sys.argv[1])
print(type(sae).__name__)
"""


def test_saved_block_topk_loads_after_importing_the_package(tmp_path: Path) -> None:
    out = stitch(make_sae("topk", 16, 8, seed=1), make_sae("topk", 32, 8, seed=2), [1, 2])
    out.save_model(tmp_path / "sae")
    res = subprocess.run(
        [sys.executable, "-c", BLOCK_TOPK_LOAD, str(tmp_path / "sae")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "BlockTopKSAE"


@pytest.fixture
def compat_lookups(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The config fields ``check_compatible`` looks up from now on (two per compared field)."""
    import sae_lens_stitch.checks as checks

    calls: list[str] = []
    real = checks._field

    def counting(sae: Any, path: str) -> Any:
        calls.append(path)
        return real(sae, path)

    monkeypatch.setattr(checks, "_field", counting)
    return calls


def test_stitch_and_swap_check_the_pair_once(compat_lookups: list[str]) -> None:
    import sae_lens_stitch.checks as checks

    calls = compat_lookups
    small, large = related_pair()
    one_check = 2 * len(checks._COMPARED_FIELDS)  # two lookups per compared field
    stitch(small, large)  # classify + join inside: no second check of the pair
    assert len(calls) == one_check
    calls.clear()
    swap(small, large)  # families + join inside
    assert len(calls) == one_check
    # outside an operation every call checks again
    calls.clear()
    checks.check_compatible(small, large)
    assert len(calls) == one_check


def test_frankenstein_checks_each_pair_once(compat_lookups: list[str]) -> None:
    import sae_lens_stitch.checks as checks

    calls = compat_lookups
    small, large = related_pair()
    bigger = make_sae("standard", 64, small.cfg.d_in, seed=9)
    frankenstein([small, large, bigger])
    one_check = 2 * len(checks._COMPARED_FIELDS)
    # up front: (small, large) and (small, bigger); inside: only (small+novel of large, bigger)
    assert len(calls) == 3 * one_check
