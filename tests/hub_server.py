"""A loopback stand-in for the Hugging Face Hub, for tests of the real huggingface_hub client.

It binds 127.0.0.1 on a free port and keeps model repos in memory: commits with their full file
trees, branches, LFS objects. It speaks the routes that huggingface_hub 2.4.0 uses to create a
repo, read model info (with card data), list trees and paths, validate README YAML, preupload,
upload LFS objects (basic transfer), commit (ndjson: regular, LFS, deletions, create_pr) and
resolve/download files (HEAD and GET). Uploads must go through LFS, not Xet: set
HF_HUB_DISABLE_XET=1 (or patch ``huggingface_hub.constants.HF_HUB_DISABLE_XET``).

Start it with ``with HubServer(token="...") as hub: ...`` (or the ``hub_server`` fixture in
conftest); it also shuts itself down after ``max_lifetime_s``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import yaml

LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".npz", ".pkl")
_REPO = r"(?P<repo>[^/]+/[^/]+)"


@dataclass
class Commit:
    sha: str
    parent: str | None
    message: str
    files: dict[str, bytes]
    lfs: set[str] = field(default_factory=set)


@dataclass
class Repo:
    repo_id: str
    private: bool
    refs: dict[str, str] = field(default_factory=dict)
    commits: dict[str, Commit] = field(default_factory=dict)
    n_prs: int = 0


def git_blob_sha(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def front_matter(text: str) -> dict[str, Any] | None:
    """The YAML front matter of a README, or None."""
    match = re.match(r"^---\s*\n(.*?)\n---\s*(\n|$)", text, re.DOTALL)
    if not match:
        return None
    data = yaml.safe_load(match.group(1))
    return data if isinstance(data, dict) else None


class HubState:
    """All repos and LFS objects; every method runs under one lock."""

    def __init__(self, token: str | None):
        self.token = token
        self.repos: dict[str, Repo] = {}
        self.lfs_objects: dict[str, bytes] = {}
        self.lock = threading.RLock()
        self.requests: list[tuple[str, str]] = []

    def make_commit(
        self, repo: Repo, parent: str | None, message: str, files: dict[str, bytes], lfs: set[str]
    ) -> Commit:
        h = hashlib.sha1((parent or "").encode() + message.encode())
        for path in sorted(files):
            h.update(path.encode() + b"\0" + git_blob_sha(files[path]).encode())
        h.update(str(len(repo.commits)).encode())
        commit = Commit(h.hexdigest(), parent, message, files, lfs)
        repo.commits[commit.sha] = commit
        return commit

    def create_repo(self, repo_id: str, private: bool) -> bool:
        with self.lock:
            if repo_id in self.repos:
                return False
            repo = Repo(repo_id, private)
            first = self.make_commit(
                repo,
                None,
                "initial commit",
                {".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"},
                set(),
            )
            repo.refs["main"] = first.sha
            self.repos[repo_id] = repo
            return True

    def resolve(self, repo: Repo, revision: str) -> Commit | None:
        revision = unquote(revision)
        sha = repo.refs.get(revision) or (revision if revision in repo.commits else None)
        return repo.commits.get(sha) if sha else None


class _Error(Exception):
    def __init__(self, status: int, message: str, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # silence
        return

    # --- plumbing -----------------------------------------------------------------------
    @property
    def state(self) -> HubState:
        return self.server.state

    @property
    def base(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(
        self,
        status: int,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        *,
        head: bool = False,
    ) -> None:
        self.send_response(status)
        headers = dict(headers or {})
        headers.setdefault("Content-Type", "application/json")
        headers["Content-Length"] = str(len(body))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        if not head and body:
            self.wfile.write(body)

    def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), headers)

    def _authorized(self) -> bool:
        if self.state.token is None:
            return True
        return self.headers.get("Authorization", "") == f"Bearer {self.state.token}"

    def _require_write(self) -> None:
        if not self._authorized():
            raise _Error(401, "Invalid credentials in Authorization header")

    def _repo(self, repo_id: str) -> Repo:
        repo = self.state.repos.get(repo_id)
        if repo is None or (repo.private and not self._authorized()):
            raise _Error(404, f"Repository {repo_id} not found", "RepoNotFound")
        return repo

    def _commit(self, repo: Repo, revision: str) -> Commit:
        commit = self.state.resolve(repo, revision)
        if commit is None:
            raise _Error(404, f"Invalid rev id: {unquote(revision)}", "RevisionNotFound")
        return commit

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        path, query = unquote(url.path), parse_qs(url.query)
        self.state.requests.append((method, path))
        routes = [
            ("POST", r"^/api/repos/create$", self._create_repo),
            ("POST", r"^/api/validate-yaml$", self._validate_yaml),
            ("GET", rf"^/api/models/{_REPO}(/revision/(?P<rev>.+))?$", self._model_info),
            ("GET", rf"^/api/models/{_REPO}/tree/(?P<rev>[^/]+)(/(?P<path>.*))?$", self._tree),
            ("POST", rf"^/api/models/{_REPO}/paths-info/(?P<rev>.+)$", self._paths_info),
            ("POST", rf"^/api/models/{_REPO}/preupload/(?P<rev>.+)$", self._preupload),
            ("POST", rf"^/api/models/{_REPO}/commit/(?P<rev>.+)$", self._commit_route),
            ("POST", rf"^/{_REPO}\.git/info/lfs/objects/batch$", self._lfs_batch),
            ("PUT", r"^/lfs-upload/(?P<oid>[0-9a-f]{64})$", self._lfs_upload),
            ("GET", rf"^/{_REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)$", self._resolve),
            ("HEAD", rf"^/{_REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)$", self._resolve),
        ]
        # Revisions with a slash (refs/pr/1) arrive quoted: match on the raw path for those.
        raw_path = url.path
        try:
            for verb, pattern, handler in routes:
                if verb != method:
                    continue
                match = re.match(pattern, path) or re.match(pattern, raw_path)
                if match:
                    with self.state.lock:
                        handler(
                            method=method,
                            query=query,
                            **{k: v for k, v in match.groupdict().items() if v is not None},
                        )
                    return
            raise _Error(404, f"no route for {method} {path}")
        except _Error as err:
            headers = {"X-Error-Message": err.message}
            if err.code:
                headers["X-Error-Code"] = err.code
            if method == "HEAD":
                self._send(err.status, b"", headers, head=True)
            else:
                self._json(err.status, {"error": err.message}, headers)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    # --- routes -------------------------------------------------------------------------
    def _create_repo(self, **_: Any) -> None:
        self._require_write()
        payload = json.loads(self._body() or b"{}")
        repo_id = f"{payload.get('organization') or 'user'}/{payload['name']}"
        private = payload.get("visibility") == "private" or bool(payload.get("private"))
        if not self.state.create_repo(repo_id, private):
            message = "You already created this model repo"
            self._json(
                409,
                {"error": message, "url": f"{self.base}/{repo_id}"},
                {"X-Error-Message": message},
            )
            return
        self._json(200, {"url": f"{self.base}/{repo_id}", "name": repo_id, "id": repo_id})

    def _validate_yaml(self, **_: Any) -> None:
        content = json.loads(self._body() or b"{}").get("content", "")
        try:
            front_matter(content)
        except yaml.YAMLError as err:
            self._json(400, {"errors": [{"message": str(err)}]})
            return
        self._json(200, {"warnings": []})

    def _model_info(self, repo: str, rev: str = "main", **_: Any) -> None:
        r = self._repo(repo)
        commit = self._commit(r, rev)
        readme = commit.files.get("README.md")
        card = front_matter(readme.decode()) if readme is not None else None
        info: dict[str, Any] = {
            "_id": repo,
            "id": repo,
            "modelId": repo,
            "sha": commit.sha,
            "private": r.private,
            "siblings": [{"rfilename": p} for p in sorted(commit.files)],
            "tags": list((card or {}).get("tags") or []),
        }
        if card is not None:
            info["cardData"] = card
            if card.get("library_name"):
                info["library_name"] = card["library_name"]
        self._json(200, info)

    def _entry(self, commit: Commit, path: str) -> dict[str, Any] | None:
        if path in commit.files:
            data = commit.files[path]
            entry: dict[str, Any] = {
                "type": "file",
                "path": path,
                "size": len(data),
                "oid": git_blob_sha(data),
            }
            if path in commit.lfs:
                entry["lfs"] = {
                    "oid": hashlib.sha256(data).hexdigest(),
                    "size": len(data),
                    "pointerSize": 134,
                }
            return entry
        prefix = path.rstrip("/") + "/"
        if any(p.startswith(prefix) for p in commit.files):
            return {
                "type": "directory",
                "path": path.rstrip("/"),
                "oid": hashlib.sha1(prefix.encode() + commit.sha.encode()).hexdigest(),
            }
        return None

    def _tree(
        self, repo: str, rev: str, query: dict[str, list[str]], path: str = "", **_: Any
    ) -> None:
        commit = self._commit(self._repo(repo), rev)
        recursive = query.get("recursive", ["False"])[0].lower() == "true"
        prefix = path.strip("/") + "/" if path.strip("/") else ""
        if prefix and self._entry(commit, prefix.rstrip("/")) is None:
            raise _Error(404, f"{path} not found", "EntryNotFound")
        seen: dict[str, dict[str, Any]] = {}
        for file_path in sorted(commit.files):
            if not file_path.startswith(prefix):
                continue
            rest = file_path[len(prefix) :].split("/")
            if len(rest) > 1:
                for depth in range(1, len(rest) if recursive else 2):
                    folder = prefix + "/".join(rest[:depth])
                    seen.setdefault(folder, self._entry(commit, folder) or {})
                if not recursive:
                    continue
            seen[file_path] = self._entry(commit, file_path) or {}
        self._json(200, list(seen.values()))

    def _paths_info(self, repo: str, rev: str, **_: Any) -> None:
        commit = self._commit(self._repo(repo), rev)
        form = parse_qs(self._body().decode())
        out = [
            e for p in form.get("paths", []) if (e := self._entry(commit, p.strip("/"))) is not None
        ]
        self._json(200, out)

    def _preupload(self, repo: str, rev: str, **_: Any) -> None:
        self._require_write()
        self._commit(self._repo(repo), rev)
        files = json.loads(self._body())["files"]
        self._json(
            200,
            {
                "files": [
                    {
                        "path": f["path"],
                        "uploadMode": "lfs" if f["path"].endswith(LFS_SUFFIXES) else "regular",
                        "shouldIgnore": False,
                        "oid": None,
                    }
                    for f in files
                ]
            },
        )

    def _lfs_batch(self, repo: str, **_: Any) -> None:
        self._require_write()
        self._repo(repo)
        payload = json.loads(self._body())
        objects = []
        for obj in payload["objects"]:
            entry: dict[str, Any] = {"oid": obj["oid"], "size": obj["size"]}
            if obj["oid"] not in self.state.lfs_objects:
                entry["actions"] = {"upload": {"href": f"{self.base}/lfs-upload/{obj['oid']}"}}
            objects.append(entry)
        self._json(200, {"transfer": "basic", "objects": objects})

    def _lfs_upload(self, oid: str, **_: Any) -> None:
        data = self._body()
        if hashlib.sha256(data).hexdigest() != oid:
            raise _Error(400, "sha256 of the uploaded content does not match the oid")
        self.state.lfs_objects[oid] = data
        self._send(200)

    def _commit_route(self, repo: str, rev: str, query: dict[str, list[str]], **_: Any) -> None:
        self._require_write()
        r = self._repo(repo)
        head = self._commit(r, rev)
        lines = [json.loads(line) for line in self._body().splitlines() if line.strip()]
        header = next((line["value"] for line in lines if line["key"] == "header"), {})
        parent = header.get("parentCommit")
        if parent is not None and parent != head.sha:
            raise _Error(
                412, f"parent commit {parent} is not the head of {unquote(rev)} ({head.sha})"
            )
        files, lfs = dict(head.files), set(head.lfs)
        for line in lines:
            key, value = line["key"], line["value"]
            if key == "file":
                files[value["path"]] = base64.b64decode(value["content"])
                lfs.discard(value["path"])
            elif key == "lfsFile":
                data = self.state.lfs_objects.get(value["oid"])
                if data is None:
                    raise _Error(400, f"LFS object {value['oid']} was never uploaded")
                files[value["path"]] = data
                lfs.add(value["path"])
            elif key == "deletedFile":
                if value["path"] not in files:
                    raise _Error(404, "A file with this name doesn't exist", "EntryNotFound")
                del files[value["path"]]
            elif key == "deletedFolder":
                prefix = value["path"].rstrip("/") + "/"
                for p in [p for p in files if p.startswith(prefix)]:
                    del files[p]
        commit = self.state.make_commit(r, head.sha, header.get("summary", ""), files, lfs)
        pr_url = None
        if query.get("create_pr", ["0"])[0] in ("1", "true", "True"):
            r.n_prs += 1
            r.refs[f"refs/pr/{r.n_prs}"] = commit.sha
            pr_url = f"{self.base}/{repo}/discussions/{r.n_prs}"
        else:
            r.refs[unquote(rev)] = commit.sha
        self._json(
            200,
            {
                "commitOid": commit.sha,
                "commitUrl": f"{self.base}/{repo}/commit/{commit.sha}",
                "pullRequestUrl": pr_url,
                "success": True,
            },
        )

    def _resolve(self, method: str, repo: str, rev: str, path: str, **_: Any) -> None:
        commit = self._commit(self._repo(repo), rev)
        data = commit.files.get(path)
        if data is None:
            raise _Error(404, "Entry not found", "EntryNotFound")
        etag = hashlib.sha256(data).hexdigest() if path in commit.lfs else git_blob_sha(data)
        headers = {
            "Content-Type": "application/octet-stream",
            "X-Repo-Commit": commit.sha,
            "ETag": f'"{etag}"',
        }
        if path in commit.lfs:
            headers["X-Linked-Etag"] = f'"{etag}"'
            headers["X-Linked-Size"] = str(len(data))
        self._send(200, data, headers, head=method == "HEAD")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    state: HubState


class HubServer:
    """The stand-in Hub. ``url`` is its endpoint; ``state`` its repos (for assertions)."""

    def __init__(
        self, token: str | None = "hf_test_token_do_not_log", *, max_lifetime_s: float = 600.0
    ):
        self.token = token
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.state = HubState(token)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="hub-stand-in", daemon=True
        )
        self._timer = threading.Timer(max_lifetime_s, self.stop)
        self._timer.daemon = True
        self._stopped = False

    @property
    def state(self) -> HubState:
        return self._server.state

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> HubServer:
        self._thread.start()
        self._timer.start()
        return self

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self._timer.cancel()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- helpers for tests ---------------------------------------------------------------
    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        """The file tree of ``repo_id`` at ``revision``."""
        with self.state.lock:
            repo = self.state.repos[repo_id]
            commit = self.state.resolve(repo, quote(revision, safe=""))
            assert commit is not None, revision
            return dict(commit.files)

    def head(self, repo_id: str, revision: str = "main") -> str:
        with self.state.lock:
            return self.state.repos[repo_id].refs[revision]
