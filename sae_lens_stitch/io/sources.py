"""Parse SAE source strings without importing SAE-Lens, torch or huggingface_hub.

Three string forms (see ``docs/hub.md``):

* ``RELEASE:SAE_ID[@REVISION]`` -- an SAE-Lens release (``pretrained_saes.yaml``) and an SAE id,
  e.g. ``gpt2-small-res-jb-feature-splitting:blocks.8.hook_resid_pre_768``.
* ``hf://OWNER/REPO[/FOLDER...][@REVISION]`` -- a Hugging Face repo and the folder in it that
  holds ``cfg.json`` (the repo root when no folder is given).
* a local folder: an existing directory, or any string starting with ``/``, ``./``, ``../``,
  ``~`` or ``file://``.

A ``(release, sae_id)`` pair and a :class:`pathlib.Path` are accepted as well. Only this light
module is needed to validate a source (e.g. in a CLI); :func:`sae_lens_stitch.io.load.load_sae`
does the loading.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from sae_lens_stitch.errors import SourceNotFoundError

SourceKind = Literal["release", "hub", "local"]

HF_PREFIX = "hf://"
FILE_PREFIX = "file://"
_REPO_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_REVISION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/+=-]*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_LOCAL_PREFIXES = ("/", "./", "../", "~", ".\\", "..\\")

SOURCE_FORMS = (
    "RELEASE:SAE_ID[@REVISION] (an SAE-Lens release, e.g. "
    "gpt2-small-res-jb-feature-splitting:blocks.8.hook_resid_pre_768), "
    "hf://OWNER/REPO[/FOLDER][@REVISION] (a Hub repo and folder), "
    "or a local folder (./path, /abs/path, file://path)"
)


@dataclass(frozen=True)
class SAESource:
    """A parsed source. ``kind`` says which fields are set."""

    kind: SourceKind
    release: str | None = None
    """SAE-Lens release name (kind "release")."""
    sae_id: str | None = None
    """SAE id within the release (kind "release")."""
    repo_id: str | None = None
    """Hub repo id ``owner/name`` (kind "hub")."""
    folder: str | None = None
    """Folder inside the repo, "." for the root (kind "hub")."""
    revision: str | None = None
    """Branch, tag or commit sha asked for (kinds "release" and "hub"); None means main."""
    path: str | None = None
    """Local folder, user-expanded (kind "local")."""

    def __str__(self) -> str:
        rev = f"@{self.revision}" if self.revision else ""
        if self.kind == "release":
            return f"{self.release}:{self.sae_id}{rev}"
        if self.kind == "hub":
            folder = "" if self.folder in (None, ".") else f"/{self.folder}"
            return f"{HF_PREFIX}{self.repo_id}{folder}{rev}"
        return str(self.path)


def _bad(source: object, why: str) -> SourceNotFoundError:
    return SourceNotFoundError(
        f"cannot parse SAE source {source!r}: {why}. Accepted forms: {SOURCE_FORMS}"
    )


def _split_revision(text: str, source: object) -> tuple[str, str | None]:
    if "@" not in text:
        return text, None
    body, revision = text.rsplit("@", 1)
    if not revision or not body:
        raise _bad(source, "empty name or revision around '@'")
    if not _REVISION.fullmatch(revision) or ".." in revision:
        raise _bad(source, f"revision {revision!r} is not a branch, tag or commit sha")
    return body, revision


def _check_folder(folder: str, source: object) -> str:
    folder = folder.rstrip("/")
    if folder.startswith("/"):
        raise _bad(source, f"folder {folder!r} must be a relative path without '..' or '//'")
    if not folder:
        return "."
    parts = folder.split("/")
    if any(p in ("", "..") or _CONTROL.search(p) for p in parts):
        raise _bad(source, f"folder {folder!r} must be a relative path without '..' or '//'")
    return folder


def _one_revision(rev: str | None, revision: str | None, source: object) -> str | None:
    """The revision from the string (``rev``) or the argument; both given must agree."""
    if revision is not None and (
        not isinstance(revision, str) or not _REVISION.fullmatch(revision) or ".." in revision
    ):
        raise _bad(source, f"revision {revision!r} is not a branch, tag or commit sha")
    if rev is not None and revision is not None and rev != revision:
        raise _bad(
            source, f"revision given twice ({rev!r} in the string, {revision!r} as argument)"
        )
    return rev if rev is not None else revision


def _parse_hub(text: str, source: object, revision: str | None) -> SAESource:
    body, rev = _split_revision(text[len(HF_PREFIX) :], source)
    parts = body.split("/")
    if len(parts) < 2 or not all(_REPO_PART.fullmatch(p) for p in parts[:2]):
        raise _bad(source, "a Hub source needs hf://OWNER/REPO")
    chosen = _one_revision(rev, revision, source)
    return SAESource(
        kind="hub",
        repo_id="/".join(parts[:2]),
        folder=_check_folder("/".join(parts[2:]), source),
        revision=chosen,
    )


def _parse_release(text: str, source: object, revision: str | None) -> SAESource:
    release, rest = text.split(":", 1)
    sae_id, rev = _split_revision(rest, source)
    if not release.strip() or not sae_id.strip():
        raise _bad(source, "empty release or SAE id")
    return SAESource(
        kind="release",
        release=release.strip(),
        sae_id=sae_id.strip(),
        revision=_one_revision(rev, revision, source),
    )


def _local(path: str | os.PathLike[str]) -> SAESource:
    return SAESource(kind="local", path=str(Path(path).expanduser()))


def parse_source(
    source: str | os.PathLike[str] | tuple[str, str], *, revision: str | None = None
) -> SAESource:
    """Parse ``source`` (see the module docstring) into an :class:`SAESource`.

    Nothing is loaded or checked against SAE-Lens's release list or the Hub here; an
    unparsable string raises :class:`~sae_lens_stitch.errors.SourceNotFoundError` naming it
    and the accepted forms. ``revision`` applies to release and Hub sources."""
    if isinstance(source, tuple):
        if len(source) != 2 or not all(isinstance(s, str) and s.strip() for s in source):
            raise _bad(source, "a pair must be (release, sae_id), two non-empty strings")
        if any(_CONTROL.search(s) for s in source):
            raise _bad(
                source, "a release or SAE id cannot contain control characters (newlines, tabs)"
            )
        return SAESource(kind="release", release=source[0], sae_id=source[1], revision=revision)
    if isinstance(source, os.PathLike):
        return _local(source)
    if not isinstance(source, str) or not source.strip():
        raise _bad(source, "expected a non-empty string, a path or a (release, sae_id) pair")
    text = source.strip()
    if "\x00" in text:
        raise _bad(source, "it contains a NUL character")
    if text.startswith(HF_PREFIX):
        return _parse_hub(text, source, revision)
    if text.startswith(FILE_PREFIX):
        return _local(text[len(FILE_PREFIX) :])
    if text.startswith(_LOCAL_PREFIXES) or Path(text).expanduser().is_dir():
        return _local(text)
    if re.match(r"^[A-Za-z]:[\\/]", text):  # Windows drive path
        return _local(text)
    if ":" in text:
        if _CONTROL.search(text):
            raise _bad(
                source, "a release or SAE id cannot contain control characters (newlines, tabs)"
            )
        return _parse_release(text, source, revision)
    raise _bad(
        source,
        "no such local folder, and it is neither RELEASE:SAE_ID nor hf://OWNER/REPO[/FOLDER]",
    )
