"""A small stand-in for the Hugging Face Hub HTTP API, for the push/pull tests.

No machine of this project reaches huggingface.co, so the tests start this server on 127.0.0.1
and point the *real* `huggingface_hub` client at it (`HF_ENDPOINT`, with `HF_HUB_DISABLE_XET=1`
so that large files go through plain Git LFS). It implements only what `push_to_hub`,
`upload_folder`, `ModelCard.validate/push_to_hub`, `model_info`, `snapshot_download` and
transformers' `from_pretrained` use (huggingface_hub 2.4; see shared/notes/hub-protocol.md):

| method    | path                                         | used by                                  |
|-----------|----------------------------------------------|------------------------------------------|
| POST      | /api/repos/create                            | `create_repo` (409 + url if it exists)   |
| POST      | /api/validate-yaml                           | commits of a README.md, `card.validate()`|
| GET       | /api/models/{repo}[/revision/{rev}]          | `model_info`, downloads                  |
| GET       | /api/models/{repo}/tree/{rev}[/{folder}]     | `snapshot_download`, `list_repo_files`   |
| POST      | /api/models/{repo}/preupload/{rev}           | upload mode of each file: regular or lfs |
| POST      | /{repo}.git/info/lfs/objects/batch           | Git LFS batch API (upload)               |
| PUT       | /lfs/{repo}/{sha256}                         | the LFS upload itself (sha256 checked)   |
| POST      | /api/models/{repo}/commit/{rev}              | the ndjson commit                        |
| HEAD, GET | /{repo}/resolve/{rev}/{path}                 | file metadata and download               |

Rules, which are this server's and not necessarily the Hub's:

* A new repo has one commit on `main`: a `.gitattributes` with the Hub's default LFS patterns. A file is
  uploaded through LFS when its name matches one of those patterns (`*.safetensors`, `*.bin`, ...),
  its first 512 bytes contain a NUL byte, or it is larger than 10 MiB; otherwise it is inlined.
* Every commit is an immutable snapshot {path: Blob}; `main` points at the newest. A commit is
  checked completely (every `lfsFile` uploaded, with its size) before `main` moves, so a failed
  request leaves the repo at its previous commit. Revisions are `main` or a full commit sha.
* Missing repo / revision / file answer 404 with `X-Error-Code: RepoNotFound` /
  `RevisionNotFound` / `EntryNotFound`: the client turns these into typed errors, and transformers
  relies on `EntryNotFound` when it probes optional files.
* No auth, private repos, pull requests, Xet, datasets or spaces; LFS files are served directly
  (no redirect to a storage origin) and `Range` headers are ignored (the client accepts a 200).

Failure injection: `server.fail_next("commit", status=500)` makes the next request to that
endpoint (a name of `ROUTES`) answer `status` without doing anything.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import json
import re
import threading
from collections import Counter
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from tests.hub_metadata import card_data, validate_readme

LFS_SIZE_THRESHOLD = 10 * 1024 * 1024
LFS_PATTERNS = (
    "*.7z *.arrow *.bin *.bz2 *.ckpt *.ftz *.gz *.h5 *.joblib *.lfs.* *.mlmodel *.model *.msgpack *.npy *.npz "
    "*.onnx *.ot *.parquet *.pb *.pickle *.pkl *.pt *.pth *.rar *.safetensors *.tar.* *.tar *.tflite *.tgz "
    "*.wasm *.xz *.zip *.zst *tfevents*"
).split()
# The `.gitattributes` the Hub commits in every new model repo.
DEFAULT_GITATTRIBUTES = "".join(f"{p} filter=lfs diff=lfs merge=lfs -text\n" for p in LFS_PATTERNS).encode()


@dataclass(frozen=True)
class Blob:
    """One file of one commit, and whether it was uploaded through LFS."""

    data: bytes
    lfs: bool

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def pointer(self) -> bytes:
        """The Git LFS pointer file that git stores in place of an LFS file."""
        return f"version https://git-lfs.github.com/spec/v1\noid sha256:{self.sha256}\nsize {len(self.data)}\n".encode()

    @property
    def git_oid(self) -> str:
        """The git blob id of the file (of its LFS pointer for an LFS file), as the Hub reports it."""
        stored = self.pointer if self.lfs else self.data
        return hashlib.sha1(b"blob %d\0" % len(stored) + stored).hexdigest()

    @property
    def etag(self) -> str:
        """What the client keys its cache on: the sha256 of an LFS file, the git blob id otherwise."""
        return self.sha256 if self.lfs else self.git_oid


@dataclass
class Repo:
    """A model repo: its commits (immutable snapshots), its `main` branch and its LFS objects."""

    commits: dict[str, dict[str, Blob]] = field(default_factory=dict)  # sha -> snapshot
    main: str = ""  # sha `main` points at
    lfs_objects: dict[str, bytes] = field(default_factory=dict)  # sha256 -> content


@dataclass
class Request:
    """What an endpoint gets of an HTTP request besides the path parameters."""

    query: dict[str, str]
    body: bytes
    headers: Message


class HubError(Exception):
    """An error answer: HTTP status, message and the Hub's `X-Error-Code`."""

    def __init__(self, status: int, message: str, error_code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.error_code = status, message, error_code


class HubServer:
    """The local Hub's state, its test helpers and its HTTP listener."""

    def __init__(self, port: int = 0, username: str = "user") -> None:
        self.port = port
        self.username = username
        self._repos: dict[str, Repo] = {}
        self._failures: dict[str, int] = {}  # endpoint -> status to answer next time
        self._calls: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> HubServer:
        self._httpd = ThreadingHTTPServer(("127.0.0.1", self.port), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.block_on_close = False  # do not wait for idle keep-alive connections
        self._httpd.hub = self  # type: ignore[attr-defined]
        self.port = self._httpd.server_address[1]
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    # ---- for tests ---------------------------------------------------------------------------

    def fail_next(self, endpoint: str, status: int = 500) -> None:
        """The next request to `endpoint` (a name in `ROUTES`) answers `status` and changes nothing."""
        if endpoint not in {name for _, _, name in ROUTES}:
            raise ValueError(f"unknown endpoint {endpoint!r}")
        with self._lock:
            self._failures[endpoint] = status

    def clear_failures(self) -> None:
        with self._lock:
            self._failures.clear()

    def calls(self, endpoint: str) -> int:
        """How many requests reached `endpoint` (failed ones included)."""
        with self._lock:
            return self._calls[endpoint]

    def head(self, repo_id: str) -> str:
        """The commit sha `main` points at."""
        with self._lock:
            return self._repo(repo_id).main

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        """{path: content} of the snapshot at `revision`."""
        with self._lock:
            _, snapshot = self._snapshot(self._repo(repo_id), revision)
        return {path: blob.data for path, blob in snapshot.items()}

    # ---- state -------------------------------------------------------------------------------

    def _repo(self, repo_id: str) -> Repo:
        if repo_id not in self._repos:
            raise HubError(404, f"Repository not found: {repo_id}", "RepoNotFound")
        return self._repos[repo_id]

    @staticmethod
    def _snapshot(repo: Repo, revision: str) -> tuple[str, dict[str, Blob]]:
        sha = repo.main if revision == "main" else revision
        if sha not in repo.commits:
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return sha, repo.commits[sha]

    def _add_commit(self, repo_id: str, repo: Repo, files: dict[str, Blob]) -> str:
        sha = hashlib.sha1(f"{repo_id}\0{len(repo.commits)}\0{repo.main}".encode()).hexdigest()
        repo.commits[sha] = files
        repo.main = sha
        return sha

    # ---- endpoints -----------------------------------------------------------------------------
    # Each takes the request and the route's parameters and returns (status, answer[, headers]),
    # the answer being bytes or a JSON document; errors are raised as `HubError`.

    def create_repo(self, request: Request) -> tuple[int, Any]:
        payload = json.loads(request.body)
        repo_id = f"{payload.get('organization') or self.username}/{payload['name']}"
        url = f"{self.url}/{repo_id}"
        with self._lock:
            if repo_id in self._repos:
                return 409, {"error": "You already created this model repo", "url": url}
            repo = self._repos[repo_id] = Repo()
            self._add_commit(repo_id, repo, {".gitattributes": Blob(DEFAULT_GITATTRIBUTES, lfs=False)})
        return 200, {"url": url, "name": repo_id}

    def validate_yaml(self, request: Request) -> tuple[int, Any]:
        errors, warnings = validate_readme(str(json.loads(request.body).get("content", "")))
        status = 400 if errors else 200
        if "text/plain" in request.headers.get("Accept", ""):  # `RepoCard.validate()` asks for the errors as text
            return status, "\n".join(f"- {e}" for e in errors).encode(), {"Content-Type": "text/plain; charset=utf-8"}
        return status, {"errors": [{"message": e} for e in errors], "warnings": [{"message": w} for w in warnings]}

    def info(self, request: Request, repo: str, rev: str) -> tuple[int, Any]:
        with self._lock:
            sha, snapshot = self._snapshot(self._repo(repo), rev or "main")
        card = card_data(snapshot["README.md"].data) if "README.md" in snapshot else None
        info: dict[str, Any] = {"id": repo, "modelId": repo, "sha": sha, "private": False}
        info["siblings"] = [{"rfilename": path} for path in sorted(snapshot)]
        if card:
            info["cardData"] = card
            tags = card.get("tags") or []
            info["tags"] = [tags] if isinstance(tags, str) else tags
            info.update({k: card[k] for k in ("pipeline_tag", "library_name") if isinstance(card.get(k), str)})
        return 200, info

    def tree(self, request: Request, repo: str, rev: str, folder: str) -> tuple[int, Any]:
        """Files and folders under `folder`: direct children, or all of them with `recursive=true`."""
        with self._lock:
            _, snapshot = self._snapshot(self._repo(repo), rev)
        prefix = folder.strip("/") + "/" if folder.strip("/") else ""
        if prefix and not any(path.startswith(prefix) for path in snapshot):
            raise HubError(404, f"Folder {folder!r} does not exist", "EntryNotFound")
        recursive = request.query.get("recursive", "").lower() == "true"
        files, folders = [], set()
        for path, blob in sorted(snapshot.items()):
            if not path.startswith(prefix):
                continue
            parts = path[len(prefix) :].split("/")
            if recursive:
                folders.update(prefix + "/".join(parts[:depth]) for depth in range(1, len(parts)))
            elif len(parts) > 1:
                folders.add(prefix + parts[0])
                continue
            entry = {"type": "file", "path": path, "oid": blob.git_oid, "size": len(blob.data)}
            if blob.lfs:
                entry["lfs"] = {"oid": blob.sha256, "size": len(blob.data), "pointerSize": len(blob.pointer)}
            files.append(entry)
        oid = lambda folder: hashlib.sha1(folder.encode()).hexdigest()  # noqa: E731 - stable, not git's tree id
        return 200, [{"type": "directory", "path": f, "oid": oid(f), "size": 0} for f in sorted(folders)] + files

    def preupload(self, request: Request, repo: str, rev: str) -> tuple[int, Any]:
        with self._lock:
            self._snapshot(self._repo(repo), rev)  # 404s for a missing repo or revision
        answers = []
        for item in json.loads(request.body)["files"]:
            name = item["path"].rsplit("/", 1)[-1]
            lfs = (
                any(fnmatch.fnmatchcase(name, pattern) for pattern in LFS_PATTERNS)
                or b"\0" in base64.b64decode(item.get("sample") or "")
                or item.get("size", 0) > LFS_SIZE_THRESHOLD
            )
            answers.append({"path": item["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False})
        return 200, {"files": answers}

    def lfs_batch(self, request: Request, repo: str) -> tuple[int, Any]:
        """Git LFS batch API: an upload action for each object not stored yet."""
        objects = []
        with self._lock:
            stored = set(self._repo(repo).lfs_objects)
        for obj in json.loads(request.body)["objects"]:
            answer = {"oid": obj["oid"], "size": obj["size"]}
            if obj["oid"] not in stored:
                answer["actions"] = {"upload": {"href": f"{self.url}/lfs/{repo}/{obj['oid']}"}}
            objects.append(answer)
        return 200, {"transfer": "basic", "objects": objects, "hash_algo": "sha256"}

    def lfs_upload(self, request: Request, repo: str, oid: str) -> tuple[int, Any]:
        if hashlib.sha256(request.body).hexdigest() != oid:
            raise HubError(400, f"Uploaded content does not match sha256 {oid}")
        with self._lock:
            self._repo(repo).lfs_objects[oid] = request.body
        return 200, b""

    def commit(self, request: Request, repo: str, rev: str) -> tuple[int, Any]:
        """Apply an ndjson commit (header, file, lfsFile, deletedFile, deletedFolder) all or nothing."""
        header, *operations = [json.loads(line) for line in request.body.splitlines() if line.strip()]
        if header["key"] != "header" or rev != "main":
            raise HubError(400, "expected a header line and a commit to main")
        with self._lock:
            state = self._repo(repo)
            files = dict(state.commits[state.main])
            for operation in operations:
                key, value = operation["key"], operation["value"]
                path = value["path"]
                if key == "file":
                    files[path] = Blob(base64.b64decode(value["content"]), lfs=False)
                elif key == "lfsFile":
                    data = state.lfs_objects.get(value["oid"])
                    if data is None or len(data) != value["size"]:
                        raise HubError(400, f"LFS object of {path} was not uploaded (sha256 {value['oid']})")
                    files[path] = Blob(data, lfs=True)
                elif key == "deletedFile" and path in files:
                    del files[path]
                elif key == "deletedFolder":
                    files = {p: b for p, b in files.items() if not p.startswith(path.rstrip("/") + "/")}
                else:
                    raise HubError(400, f"cannot apply {key} to {path}")
            sha = self._add_commit(repo, state, files)
        return 200, {"commitOid": sha, "commitUrl": f"{self.url}/{repo}/commit/{sha}"}

    def resolve(self, request: Request, repo: str, rev: str, path: str) -> tuple[int, Any, dict]:
        with self._lock:
            sha, snapshot = self._snapshot(self._repo(repo), rev)
        if path not in snapshot:
            raise HubError(404, f"Entry not found: {path}", "EntryNotFound")
        blob = snapshot[path]
        return 200, blob.data, {"X-Repo-Commit": sha, "ETag": f'"{blob.etag}"'}


_REPO = r"(?P<repo>[\w.\-]+/[\w.\-]+)"
_API = r"/api/models/" + _REPO
ROUTES = [  # (methods, path pattern, endpoint = HubServer method)
    ("POST", r"/api/repos/create", "create_repo"),
    ("POST", r"/api/validate-yaml", "validate_yaml"),
    ("GET", _API + r"(?:/revision/(?P<rev>[^/]+))?", "info"),
    ("GET", _API + r"/tree/(?P<rev>[^/]+)(?:/(?P<folder>.*))?", "tree"),
    ("POST", _API + r"/preupload/(?P<rev>[^/]+)", "preupload"),
    ("POST", _API + r"/commit/(?P<rev>[^/]+)", "commit"),
    ("POST", "/" + _REPO + r"\.git/info/lfs/objects/batch", "lfs_batch"),
    ("PUT", r"/lfs/" + _REPO + r"/(?P<oid>[0-9a-f]{64})", "lfs_upload"),
    ("GET HEAD", "/" + _REPO + r"/resolve/(?P<rev>[^/]+)/(?P<path>.+)", "resolve"),
]


def _route(method: str, path: str) -> tuple[str, re.Match[str] | None]:
    """The endpoint name and path match of the first route for this request, if any."""
    for methods, pattern, endpoint in ROUTES:
        match = re.fullmatch(pattern, path)
        if match and method in methods.split():
            return endpoint, match
    return "", None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the client expects
    timeout = 60

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def do_GET(self) -> None:
        self._dispatch()

    do_HEAD = do_POST = do_PUT = do_GET

    def _dispatch(self) -> None:
        hub: HubServer = self.server.hub  # type: ignore[attr-defined]
        split = urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))  # the client always sends one
        endpoint, match = _route(self.command, split.path)
        if match is None:
            return self._answer(404, {"error": f"not implemented: {self.command} {split.path}"})
        with hub._lock:
            hub._calls[endpoint] += 1
            failure = hub._failures.pop(endpoint, None)
        if failure is not None:
            return self._answer(failure, {"error": "Injected failure (test hub)"})
        params = {key: unquote(value) for key, value in match.groupdict(default="").items()}
        query = {key: values[-1] for key, values in parse_qs(split.query).items()}
        try:
            status, answer, *headers = getattr(hub, endpoint)(Request(query, body, self.headers), **params)
        except HubError as error:
            headers = [{"X-Error-Message": error.message}]
            if error.error_code:
                headers[0]["X-Error-Code"] = error.error_code
            status, answer = error.status, {"error": error.message}
        self._answer(status, answer, *headers)

    def _answer(self, status: int, answer: Any, extra_headers: dict[str, str] | None = None) -> None:
        data = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
        headers = {"Content-Type": "application/octet-stream" if isinstance(answer, bytes) else "application/json"}
        headers.update(extra_headers or {})
        headers["Content-Length"] = str(len(data))
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
