"""Small helpers shared by loading and publishing: offline mode, the commit sha of a cached
download, and turning huggingface_hub / network exceptions into this package's typed errors.

Messages never include a token."""

from __future__ import annotations

import importlib
import os
import socket
import time
from pathlib import Path
from urllib.parse import urlsplit

from huggingface_hub import constants
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from sae_lens_stitch.errors import (
    HubError,
    MissingTokenError,
    OfflineError,
    SourceNotFoundError,
    StitchError,
)

OFFLINE_HINT = "unset HF_HUB_OFFLINE (and make sure the Hub is reachable)"


def _transport_errors() -> tuple[type[BaseException], ...]:
    found: list[type[BaseException]] = [ConnectionError, TimeoutError]
    for module, name in (("httpx2", "TransportError"), ("httpx", "TransportError")):
        try:
            found.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):
            continue
    return tuple(found)


TRANSPORT_ERRORS = _transport_errors()
"""Exceptions that mean the Hub could not be reached (whichever HTTP client is in use)."""

HUB_ERRORS: tuple[type[BaseException], ...] = (
    HfHubHTTPError,
    EntryNotFoundError,
    OfflineModeIsEnabled,
    *TRANSPORT_ERRORS,
)
"""Exceptions from huggingface_hub or the network that :func:`translate` handles."""


def is_offline() -> bool:
    """Whether huggingface_hub runs in offline mode (HF_HUB_OFFLINE=1 when it was imported)."""
    return bool(constants.is_offline_mode())


_PROXY_VARS = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "https_proxy", "http_proxy", "all_proxy")
_REACHABLE: dict[str, tuple[float, bool]] = {}


def endpoint_reachable(endpoint: str | None = None, *, timeout: float = 1.5) -> bool:
    """Whether a TCP connection to the Hub endpoint opens within ``timeout`` seconds (cached for
    30 s). Lets a load fall back to the local cache at once instead of after the client's ~25 s
    of retries. Assumed True behind a proxy, where a direct connection says nothing."""
    url = endpoint or constants.ENDPOINT
    if any(os.environ.get(var) for var in _PROXY_VARS):
        return True
    now = time.monotonic()
    cached = _REACHABLE.get(url)
    if cached is not None and now - cached[0] < 30.0:
        return cached[1]
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname or "", port), timeout=timeout):
            ok = True
    except OSError:
        ok = False
    _REACHABLE[url] = (now, ok)
    return ok


def commit_from_cached_path(path: str | Path) -> str | None:
    """The commit sha in a Hub-cache path ``.../snapshots/<sha>/...``, or None."""
    parts = Path(path).parts
    for i, part in enumerate(parts[:-1]):
        if part == "snapshots":
            return parts[i + 1]
    return None


def cached_ref(repo_id: str, ref: str = "main", cache_dir: str | Path | None = None) -> str | None:
    """The commit sha that the local Hub cache has for ``ref`` of a model repo, if any."""
    root = Path(cache_dir or constants.HF_HUB_CACHE)
    ref_file = root / f"models--{repo_id.replace('/', '--')}" / "refs" / ref
    try:
        return ref_file.read_text().strip() or None
    except OSError:
        return None


def translate(err: BaseException, *, doing: str, target: str) -> StitchError:
    """A typed error for ``err``, raised while ``doing`` something to ``target``."""
    if isinstance(err, OfflineModeIsEnabled):
        return OfflineError(f"cannot {doing} {target}: offline mode is on; {OFFLINE_HINT}")
    if isinstance(err, LocalEntryNotFoundError):
        if is_offline():
            return OfflineError(
                f"cannot {doing} {target}: HF_HUB_OFFLINE is set and it is not in the local Hub "
                f"cache ({constants.HF_HUB_CACHE}); download it once online or {OFFLINE_HINT}"
            )
        return OfflineError(
            f"cannot {doing} {target}: the Hub could not be reached and it is not in the local "
            "cache; check the network / HF_ENDPOINT, or set HF_HUB_OFFLINE=1 after downloading it"
        )
    if isinstance(err, GatedRepoError):
        return MissingTokenError(
            f"cannot {doing} {target}: the repo is gated; accept its terms on the Hub and pass a "
            "token (token=... or HF_TOKEN / `hf auth login`)"
        )
    if isinstance(err, RepositoryNotFoundError):
        return SourceNotFoundError(
            f"cannot {doing} {target}: the repo does not exist or is private; check the repo id, "
            "or pass a token with access (token=... or HF_TOKEN)"
        )
    if isinstance(err, RevisionNotFoundError):
        return SourceNotFoundError(
            f"cannot {doing} {target}: no such revision (branch, tag or commit)"
        )
    if isinstance(err, EntryNotFoundError):
        return SourceNotFoundError(f"cannot {doing} {target}: no such file in the repo ({err})")
    if isinstance(err, HfHubHTTPError):
        status = err.response.status_code if err.response is not None else None
        if status == 401:
            return MissingTokenError(
                f"cannot {doing} {target}: the Hub rejected the token (401); pass a valid token "
                "(token=... or HF_TOKEN / `hf auth login`)"
            )
        if status == 403:
            return MissingTokenError(
                f"cannot {doing} {target}: the token has no write access (403); use a token with "
                "write permission on that namespace"
            )
        return HubError(f"cannot {doing} {target}: the Hub answered {status}: {_first_line(err)}")
    if isinstance(err, TRANSPORT_ERRORS):
        return OfflineError(
            f"cannot {doing} {target}: the Hub is unreachable ({type(err).__name__}); check the "
            "network and HF_ENDPOINT"
        )
    return HubError(f"cannot {doing} {target}: {type(err).__name__}: {_first_line(err)}")


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
