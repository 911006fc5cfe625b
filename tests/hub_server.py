"""A small local stand-in for the Hugging Face Hub HTTP API, for tests.

No machine of this project reaches huggingface.co, so the push/pull tests start this server on
127.0.0.1 and point the *real* `huggingface_hub` client at it (`HF_ENDPOINT`). It implements the
subset of the Hub API that `create_repo`, `upload_folder` / `create_commit` (and so transformers'
`push_to_hub`), `model_info`, `list_repo_tree`, `hf_hub_download`, `snapshot_download` and
transformers' `from_pretrained` use, as read from the installed client (huggingface_hub 2.4.0):

| method     | path                                                      | used by                          |
|------------|-----------------------------------------------------------|----------------------------------|
| GET        | /api/whoami-v2                                            | `whoami`                         |
| GET        | /api/agent-harnesses                                      | client telemetry (empty answer)  |
| POST       | /api/repos/create                                         | `create_repo` (409 + url if any) |
| POST       | /api/validate-yaml (checks: `hub_metadata.py`)           | `create_commit` with a README.md |
| GET        | /api/{type}s/{repo}[/revision/{rev}]                      | `model_info`, `repo_info`        |
| GET        | /api/{type}s/{repo}/tree/{rev}[/{path}]                   | `list_repo_tree`, snapshots      |
| POST       | /api/{type}s/{repo}/paths-info/{rev}                      | `get_paths_info`                 |
| POST       | /api/{type}s/{repo}/preupload/{rev}                       | upload mode: regular or lfs      |
| POST       | /{prefix}{repo}.git/info/lfs/objects/batch                | Git LFS batch API                |
| POST       | /{prefix}{repo}.git/info/lfs/objects/verify               | Git LFS verify action            |
| POST       | /api/{type}s/{repo}/commit/{rev}                          | ndjson commit                    |
| HEAD, GET  | /{prefix}{repo}/resolve/{rev}/{path}                      | file metadata and download       |

A second listener on another 127.0.0.1 port plays the part of the Hub's object storage / CDN
(a different origin, like S3 or cas-bridge on the real Hub): LFS uploads are `PUT` there, and
`resolve` answers LFS files with a `302` to it carrying `X-Linked-Etag` / `X-Linked-Size`, so the
client takes its real "redirect to a CDN" path (no auth header sent off the Hub origin).

Rules this server applies (documented because the real Hub has its own and they may differ):

* Upload mode ("preupload"): a file is `lfs` when its path matches an LFS pattern of the repo's
  `.gitattributes` at that revision (new repos get the Hub's default `.gitattributes`: `*.safetensors`,
  `*.bin`, `*.pt`, `*.model`, ...), or it is larger than 10 MiB, or its first 512 bytes contain a NUL
  byte (binary). Everything else is `regular`. The commit endpoint rejects a `file` (inline) line
  that is larger than 10 MiB or binary, as the Hub rejects such pushes.
* Every commit is an immutable snapshot (commit sha -> {path: blob}); branches (`main`) point at
  commits. A commit is validated completely (header, paths, every `lfsFile` uploaded with the
  announced size, deletions of existing paths, `parentCommit`) before the branch moves, under one
  lock: a failed or truncated request leaves the branch where it was.
* LFS objects are checked on `PUT`: sha256 and size must match the oid/size announced in the batch
  request, else 400 and nothing is stored.
* Writes need an `Authorization: Bearer <anything>` header (401 otherwise); reads do not. Private
  repos are recorded and reported but not access-controlled. No pull requests, no Xet (never any
  `xetHash` or `X-Xet-*` header: run the client with `HF_HUB_DISABLE_XET=1`), no multipart LFS,
  no `expand=` details (last commit, security scan) in tree listings.

Failure injection for tests: `server.fail_next("lfs_upload", status=403)` makes the next LFS PUT
fail; `drop=True` instead reads half of the request body and closes the connection without an
answer; `skip=n` lets n matching requests through first; `times=k` fails k in a row.

Usage::

    with HubServer() as hub:          # or hub = HubServer(port=...); hub.start(); ...; hub.stop()
        os.environ["HF_ENDPOINT"] = hub.url   # before huggingface_hub is imported
"""

from __future__ import annotations

import base64
import datetime as dt
import fnmatch
import hashlib
import json
import re
import socket
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from tests.hub_metadata import card_data, validate_readme

__all__ = ["HubServer", "DEFAULT_GITATTRIBUTES", "LFS_SIZE_THRESHOLD", "FAILURE_ENDPOINTS"]

LFS_SIZE_THRESHOLD = 10 * 1024 * 1024  # files above 10 MiB must go through LFS
SAMPLE_SIZE = 512  # the client sends the first 512 bytes of each file to `preupload`
TREE_PAGE_SIZE = 1000  # the Hub pages tree listings by 1000 entries (without `expand`)
REPO_TYPES = ("model", "dataset", "space")
URL_PREFIXES = {"model": "", "dataset": "datasets/", "space": "spaces/"}

# The `.gitattributes` the Hub commits in every new model repo ("initial commit").
DEFAULT_GITATTRIBUTES = "".join(
    f"{pattern} filter=lfs diff=lfs merge=lfs -text\n"
    for pattern in (
        "*.7z *.arrow *.bin *.bz2 *.ckpt *.ftz *.gz *.h5 *.joblib *.lfs.* *.mlmodel *.model *.msgpack "
        "*.npy *.npz *.onnx *.ot *.parquet *.pb *.pickle *.pkl *.pt *.pth *.rar *.safetensors "
        "saved_model/**/* *.tar.* *.tar *.tflite *.tgz *.wasm *.xz *.zip *.zst *tfevents*"
    ).split()
)

# Names accepted by `HubServer.fail_next`, one per route below.
FAILURE_ENDPOINTS = (
    "whoami",
    "agent_harnesses",
    "create_repo",
    "validate_yaml",
    "info",
    "tree",
    "paths_info",
    "preupload",
    "lfs_batch",
    "lfs_verify",
    "lfs_upload",
    "lfs_download",
    "commit",
    "resolve",
)

# Endpoints that need an `Authorization: Bearer ...` header. LFS PUTs go to a pre-signed URL instead.
WRITE_ENDPOINTS = frozenset({"create_repo", "preupload", "lfs_batch", "lfs_verify", "commit"})

_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_REPO = r"(?P<repo>[\w.\-]+(?:/[\w.\-]+)?)"  # namespace/name (legacy ids have no namespace)
_API_TYPE = r"/api/(?P<type>models|datasets|spaces)/"
_URL_TYPE = r"/(?:(?P<type>datasets|spaces)/)?"


# --------------------------------------------------------------------------------------------
# Storage model
# --------------------------------------------------------------------------------------------


def git_blob_oid(data: bytes) -> str:
    """The git object id of a blob (`git hash-object`), which the Hub reports for regular files."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    """The Git LFS pointer file git stores in place of an LFS file."""
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


@dataclass(frozen=True)
class Blob:
    """The content of one file in one commit, and whether it is stored through LFS."""

    data: bytes
    lfs: bool

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def pointer(self) -> bytes:
        return lfs_pointer(self.sha256, self.size)

    @property
    def git_oid(self) -> str:
        """What git (and so the Hub) reports as the file's oid: the blob, or its LFS pointer."""
        return git_blob_oid(self.pointer if self.lfs else self.data)

    @property
    def content_oid(self) -> str:
        """The oid the upload client compares against its local file: sha256 for LFS, git sha1 otherwise."""
        return self.sha256 if self.lfs else self.git_oid


@dataclass(frozen=True)
class Commit:
    """An immutable snapshot of a repo."""

    oid: str
    parent: str | None
    summary: str
    description: str
    date: dt.datetime
    files: Mapping[str, Blob]


@dataclass
class Repo:
    """A repository: its commits, its branches and its LFS object store."""

    repo_type: str
    repo_id: str
    private: bool
    created_at: dt.datetime
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    lfs_objects: dict[str, bytes] = field(default_factory=dict)
    pending_uploads: dict[str, int] = field(default_factory=dict)  # oid -> size announced to batch

    def resolve(self, revision: str) -> Commit | None:
        """Commit of a branch name, a full commit sha or an unambiguous sha prefix (>= 7 chars)."""
        if revision in self.branches:
            return self.commits[self.branches[revision]]
        if revision in self.commits:
            return self.commits[revision]
        if re.fullmatch(r"[0-9a-f]{7,40}", revision):
            matches = [oid for oid in self.commits if oid.startswith(revision)]
            if len(matches) == 1:
                return self.commits[matches[0]]
        return None


class HubError(Exception):
    """An error answer: HTTP status, message and the Hub's `X-Error-Code` (if any)."""

    def __init__(
        self,
        status: int,
        message: str,
        error_code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_code = error_code
        self.headers = dict(headers or {})


class IncompleteRequest(Exception):
    """The client closed the connection before sending the whole request body."""


@dataclass
class _Failure:
    endpoint: str
    status: int
    drop: bool
    skip: int
    times: int
    message: str


@dataclass
class Response:
    """What a route handler returns; `body` may be bytes or a JSON-serialisable object."""

    status: int = 200
    body: Any = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"

    def encoded(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        return json.dumps(self.body).encode()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _iso(date: dt.datetime) -> str:
    return date.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _is_binary(sample: bytes) -> bool:
    return b"\0" in sample[:SAMPLE_SIZE]


def _lfs_patterns(gitattributes: bytes | None) -> list[str]:
    """Patterns of `.gitattributes` lines that route files to LFS (`filter=lfs`)."""
    if gitattributes is None:
        return []
    patterns = []
    for line in gitattributes.decode("utf-8", "replace").splitlines():
        parts = line.split()
        if len(parts) >= 2 and not parts[0].startswith("#") and "filter=lfs" in parts[1:]:
            patterns.append(parts[0])
    return patterns


def _matches(path: str, pattern: str) -> bool:
    """gitattributes/gitignore-style match: a pattern without '/' matches the file name anywhere."""
    pattern = pattern.lstrip("/")
    if "/" not in pattern.rstrip("/"):
        return fnmatch.fnmatchcase(path.rsplit("/", 1)[-1], pattern)
    return fnmatch.fnmatchcase(path, pattern) or fnmatch.fnmatchcase(path, pattern.replace("**/", ""))


def _validate_path(path: Any) -> str:
    if not isinstance(path, str) or not path or path.startswith("/") or path.endswith("/"):
        raise HubError(400, f"Invalid path in repo: {path!r}")
    parts = path.split("/")
    if any(part in ("", ".", "..") for part in parts) or parts[0] == ".git":
        raise HubError(400, f"Invalid path in repo: {path!r}")
    return path


# --------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------


class HubServer:
    """The local Hub: state, test helpers and the two HTTP listeners (API and object storage).

    Args:
        port: port of the API listener (0 picks a free one). The storage listener always picks one.
        username: the user every token belongs to; `create_repo("name")` creates `username/name`.
        tree_page_size: entries per page of tree listings (small values exercise pagination).
        lfs_redirect: answer `resolve` of LFS files with a 302 to the storage origin (as the Hub
            does); if False, serve them directly.
    """

    def __init__(
        self,
        port: int = 0,
        *,
        username: str = "user",
        tree_page_size: int = TREE_PAGE_SIZE,
        lfs_redirect: bool = True,
    ) -> None:
        self.host = "127.0.0.1"
        self.port = port
        self.username = username
        self.tree_page_size = tree_page_size
        self.lfs_redirect = lfs_redirect
        self.request_log: list[tuple[str, str, str, int]] = []  # (endpoint, method, path, status)
        self._repos: dict[tuple[str, str], Repo] = {}
        self._failures: list[_Failure] = []
        self._lock = threading.RLock()
        self._commit_counter = 0
        self._api: ThreadingHTTPServer | None = None
        self._storage: ThreadingHTTPServer | None = None
        self._threads: list[threading.Thread] = []

    # ---- lifecycle -------------------------------------------------------------------------

    def start(self) -> HubServer:
        """Bind both listeners on 127.0.0.1 and serve in daemon threads."""
        if self._api is not None:
            raise RuntimeError("HubServer already started")
        try:
            self._api = _Listener((self.host, self.port), self, storage=False)
        except OSError as exc:
            raise OSError(f"HubServer cannot listen on {self.host}:{self.port}: {exc}") from exc
        self._storage = _Listener((self.host, 0), self, storage=True)
        self.port = self._api.server_address[1]
        for listener in (self._api, self._storage):
            thread = threading.Thread(
                target=listener.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True, name="hub-server"
            )
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving (bounded: idle keep-alive connections are not waited for)."""
        for listener in (self._api, self._storage):
            if listener is not None:
                listener.shutdown()
                listener.server_close()
        for thread in self._threads:
            thread.join(timeout)
        self._api = self._storage = None
        self._threads = []

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The endpoint to put in `HF_ENDPOINT`."""
        if self._api is None:
            raise RuntimeError("HubServer not started")
        return f"http://{self.host}:{self.port}"

    @property
    def storage_url(self) -> str:
        """Origin of the object storage (LFS uploads and downloads)."""
        if self._storage is None:
            raise RuntimeError("HubServer not started")
        return f"http://{self.host}:{self._storage.server_address[1]}"

    # ---- test helpers ----------------------------------------------------------------------

    def fail_next(
        self,
        endpoint: str,
        *,
        status: int = 500,
        drop: bool = False,
        skip: int = 0,
        times: int = 1,
        message: str = "Injected failure (test hub)",
    ) -> None:
        """Make the next matching request(s) to `endpoint` (one of `FAILURE_ENDPOINTS`) fail.

        `status` is the HTTP status answered; with `drop=True` the server instead reads half of the
        request body and closes the connection without answering (a request that dies midway).
        The first `skip` matching requests go through; then `times` requests fail.
        """
        if endpoint not in FAILURE_ENDPOINTS:
            raise ValueError(f"Unknown endpoint {endpoint!r}; expected one of {FAILURE_ENDPOINTS}")
        if times < 1 or skip < 0:
            raise ValueError("times must be >= 1 and skip >= 0")
        with self._lock:
            self._failures.append(_Failure(endpoint, status, drop, skip, times, message))

    def clear_failures(self) -> None:
        with self._lock:
            self._failures.clear()

    def calls(self, endpoint: str) -> int:
        """How many requests reached `endpoint` (including failed ones)."""
        with self._lock:
            return sum(1 for name, *_ in self.request_log if name == endpoint)

    def head(self, repo_id: str, revision: str = "main", repo_type: str = "model") -> str:
        """Commit sha a branch (or revision) points at."""
        with self._lock:
            commit = self._get_repo(repo_type, repo_id).resolve(revision)
        if commit is None:
            raise KeyError(f"{repo_id}@{revision}")
        return commit.oid

    def files(self, repo_id: str, revision: str = "main", repo_type: str = "model") -> dict[str, bytes]:
        """{path: bytes} of the snapshot at `revision`."""
        with self._lock:
            commit = self._get_repo(repo_type, repo_id).resolve(revision)
        if commit is None:
            raise KeyError(f"{repo_id}@{revision}")
        return {path: blob.data for path, blob in commit.files.items()}

    def history(self, repo_id: str, revision: str = "main", repo_type: str = "model") -> list[str]:
        """Commit shas from `revision` back to the initial commit."""
        with self._lock:
            repo = self._get_repo(repo_type, repo_id)
            commit, shas = repo.resolve(revision), []
            while commit is not None:
                shas.append(commit.oid)
                commit = repo.commits.get(commit.parent) if commit.parent else None
        return shas

    # ---- failure injection (called by the request handler) ---------------------------------

    def _take_failure(self, endpoint: str) -> _Failure | None:
        with self._lock:
            for failure in self._failures:
                if failure.endpoint != endpoint:
                    continue
                if failure.skip > 0:
                    failure.skip -= 1
                    return None
                failure.times -= 1
                if failure.times == 0:
                    self._failures.remove(failure)
                return failure
        return None

    def _log(self, endpoint: str, method: str, path: str, status: int) -> None:
        with self._lock:
            self.request_log.append((endpoint, method, path, status))

    # ---- repo access -----------------------------------------------------------------------

    def _get_repo(self, repo_type: str, repo_id: str) -> Repo:
        repo = self._repos.get((repo_type, repo_id))
        if repo is None:
            raise HubError(404, "Repository not found", "RepoNotFound")
        return repo

    def _get_commit(self, repo: Repo, revision: str) -> Commit:
        commit = repo.resolve(revision)
        if commit is None:
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return commit

    def _repo_url(self, repo: Repo) -> str:
        return f"{self.url}/{URL_PREFIXES[repo.repo_type]}{repo.repo_id}"

    def _new_commit(
        self, repo: Repo, parent: Commit | None, files: dict[str, Blob], summary: str, description: str
    ) -> Commit:
        self._commit_counter += 1
        digest = hashlib.sha1()
        for part in (parent.oid if parent else "", summary, description, str(self._commit_counter)):
            digest.update(part.encode() + b"\0")
        for path in sorted(files):
            digest.update(f"{path}\0{files[path].git_oid}\0".encode())
        commit = Commit(digest.hexdigest(), parent.oid if parent else None, summary, description, _now(), dict(files))
        repo.commits[commit.oid] = commit
        return commit

    def upload_mode(self, files: Mapping[str, Blob], path: str, size: int, sample: bytes) -> str:
        """ "lfs" or "regular" for a file about to be committed on top of snapshot `files` (see module doc)."""
        gitattributes = files.get(".gitattributes")
        if any(_matches(path, p) for p in _lfs_patterns(gitattributes.data if gitattributes else None)):
            return "lfs"
        if size > LFS_SIZE_THRESHOLD or _is_binary(sample):
            return "lfs"
        return "regular"

    # ---- API operations --------------------------------------------------------------------

    def create_repo(self, payload: Mapping[str, Any]) -> Response:
        name, organization = payload.get("name"), payload.get("organization") or self.username
        repo_type = payload.get("type") or "model"
        if repo_type not in REPO_TYPES or not isinstance(name, str) or not re.fullmatch(r"[\w.\-]+", name):
            raise HubError(400, f"Invalid repo name or type: {name!r} ({repo_type!r})")
        repo_id = f"{organization}/{name}"
        with self._lock:
            existing = self._repos.get((repo_type, repo_id))
            if existing is not None:
                return Response(409, {"error": "You already created this model repo", "url": self._repo_url(existing)})
            private = payload.get("visibility") == "private" or bool(payload.get("private"))
            repo = Repo(repo_type, repo_id, private, _now())
            initial = {".gitattributes": Blob(DEFAULT_GITATTRIBUTES.encode(), lfs=False)}
            repo.branches["main"] = self._new_commit(repo, None, initial, "initial commit", "").oid
            self._repos[(repo_type, repo_id)] = repo
            return Response(200, {"url": self._repo_url(repo), "name": repo_id, "id": repo_id})

    def repo_info(self, repo_type: str, repo_id: str, revision: str, blobs: bool) -> Response:
        with self._lock:
            repo = self._get_repo(repo_type, repo_id)
            commit = self._get_commit(repo, revision)
        readme = commit.files.get("README.md")
        card = card_data(readme.data if readme else None) or {}
        siblings = [self._sibling(path, blob, blobs) for path, blob in sorted(commit.files.items())]
        info: dict[str, Any] = {
            "_id": hashlib.md5(repo_id.encode()).hexdigest()[:24],
            "id": repo_id,
            "author": repo_id.split("/")[0],
            "sha": commit.oid,
            "lastModified": _iso(commit.date),
            "createdAt": _iso(repo.created_at),
            "private": repo.private,
            "disabled": False,
            "gated": False,
            "downloads": 0,
            "likes": 0,
            "tags": [card["tags"]] if isinstance(card.get("tags"), str) else list(card.get("tags") or []),
            "siblings": siblings,
        }
        if repo_type == "model":
            info["modelId"] = repo_id
            for key in ("pipeline_tag", "library_name"):
                if isinstance(card.get(key), str):
                    info[key] = card[key]
        if card:
            info["cardData"] = card
            if "model-index" in card:
                info["model-index"] = card["model-index"]
        return Response(200, info)

    @staticmethod
    def _sibling(path: str, blob: Blob, blobs: bool) -> dict[str, Any]:
        sibling: dict[str, Any] = {"rfilename": path}
        if blobs:
            sibling.update(size=blob.size, blobId=blob.git_oid)
            if blob.lfs:
                sibling["lfs"] = {"size": blob.size, "sha256": blob.sha256, "pointerSize": len(blob.pointer)}
        return sibling

    @staticmethod
    def _file_entry(path: str, blob: Blob) -> dict[str, Any]:
        entry: dict[str, Any] = {"type": "file", "oid": blob.git_oid, "size": blob.size, "path": path}
        if blob.lfs:
            entry["lfs"] = {"oid": blob.sha256, "size": blob.size, "pointerSize": len(blob.pointer)}
        return entry

    @staticmethod
    def _folder_entry(path: str, files: Mapping[str, Blob]) -> dict[str, Any]:
        digest = hashlib.sha1()
        for child in sorted(p for p in files if p.startswith(path + "/")):
            digest.update(f"{child}\0{files[child].git_oid}\0".encode())
        return {"type": "directory", "oid": digest.hexdigest(), "size": 0, "path": path}

    def tree_entries(self, files: Mapping[str, Blob], folder: str, recursive: bool) -> list[dict[str, Any]]:
        """Entries under `folder` ("" = root): direct children, or all descendants if `recursive`."""
        prefix = f"{folder}/" if folder else ""
        folders: set[str] = set()
        entries = []
        for path in sorted(files):
            if not path.startswith(prefix):
                continue
            parts = path[len(prefix) :].split("/")
            for depth in range(1, len(parts)):
                if recursive or depth == 1:
                    folders.add(prefix + "/".join(parts[:depth]))
            if recursive or len(parts) == 1:
                entries.append(self._file_entry(path, files[path]))
        return sorted([self._folder_entry(f, files) for f in folders], key=lambda e: e["path"]) + entries

    def list_tree(self, repo_type: str, repo_id: str, revision: str, folder: str, query: Mapping[str, str]) -> Response:
        with self._lock:
            commit = self._get_commit(self._get_repo(repo_type, repo_id), revision)
        folder = folder.strip("/")
        if folder and not any(p.startswith(folder + "/") for p in commit.files):
            raise HubError(404, f"Folder {folder!r} does not exist", "EntryNotFound", {"X-Repo-Commit": commit.oid})
        recursive = query.get("recursive", "false").lower() in ("1", "true")
        entries = self.tree_entries(commit.files, folder, recursive)
        start = int(query.get("cursor", "0") or 0)
        page = entries[start : start + self.tree_page_size]
        headers = {}
        if start + self.tree_page_size < len(entries):
            path = f"/api/{repo_type}s/{repo_id}/tree/{quote(revision, safe='')}"
            path += f"/{quote(folder)}" if folder else ""
            next_url = f"{self.url}{path}?recursive={str(recursive).lower()}&cursor={start + self.tree_page_size}"
            headers["Link"] = f'<{next_url}>; rel="next"'
        return Response(200, page, headers)

    def paths_info(self, repo_type: str, repo_id: str, revision: str, paths: Iterable[str]) -> Response:
        with self._lock:
            commit = self._get_commit(self._get_repo(repo_type, repo_id), revision)
        result = []
        for path in paths:
            path = path.strip("/")
            if path in commit.files:
                result.append(self._file_entry(path, commit.files[path]))
            elif any(p.startswith(path + "/") for p in commit.files):
                result.append(self._folder_entry(path, commit.files))
        return Response(200, result)

    def preupload(self, repo_type: str, repo_id: str, revision: str, payload: Mapping[str, Any]) -> Response:
        with self._lock:
            commit = self._get_commit(self._get_repo(repo_type, repo_id), revision)
        ignore_patterns = self._gitignore_patterns(commit.files, payload.get("gitIgnore"))
        answers = []
        for item in payload.get("files") or []:
            path = _validate_path(item.get("path"))
            sample = base64.b64decode(item.get("sample") or "")
            existing = commit.files.get(path)
            answers.append(
                {
                    "path": path,
                    "uploadMode": self.upload_mode(commit.files, path, int(item.get("size", 0)), sample),
                    "shouldIgnore": any(_matches(path, p) for p in ignore_patterns),
                    "oid": existing.content_oid if existing else None,
                }
            )
        return Response(200, {"files": answers, "commitOid": commit.oid})

    @staticmethod
    def _gitignore_patterns(files: Mapping[str, Blob], content: str | None) -> list[str]:
        if content is None and ".gitignore" in files:
            content = files[".gitignore"].data.decode("utf-8", "replace")
        lines = (content or "").splitlines()
        return [line.strip() for line in lines if line.strip() and not line.startswith(("#", "!"))]

    def lfs_batch(self, repo_type: str, repo_id: str, payload: Mapping[str, Any]) -> Response:
        operation = payload.get("operation")
        if operation not in ("upload", "download"):
            raise HubError(422, f"Unsupported LFS operation {operation!r}")
        objects = []
        with self._lock:
            repo = self._get_repo(repo_type, repo_id)
            for obj in payload.get("objects") or []:
                objects.append(self._lfs_batch_object(repo, operation, obj.get("oid"), obj.get("size")))
        return Response(
            200,
            {"transfer": "basic", "objects": objects, "hash_algo": "sha256"},
            content_type="application/vnd.git-lfs+json",
        )

    def _lfs_batch_object(self, repo: Repo, operation: str, oid: Any, size: Any) -> dict[str, Any]:
        if not isinstance(oid, str) or not _SHA256_RE.match(oid) or not isinstance(size, int) or size < 0:
            return {
                "oid": str(oid),
                "size": size if isinstance(size, int) else 0,
                "error": {"code": 422, "message": "Invalid oid or size"},
            }
        href = f"{self.storage_url}/lfs/{repo.repo_type}s/{repo.repo_id}/{oid}"
        stored = repo.lfs_objects.get(oid)
        if operation == "download":
            if stored is None:
                return {"oid": oid, "size": size, "error": {"code": 404, "message": "Object does not exist"}}
            return {"oid": oid, "size": size, "authenticated": True, "actions": {"download": {"href": href}}}
        if stored is not None and len(stored) == size:
            return {"oid": oid, "size": size}  # already uploaded: no action
        repo.pending_uploads[oid] = size
        verify = f"{self._repo_url(repo)}.git/info/lfs/objects/verify"
        return {
            "oid": oid,
            "size": size,
            "authenticated": True,
            "actions": {"upload": {"href": href}, "verify": {"href": verify}},
        }

    def lfs_verify(self, repo_type: str, repo_id: str, payload: Mapping[str, Any]) -> Response:
        with self._lock:
            stored = self._get_repo(repo_type, repo_id).lfs_objects.get(str(payload.get("oid")))
        if stored is None or len(stored) != payload.get("size"):
            raise HubError(404, "LFS object not found or size mismatch")
        return Response(200, {"success": True})

    def lfs_put(self, repo_type: str, repo_id: str, oid: str, data: bytes) -> Response:
        with self._lock:
            repo = self._get_repo(repo_type, repo_id)
            expected_size = repo.pending_uploads.get(oid)
        if expected_size is None:
            raise HubError(403, "No upload was requested for this object (signature does not match)")
        actual = hashlib.sha256(data).hexdigest()
        if actual != oid or len(data) != expected_size:
            raise HubError(
                400,
                f"Uploaded content does not match: sha256 {actual} size {len(data)}, "
                f"expected sha256 {oid} size {expected_size}",
            )
        with self._lock:
            repo.lfs_objects[oid] = data
            repo.pending_uploads.pop(oid, None)
        return Response(200, b"", {"ETag": f'"{hashlib.md5(data).hexdigest()}"'})

    def lfs_object(self, repo_type: str, repo_id: str, oid: str) -> bytes:
        with self._lock:
            data = self._get_repo(repo_type, repo_id).lfs_objects.get(oid)
        if data is None:
            raise HubError(404, "Object not found")
        return data

    def commit(self, repo_type: str, repo_id: str, revision: str, body: bytes, query: Mapping[str, str]) -> Response:
        """Apply an ndjson commit atomically: validate everything, then move the branch."""
        if query.get("create_pr") in ("1", "true"):
            raise HubError(400, "Pull requests are not supported by the test hub")
        header, operations = self._parse_commit_body(body)
        with self._lock:
            repo = self._get_repo(repo_type, repo_id)
            if revision not in repo.branches:
                message = f"Invalid rev id: {revision} (commits go to an existing branch)"
                raise HubError(404, message, "RevisionNotFound")
            parent = repo.commits[repo.branches[revision]]
            parent_commit = header.get("parentCommit")
            if parent_commit and not parent.oid.startswith(str(parent_commit)):
                raise HubError(412, "A commit has happened since. Please refresh and try again.")
            files = dict(parent.files)
            for key, value in operations:
                self._apply_operation(repo, files, key, value)
            commit = self._new_commit(repo, parent, files, header["summary"], header.get("description") or "")
            repo.branches[revision] = commit.oid
        return Response(
            200,
            {
                "success": True,
                "commitOid": commit.oid,
                "commitUrl": f"{self._repo_url(repo)}/commit/{commit.oid}",
                "commitMessage": commit.summary,
                "pullRequestUrl": None,
            },
        )

    @staticmethod
    def _parse_commit_body(body: bytes) -> tuple[dict[str, Any], list[tuple[str, dict[str, Any]]]]:
        try:
            lines = [json.loads(line) for line in body.decode("utf-8").splitlines() if line.strip()]
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise HubError(400, f"Invalid ndjson commit payload: {exc}") from exc
        if not lines or not isinstance(lines[0], dict) or lines[0].get("key") != "header":
            raise HubError(400, "The first line of a commit payload must be the header")
        header = lines[0].get("value") or {}
        if not isinstance(header.get("summary"), str) or not header["summary"].strip():
            raise HubError(400, "Commit summary (message) is required")
        operations = []
        for line in lines[1:]:
            if not isinstance(line, dict) or not isinstance(line.get("value"), dict):
                raise HubError(400, f"Invalid commit operation: {line!r}")
            if line.get("key") not in ("file", "lfsFile", "deletedFile", "deletedFolder"):
                raise HubError(400, f"Unknown commit operation {line.get('key')!r}")
            operations.append((line["key"], line["value"]))
        return header, operations

    def _apply_operation(self, repo: Repo, files: dict[str, Blob], key: str, value: Mapping[str, Any]) -> None:
        path = _validate_path(str(value.get("path", "")).rstrip("/") if key == "deletedFolder" else value.get("path"))
        if key == "file":
            data = self._decode_inline(value)
            if len(data) > LFS_SIZE_THRESHOLD or _is_binary(data):
                raise HubError(
                    400, f"Your push was rejected: {path} is a large or binary file and must be uploaded with Git LFS"
                )
            files[path] = Blob(data, lfs=False)
        elif key == "lfsFile":
            oid, size = value.get("oid"), value.get("size")
            if value.get("algo", "sha256") != "sha256" or not isinstance(oid, str):
                raise HubError(400, f"Invalid lfsFile for {path}: {dict(value)}")
            data = repo.lfs_objects.get(oid)
            if data is None:
                raise HubError(
                    400,
                    f"Your push was rejected because an LFS pointer pointed to a file that does "
                    f"not exist: {path} (sha256 {oid})",
                )
            if size is not None and size != len(data):
                raise HubError(400, f"LFS object size mismatch for {path}: announced {size}, stored {len(data)}")
            files[path] = Blob(data, lfs=True)
        elif key == "deletedFile":
            if files.pop(path, None) is None:
                raise HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
        else:  # deletedFolder
            doomed = [p for p in files if p.startswith(path + "/")]
            if not doomed:
                raise HubError(404, f"A folder with this name doesn't exist: {path}", "EntryNotFound")
            for p in doomed:
                del files[p]

    @staticmethod
    def _decode_inline(value: Mapping[str, Any]) -> bytes:
        content = value.get("content")
        if not isinstance(content, str):
            raise HubError(400, f"Missing content for {value.get('path')}")
        if value.get("encoding", "utf-8") == "base64":
            try:
                return base64.b64decode(content, validate=True)
            except ValueError as exc:
                raise HubError(400, f"Invalid base64 content for {value.get('path')}") from exc
        return content.encode("utf-8")

    def resolve(self, repo_type: str, repo_id: str, revision: str, path: str) -> tuple[Commit, Blob]:
        with self._lock:
            commit = self._get_commit(self._get_repo(repo_type, repo_id), revision)
        blob = commit.files.get(path)
        if blob is None:
            raise HubError(404, "Entry not found", "EntryNotFound", {"X-Repo-Commit": commit.oid})
        return commit, blob

    def whoami(self) -> Response:
        return Response(
            200,
            {
                "type": "user",
                "id": "0" * 24,
                "name": self.username,
                "fullname": self.username,
                "orgs": [],
                "auth": {"type": "access_token", "accessToken": {"displayName": "test", "role": "write"}},
            },
        )


class _Listener(ThreadingHTTPServer):
    """One HTTP listener; `storage=True` is the object-storage origin."""

    daemon_threads = True
    block_on_close = False  # `stop()` must not wait for idle keep-alive connections

    def __init__(self, address: tuple[str, int], hub: HubServer, *, storage: bool) -> None:
        self.hub = hub
        self.storage = storage
        super().__init__(address, _Handler)


Route = tuple[str, "re.Pattern[str]", str, Callable[..., "Response | None"]]


class _Handler(BaseHTTPRequestHandler):
    """Routes requests to `HubServer` operations and writes their answers."""

    protocol_version = "HTTP/1.1"
    timeout = 60  # idle keep-alive connections are closed after a minute
    server: _Listener

    # ---- plumbing --------------------------------------------------------------------------

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass  # requests are recorded in `HubServer.request_log` instead of printed

    @property
    def hub(self) -> HubServer:
        return self.server.hub

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def _dispatch(self, method: str) -> None:
        split = urlsplit(self.path)
        self.query = {k: v[-1] for k, v in parse_qs(split.query).items()}
        routes = STORAGE_ROUTES if self.server.storage else API_ROUTES
        for route_method, pattern, endpoint, handler in routes:
            match = pattern.fullmatch(split.path)
            if match and method in route_method.split("|"):
                self._run(endpoint, handler, {k: unquote(v) for k, v in match.groupdict(default="").items()})
                return
        self._discard_body()
        self._send(Response(404, {"error": f"Not found: {method} {split.path}"}), endpoint="unknown")

    def _run(self, endpoint: str, handler: Callable[..., Response | None], params: dict[str, str]) -> None:
        failure = self.hub._take_failure(endpoint)
        if failure is not None and failure.drop:
            self._drop_connection(endpoint)
            return
        try:
            self.body = self._read_body()
        except IncompleteRequest:
            self.hub._log(endpoint, self.command, self.path, 0)
            self.close_connection = True
            return
        if failure is not None:
            self._send(Response(failure.status, {"error": failure.message}), endpoint)
            return
        try:
            if endpoint in WRITE_ENDPOINTS and not self._authorized():
                raise HubError(401, "Invalid username or password.")
            response = handler(self, params)  # None: the handler has already answered
        except HubError as exc:
            response = self._error(exc)
        except (ValueError, KeyError, TypeError) as exc:  # malformed payloads
            response = Response(400, {"error": f"Bad request: {exc!r}"})
        if response is not None:
            self._send(response, endpoint)

    def _authorized(self) -> bool:
        return self.headers.get("Authorization", "").startswith("Bearer ")

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        length = int(self.headers.get("Content-Length") or 0)
        data = self.rfile.read(length) if length else b""
        if len(data) < length:
            raise IncompleteRequest()
        return data

    def _read_chunked(self) -> bytes:
        chunks = []
        while True:
            size_line = self.rfile.readline()
            if not size_line:
                raise IncompleteRequest()
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(chunks)
            chunk = self.rfile.read(size)
            if len(chunk) < size:
                raise IncompleteRequest()
            chunks.append(chunk)
            self.rfile.readline()  # CRLF after each chunk

    def _discard_body(self) -> None:
        try:
            self._read_body()
        except (IncompleteRequest, ValueError):
            self.close_connection = True

    def _drop_connection(self, endpoint: str) -> None:
        """Read about half of the request body, then close the socket without answering."""
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(max(1, length // 2))
        elif "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.rfile.readline()
        self.hub._log(endpoint, self.command, self.path, 0)
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    @staticmethod
    def _error(exc: HubError) -> Response:
        headers = dict(exc.headers)
        if exc.error_code:
            headers["X-Error-Code"] = exc.error_code
        # Header values must be latin-1 and on one line: escape anything else.
        headers["X-Error-Message"] = exc.message.encode("ascii", "backslashreplace").decode().replace("\n", " ")
        return Response(exc.status, {"error": exc.message}, headers)

    def _send(self, response: Response, endpoint: str) -> None:
        body = response.encoded()
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.hub._log(endpoint, self.command, self.path, response.status)

    def _send_file(self, data: bytes, headers: dict[str, str], endpoint: str) -> None:
        """Answer a HEAD/GET for file content, honouring a single `Range: bytes=a-b` request."""
        status, start, end = 200, 0, len(data)
        range_header = self.headers.get("Range")
        if range_header:
            match = re.fullmatch(r"bytes=(\d*)-(\d*)", range_header.strip())
            unsatisfiable = Response(416, {"error": "Range not satisfiable"}, {"Content-Range": f"bytes */{len(data)}"})
            if match is None or match.groups() == ("", ""):
                return self._send(unsatisfiable, endpoint)
            first, last = match.groups()
            if first == "":  # suffix range: the last N bytes
                start = max(0, len(data) - int(last))
            else:
                start, end = int(first), min(len(data), int(last) + 1) if last else len(data)
            if start >= len(data) and len(data) > 0 or start > end:
                return self._send(unsatisfiable, endpoint)
            status = 206
            headers["Content-Range"] = f"bytes {start}-{max(start, end - 1)}/{len(data)}"
        headers["Accept-Ranges"] = "bytes"
        self._send(Response(status, data[start:end], headers, "application/octet-stream"), endpoint)

    def _json(self) -> Any:
        return json.loads(self.body or b"{}")

    # ---- routes ----------------------------------------------------------------------------

    def r_whoami(self, p: dict[str, str]) -> Response:
        if not self._authorized():
            raise HubError(401, "Invalid credentials in Authorization header")
        return self.hub.whoami()

    def r_agent_harnesses(self, p: dict[str, str]) -> Response:
        # Registry of AI-agent environment variables the client fetches for telemetry: empty here.
        return Response(200, {"standardEnvVars": [], "harnesses": {}})

    def r_create_repo(self, p: dict[str, str]) -> Response:
        return self.hub.create_repo(self._json())

    def r_validate_yaml(self, p: dict[str, str]) -> Response:
        payload = self._json()
        errors, warnings = validate_readme(str(payload.get("content", "")))
        if "text/plain" in self.headers.get("Accept", ""):  # `RepoCard.validate` asks for text
            text = "\n".join(f"- {e}" for e in errors)
            return Response(400 if errors else 200, text.encode(), content_type="text/plain; charset=utf-8")
        body = {"errors": [{"message": e} for e in errors], "warnings": [{"message": w} for w in warnings]}
        return Response(400 if errors else 200, body)

    def r_info(self, p: dict[str, str]) -> Response:
        blobs = self.query.get("blobs", "").lower() in ("1", "true")
        return self.hub.repo_info(p["type"][:-1], p["repo"], p["rev"] or "main", blobs)

    def r_tree(self, p: dict[str, str]) -> Response:
        return self.hub.list_tree(p["type"][:-1], p["repo"], p["rev"], p["path"], self.query)

    def r_paths_info(self, p: dict[str, str]) -> Response:
        if self.headers.get("Content-Type", "").startswith("application/json"):
            paths = self._json().get("paths") or []
        else:
            paths = parse_qs(self.body.decode()).get("paths", [])
        return self.hub.paths_info(p["type"][:-1], p["repo"], p["rev"], paths)

    def r_preupload(self, p: dict[str, str]) -> Response:
        return self.hub.preupload(p["type"][:-1], p["repo"], p["rev"], self._json())

    def r_commit(self, p: dict[str, str]) -> Response:
        return self.hub.commit(p["type"][:-1], p["repo"], p["rev"], self.body, self.query)

    def r_lfs_batch(self, p: dict[str, str]) -> Response:
        return self.hub.lfs_batch(_url_type(p), p["repo"], self._json())

    def r_lfs_verify(self, p: dict[str, str]) -> Response:
        return self.hub.lfs_verify(_url_type(p), p["repo"], self._json())

    def r_resolve(self, p: dict[str, str]) -> Response | None:
        commit, blob = self.hub.resolve(_url_type(p), p["repo"], p["rev"], p["path"])
        headers = {"X-Repo-Commit": commit.oid}
        if blob.lfs and self.hub.lfs_redirect:
            headers.update(
                {
                    "Location": f"{self.hub.storage_url}/lfs/{_url_type(p)}s/{p['repo']}/{blob.sha256}",
                    "X-Linked-Etag": f'"{blob.sha256}"',
                    "X-Linked-Size": str(blob.size),
                    "ETag": f'"{blob.git_oid}"',
                }
            )
            return Response(302, b"Found. Redirecting", headers, "text/plain; charset=utf-8")
        headers["ETag"] = f'"{blob.sha256 if blob.lfs else blob.git_oid}"'
        self._send_file(blob.data, headers, "resolve")
        return None

    def r_lfs_upload(self, p: dict[str, str]) -> Response:
        return self.hub.lfs_put(p["type"][:-1], p["repo"], p["oid"], self.body)

    def r_lfs_download(self, p: dict[str, str]) -> Response | None:
        data = self.hub.lfs_object(p["type"][:-1], p["repo"], p["oid"])
        self._send_file(data, {"ETag": f'"{p["oid"]}"'}, "lfs_download")
        return None


def _url_type(params: Mapping[str, str]) -> str:
    """Repo type from a URL prefix ("" for models, "datasets", "spaces")."""
    return params["type"][:-1] if params.get("type") else "model"


def _route(methods: str, pattern: str, endpoint: str, handler: Callable[..., Response | None]) -> Route:
    return (methods, re.compile(pattern), endpoint, handler)


_REV = r"(?P<rev>[^/]+)"
API_ROUTES: list[Route] = [
    _route("GET", r"/api/whoami-v2", "whoami", _Handler.r_whoami),
    _route("GET", r"/api/agent-harnesses", "agent_harnesses", _Handler.r_agent_harnesses),
    _route("POST", r"/api/repos/create", "create_repo", _Handler.r_create_repo),
    _route("POST", r"/api/validate-yaml", "validate_yaml", _Handler.r_validate_yaml),
    _route("GET", _API_TYPE + _REPO + r"(?:/revision/" + _REV + r")?", "info", _Handler.r_info),
    _route("GET", _API_TYPE + _REPO + r"/tree/" + _REV + r"(?:/(?P<path>.*))?", "tree", _Handler.r_tree),
    _route("POST", _API_TYPE + _REPO + r"/paths-info/" + _REV, "paths_info", _Handler.r_paths_info),
    _route("POST", _API_TYPE + _REPO + r"/preupload/" + _REV, "preupload", _Handler.r_preupload),
    _route("POST", _API_TYPE + _REPO + r"/commit/" + _REV, "commit", _Handler.r_commit),
    _route("POST", _URL_TYPE + _REPO + r"\.git/info/lfs/objects/batch", "lfs_batch", _Handler.r_lfs_batch),
    _route("POST", _URL_TYPE + _REPO + r"\.git/info/lfs/objects/verify", "lfs_verify", _Handler.r_lfs_verify),
    _route("GET|HEAD", _URL_TYPE + _REPO + r"/resolve/" + _REV + r"/(?P<path>.+)", "resolve", _Handler.r_resolve),
]
_STORAGE_PATH = r"/lfs/(?P<type>models|datasets|spaces)/" + _REPO + r"/(?P<oid>[0-9a-f]{64})"
STORAGE_ROUTES: list[Route] = [
    _route("PUT", _STORAGE_PATH, "lfs_upload", _Handler.r_lfs_upload),
    _route("GET|HEAD", _STORAGE_PATH, "lfs_download", _Handler.r_lfs_download),
]
