"""The recipe that trains the demo family (``sae-stitch demo --retrain``).

Standard ReLU/L1 SAEs of several widths, trained on the same synthetic activations
(:mod:`sae_lens_stitch.demo.synthetic`), the way the reference GPT-2 feature-splitting family
was trained: unit-norm decoder rows, an L1 penalty on the latent activations, Adam. Each SAE is
saved with SAE-Lens's own ``save_model`` so that plain ``SAE.load_from_disk`` loads it.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict
from sae_lens.saes import StandardSAE, StandardSAEConfig

from sae_lens_stitch.demo.data import FAMILY_DIR, FAMILY_FILE
from sae_lens_stitch.demo.synthetic import HierarchicalFeatures, make_hierarchical_features
from sae_lens_stitch.progress import track

HOOK_NAME = "blocks.0.hook_resid_pre"
MODEL_NAME = "synthetic-hierarchy"


class TrainingRecipe(BaseModel):
    """Every setting of the demo family's training (stored in family.json)."""

    model_config = ConfigDict(extra="forbid")

    d_in: int = 48
    n_parents: int = 8
    children_per_parent: int = 3
    n_singles: int = 96
    child_magnitude: float = 0.6
    parent_prob: tuple[float, float] = (0.25, 0.12)
    single_prob: tuple[float, float] = (0.10, 0.004)
    widths: list[int] = [16, 32, 64, 128]
    l1_coefficient: float = 0.4
    steps: int = 2000
    batch_size: int = 2048
    n_train: int = 262_144
    lr: float = 3e-3
    data_seed: int = 0
    ground_truth_seed: int = 0
    init_seed: int = 1


class FamilyEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    width: int
    folder: str
    mse: float
    fvu: float
    l0: float
    dead: int


class FamilyManifest(BaseModel):
    """family.json: the recipe and one entry per trained width (smallest first)."""

    model_config = ConfigDict(extra="forbid")

    recipe: TrainingRecipe
    hook_name: str = HOOK_NAME
    model_name: str = MODEL_NAME
    saes: list[FamilyEntry]


def ground_truth_for(recipe: TrainingRecipe) -> HierarchicalFeatures:
    return make_hierarchical_features(
        d_in=recipe.d_in,
        n_parents=recipe.n_parents,
        children_per_parent=recipe.children_per_parent,
        n_singles=recipe.n_singles,
        child_magnitude=recipe.child_magnitude,
        parent_prob=recipe.parent_prob,
        single_prob=recipe.single_prob,
        seed=recipe.ground_truth_seed,
    )


def _new_sae(d_in: int, d_sae: int, mean_D: torch.Tensor, seed: int) -> StandardSAE:
    cfg = StandardSAEConfig(d_in=d_in, d_sae=d_sae, apply_b_dec_to_input=True, dtype="float32")
    cfg.metadata.hook_name = HOOK_NAME
    cfg.metadata.model_name = MODEL_NAME
    cfg.metadata.context_size = 1
    sae = StandardSAE(cfg)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        w_LD = torch.randn(d_sae, d_in, generator=gen)
        w_LD = w_LD / w_LD.norm(dim=-1, keepdim=True)
        sae.W_dec.copy_(w_LD)
        sae.W_enc.copy_(w_LD.T)
        sae.b_enc.zero_()
        sae.b_dec.copy_(mean_D)
    return sae


def train_sae(
    truth: HierarchicalFeatures,
    width: int,
    recipe: TrainingRecipe,
    *,
    show_progress: bool | None = None,
) -> StandardSAE:
    """One standard SAE of ``width`` latents trained on the synthetic activations."""
    train_ND = truth.sample(recipe.n_train, seed=recipe.data_seed)
    order_gen = torch.Generator().manual_seed(recipe.data_seed + width)
    sae = _new_sae(recipe.d_in, width, train_ND.mean(0), recipe.init_seed + width)
    opt = torch.optim.Adam(sae.parameters(), lr=recipe.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: min(1.0, 4 * (1 - step / recipe.steps))
    )
    n_batches = recipe.n_train // recipe.batch_size
    order = torch.randperm(recipe.n_train, generator=order_gen)
    for step in track(
        range(recipe.steps), total=recipe.steps, description=f"train {width}", show=show_progress
    ):
        if step % n_batches == 0 and step:
            order = torch.randperm(recipe.n_train, generator=order_gen)
        batch = order[
            (step % n_batches) * recipe.batch_size : (step % n_batches + 1) * recipe.batch_size
        ]
        x_ND = train_ND[batch]
        acts_NL = sae.encode(x_ND)
        recon_ND = sae.decode(acts_NL)
        mse = (recon_ND - x_ND).pow(2).sum(-1).mean()
        loss = mse + recipe.l1_coefficient * acts_NL.sum(-1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            sae.W_dec.div_(sae.W_dec.norm(dim=-1, keepdim=True).clamp(min=1e-8))
    sae.eval()
    for p in sae.parameters():
        p.requires_grad_(False)
    return sae


def quick_metrics(sae: StandardSAE, acts_ND: torch.Tensor) -> dict[str, Any]:
    """MSE (summed over dimensions, mean over tokens), FVU, L0 and dead latents."""
    from sae_lens_stitch.evaluation.metrics import evaluate

    m = evaluate(sae, acts_ND, show_progress=False)
    return {"mse": m.mse.value, "fvu": m.fvu.value, "l0": m.l0.value, "dead": int(m.n_dead.value)}


def train_family(
    out_dir: str | Path = FAMILY_DIR,
    recipe: TrainingRecipe | None = None,
    *,
    widths: Sequence[int] | None = None,
    show_progress: bool | None = None,
) -> FamilyManifest:
    """Train the demo family and write it to ``out_dir`` (replaced atomically): one SAE-Lens
    folder per width (``width_<n>/``), ``ground_truth.safetensors`` and ``family.json``."""
    recipe = recipe or TrainingRecipe()
    if widths is not None:
        recipe = recipe.model_copy(update={"widths": sorted(widths)})
    truth = ground_truth_for(recipe)
    eval_ND = truth.sample(16384, seed=recipe.data_seed + 20_000)
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".family-", dir=out.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the family is ordinary package data
    entries = []
    for width in recipe.widths:
        sae = train_sae(truth, width, recipe, show_progress=show_progress)
        folder = f"width_{width}"
        sae.save_model(tmp / folder)
        entries.append(FamilyEntry(width=width, folder=folder, **quick_metrics(sae, eval_ND)))
    truth.save(tmp)
    manifest = FamilyManifest(recipe=recipe, saes=entries)
    (tmp / FAMILY_FILE).write_text(json.dumps(manifest.model_dump(mode="json"), indent=2) + "\n")
    if out.exists():
        old = out.with_name(out.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old)
    else:
        tmp.rename(out)
    return manifest
