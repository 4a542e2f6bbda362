"""Step 5b: publish. Push an SAE to a Hugging Face repo so that plain SAE-Lens loads it with
``SAE.from_pretrained(repo_id, path_in_repo)``, with a model card that lists every SAE in the
repo and where its latents came from.

Before anything is uploaded the SAE is saved to a temporary folder, reloaded with SAE-Lens's
``SAE.load_from_disk`` and compared with the original on random inputs; a mismatch raises
:class:`~sae_lens_stitch.errors.RoundTripMismatchError`. The files and the updated README.md go
up in one commit whose parent is the revision's head when the card was read, so a concurrent
push cannot silently clobber the card. The token is never printed, logged or put in an error.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import (
    CommitOperationAdd,
    CommitOperationDelete,
    HfApi,
    get_token,
    hf_hub_download,
)
from huggingface_hub.errors import EntryNotFoundError, RevisionNotFoundError
from pydantic import BaseModel, ConfigDict
from sae_lens import SAE

from sae_lens_stitch import block_topk as _block_topk  # noqa: F401  (registers block_topk)
from sae_lens_stitch.errors import (
    HubError,
    InvalidArgumentError,
    InvalidDestinationError,
    MissingTokenError,
    OfflineError,
    PathExistsError,
    RoundTripMismatchError,
    SourceNotFoundError,
)
from sae_lens_stitch.io import _hub
from sae_lens_stitch.io.model_card import MetricsLike, card_entry, update_card
from sae_lens_stitch.io.save import write_sae_files
from sae_lens_stitch.io.sparsity import get_log_sparsity
from sae_lens_stitch.provenance import get_provenance
from sae_lens_stitch.validation import (
    check_path_in_repo,
    check_repo_id,
    check_revision,
    check_sae,
    show,
)

README = "README.md"
_HOOK_Z_STATE = ("reshape_fn_in", "reshape_fn_out", "d_head", "hook_z_reshaping_mode")
ROUND_TRIP_TOKENS = 256
"""Random inputs compared before upload."""


class PushResult(BaseModel):
    """What :func:`push_to_hub` wrote."""

    model_config = ConfigDict(extra="forbid")

    repo_id: str
    path_in_repo: str
    revision: str
    """Branch pushed to (the PR's target when ``pr_url`` is set)."""
    commit_sha: str
    commit_url: str
    pr_url: str | None = None
    files: list[str]
    """Paths in the repo written by the commit (the SAE's files and README.md)."""
    deleted: list[str] = []
    """Stale paths removed from the SAE's folder (only with overwrite=True)."""
    round_trip_max_abs_diff: float
    """Largest |difference| between the SAE and its reload by plain SAE-Lens (lower is better)."""

    def load_snippet(self) -> str:
        """Python that loads the pushed SAE with plain SAE-Lens."""
        return f'from sae_lens import SAE\nsae = SAE.from_pretrained("{self.repo_id}", "{self.path_in_repo}")'


def default_path_in_repo(sae: SAE[Any]) -> str:
    """``<hook_name>_<d_sae>``, with ``_stitched`` when provenance lists operations."""
    hook = getattr(sae.cfg.metadata, "hook_name", None) or "sae"
    suffix = "_stitched" if get_provenance(sae).operations else ""
    name = f"{hook}{suffix}_{sae.cfg.d_sae}"
    return re.sub(r"[^A-Za-z0-9._-]", "-", name)


def _check_destination(repo_id: str, path_in_repo: str) -> str:
    check_repo_id(repo_id)
    return check_path_in_repo(path_in_repo)


def _reload(folder: Path, device: str) -> SAE[Any]:
    """Plain SAE-Lens's reload of a saved folder."""
    return SAE.load_from_disk(folder, device=device)


@torch.no_grad()
def check_round_trip(sae: SAE[Any], folder: Path, *, n_tokens: int = ROUND_TRIP_TOKENS) -> float:
    """Reload ``folder`` with SAE-Lens and compare it with ``sae`` on random inputs: encodings,
    reconstructions, provenance and sparsity. Returns the largest absolute difference; raises
    :class:`RoundTripMismatchError` when it is off."""
    device = str(sae.W_dec.device)
    reloaded = _reload(folder, device)
    where = f"the SAE saved in {folder}"
    if type(reloaded) is not type(sae) or reloaded.cfg.d_sae != sae.cfg.d_sae:
        raise RoundTripMismatchError(
            f"{where} reloads as {type(reloaded).__name__} with d_sae={reloaded.cfg.d_sae}, "
            f"not {type(sae).__name__} with d_sae={sae.cfg.d_sae}"
        )
    gen = torch.Generator().manual_seed(0)
    x_ND = torch.randn(n_tokens, sae.cfg.d_in, generator=gen).to(device, sae.W_dec.dtype)
    x_ND = x_ND * sae.W_dec.detach().norm(dim=-1).mean().clamp_min(1e-6)
    if sae.b_dec.shape[-1] == sae.cfg.d_in:  # centre on b_dec (a transcoder's b_dec is d_out)
        x_ND = x_ND + sae.b_dec.detach()
    was_training = sae.training
    # hook_z SAEs reshape (..., heads, d_head) inputs and remember d_head: compare on flat
    # inputs with reshaping off, and put the original's reshaping state back afterwards.
    z_mode = bool(getattr(sae, "hook_z_reshaping_mode", False))
    saved = {k: sae.__dict__[k] for k in _HOOK_Z_STATE if k in sae.__dict__}
    sae.eval()
    try:
        for model in (sae, reloaded):
            if getattr(model, "hook_z_reshaping_mode", False):
                model.turn_off_forward_pass_hook_z_reshaping()
        pairs = {
            "encode": (sae.encode(x_ND), reloaded.encode(x_ND)),
            "forward": (sae(x_ND), reloaded(x_ND)),
        }
    finally:
        sae.train(was_training)
        for key, value in saved.items():
            setattr(sae, key, value)
        sae.hook_z_reshaping_mode = z_mode
    worst = 0.0
    for name, (a, b) in pairs.items():
        if a.shape != b.shape:
            raise RoundTripMismatchError(
                f"{where}: {name} shape {tuple(b.shape)} != {tuple(a.shape)}"
            )
        diff = float((a.float() - b.float()).abs().max()) if a.numel() else 0.0
        scale = float(a.float().abs().max()) if a.numel() else 0.0
        if not diff <= 1e-5 * (1.0 + scale):  # also catches NaN
            raise RoundTripMismatchError(
                f"{where}: {name} differs from the original by up to {diff:.3g} after reloading "
                "with plain SAE-Lens; refusing to upload"
            )
        worst = max(worst, diff)
    if get_provenance(reloaded) != get_provenance(sae):
        raise RoundTripMismatchError(f"{where}: the provenance record did not survive reloading")
    return worst


def _resolve_token(token: str | None) -> str:
    found = token or get_token()
    if not found:
        raise MissingTokenError(
            "pushing needs a Hugging Face token with write access: pass token=..., set HF_TOKEN, "
            "or run `hf auth login`"
        )
    return found


def _existing_files(api: HfApi, repo_id: str, folder: str, revision: str) -> list[str]:
    infos = api.get_paths_info(repo_id, [folder], revision=revision)
    if not infos:
        return []
    if not any(getattr(info, "tree_id", None) is not None for info in infos):
        return [folder]  # a file where the folder should be
    return sorted(
        entry.path
        for entry in api.list_repo_tree(
            repo_id, path_in_repo=folder, revision=revision, recursive=True
        )
        if getattr(entry, "blob_id", None) is not None
    )


def _read_card(api: HfApi, repo_id: str, revision: str, token: str, workdir: Path) -> str | None:
    try:
        path = hf_hub_download(
            repo_id,
            README,
            revision=revision,
            token=token,
            endpoint=api.endpoint,
            cache_dir=workdir / "card-cache",
        )
    except EntryNotFoundError:
        return None
    return Path(path).read_text(encoding="utf-8")


def push_to_hub(
    sae: SAE[Any],
    repo_id: str,
    *,
    path_in_repo: str | None = None,
    revision: str = "main",
    private: bool = False,
    commit_message: str | None = None,
    token: str | None = None,
    overwrite: bool = False,
    create_pr: bool = False,
    metrics: MetricsLike | None = None,
    endpoint: str | None = None,
) -> PushResult:
    """Upload ``sae`` to ``repo_id`` under ``path_in_repo`` and list it in the repo's card.

    The repo is created (``private``) if it does not exist. ``path_in_repo`` defaults to
    :func:`default_path_in_repo`. An existing folder there raises :class:`PathExistsError`
    unless ``overwrite`` (then stale files in it are deleted in the same commit). ``metrics``
    (a mapping or a pydantic model, e.g. an evaluation result) go into the card. ``endpoint``
    overrides HF_ENDPOINT.

    Raises :class:`MissingTokenError` (no token, or one without write access),
    :class:`OfflineError` (HF_HUB_OFFLINE set or the Hub unreachable),
    :class:`SourceNotFoundError` (no such branch), :class:`RoundTripMismatchError` (the saved SAE
    does not reload identically) and :class:`HubError` (anything else the Hub refuses)."""
    check_sae(sae)
    check_revision(revision)
    for name, value in (
        ("commit_message", commit_message),
        ("token", token),
        ("endpoint", endpoint),
    ):
        if value is not None and (not isinstance(value, str) or not value.strip()):
            shown = "a non-string" if name == "token" else show(value)  # never show a token
            raise InvalidArgumentError(f"{name} must be a non-empty string; got {shown}")
    if metrics is not None and not isinstance(metrics, (Mapping, BaseModel)):
        raise InvalidArgumentError(
            f"metrics must be a mapping or a pydantic model (e.g. evaluate's result); got {show(metrics)}"
        )
    for name, flag in (("private", private), ("overwrite", overwrite), ("create_pr", create_pr)):
        if not isinstance(flag, bool):
            raise InvalidArgumentError(f"{name} must be True or False; got {show(flag)}")
    if path_in_repo is not None and not isinstance(path_in_repo, str):
        raise InvalidDestinationError(f"path_in_repo must be a string; got {show(path_in_repo)}")
    folder = _check_destination(
        repo_id, default_path_in_repo(sae) if path_in_repo is None else path_in_repo
    )
    if _hub.is_offline():
        raise OfflineError(f"cannot push to {repo_id}: offline mode is on; {_hub.OFFLINE_HINT}")
    secret = _resolve_token(token)
    api = HfApi(endpoint=endpoint, token=secret)
    target = f"{repo_id}/{folder}@{revision}"

    with tempfile.TemporaryDirectory(prefix="sae-stitch-push-") as tmp:
        workdir = Path(tmp)
        staged = workdir / "sae"
        staged.mkdir()
        names = write_sae_files(sae, staged)
        max_diff = check_round_trip(sae, staged)
        if get_log_sparsity(sae) is not None and "sparsity.safetensors" not in names:
            raise RoundTripMismatchError("sparsity was known but not written")
        try:
            api.create_repo(repo_id, private=private, exist_ok=True)
            head = api.repo_info(repo_id, revision=revision).sha
            existing = _existing_files(api, repo_id, folder, revision)
            if existing and not overwrite:
                raise PathExistsError(
                    f"{repo_id} already has {folder!r} at {revision} ({len(existing)} file(s), e.g. "
                    f"{existing[0]}); pass overwrite=True to replace it or choose another path_in_repo"
                )
            card_text = update_card(
                _read_card(api, repo_id, revision, secret, workdir),
                repo_id,
                card_entry(sae, folder, metrics=metrics),
            )
            written = [f"{folder}/{name}" for name in names]
            stale = [path for path in existing if path not in written]
            operations: list[CommitOperationAdd | CommitOperationDelete] = [
                CommitOperationAdd(
                    path_in_repo=f"{folder}/{name}", path_or_fileobj=str(staged / name)
                )
                for name in names
            ]
            card_file = workdir / README
            card_file.write_text(card_text, encoding="utf-8")
            operations.append(
                CommitOperationAdd(path_in_repo=README, path_or_fileobj=str(card_file))
            )
            operations += [CommitOperationDelete(path_in_repo=path) for path in stale]
            info = api.create_commit(
                repo_id,
                operations,
                commit_message=commit_message
                or f"Add SAE {folder} ({sae.cfg.d_sae} latents) with sae-lens-stitch",
                revision=revision,
                create_pr=create_pr,
                parent_commit=head,
            )
        except RevisionNotFoundError as err:
            raise SourceNotFoundError(
                f"cannot push to {target}: branch {revision!r} does not exist; create it first "
                f"(HfApi().create_branch({repo_id!r}, branch={revision!r})) or push to main"
            ) from err
        except _hub.HUB_ERRORS as err:
            raise _hub.translate(err, doing="push to", target=target) from err
        except ValueError as err:
            if isinstance(err, (PathExistsError, SourceNotFoundError, InvalidDestinationError)):
                raise
            raise HubError(f"cannot push to {target}: {err}") from err

    return PushResult(
        repo_id=repo_id,
        path_in_repo=folder,
        revision=revision,
        commit_sha=info.oid,
        commit_url=str(info.commit_url),
        pr_url=info.pr_url,
        files=[*written, README],
        deleted=stale,
        round_trip_max_abs_diff=max_diff,
    )
