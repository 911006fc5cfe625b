"""Sharing on the Hub: the real `huggingface_hub` client against the local Hub (`hub_server.py`).

Part 1 needs no model: push/pull round trips, revisions, typed errors, atomic commits under
injected failures. Part 2 pushes the project's model and tokenizer and loads them back in a fresh
process in which `hf_vanilla_transformer` cannot be imported (remote code, custom pipeline).
"""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

import httpx2
import pytest
from huggingface_hub import CommitOperationAdd, HfApi, hf_hub_download, snapshot_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils.sha import git_hash

from tests.hub_helpers import require_model, result_of, run_isolated, tiny_translation_model, write_corpus

pytestmark = [
    pytest.mark.timeout(60),
    # huggingface_hub's own LFS upload passes a file object as `data=` to httpx2: not ours to fix.
    pytest.mark.filterwarnings("ignore:Use 'content=<...>' to upload raw bytes:DeprecationWarning"),
]

# ---- helpers ----------------------------------------------------------------------------------


def write_files(folder: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return folder


def read_tree(folder: Path) -> dict[str, bytes]:
    """{relative posix path: bytes} of every file under `folder`."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def sample_files(seed: bytes = b"v1") -> dict[str, bytes]:
    """A model-like folder: LFS by pattern (.safetensors), LFS by content (binary), regular files."""
    weights = hashlib.sha256(seed).digest() * 2048  # 64 KiB of binary
    return {
        "model.safetensors": weights,
        "data/table.dat": b"\0\1\2" + seed * 100,  # binary content, no LFS pattern
        "config.json": json.dumps({"seed": seed.decode(), "d_model": 32}).encode(),
        "notes/readme.txt": b"regular text file " + seed + b"\n",
    }


def http(method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None):
    """A raw request (status, headers, body) that does not raise on HTTP errors."""
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


AUTH = {"Authorization": "Bearer hf_local_test_token"}


def ndjson(*lines: dict) -> bytes:
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


@pytest.fixture(autouse=True)
def _clear_injected_failures(hub_server):
    """A failure a test injected but the client never triggered must not leak into the next test."""
    yield
    hub_server.clear_failures()


@pytest.fixture
def api(hub_server) -> HfApi:
    return HfApi(endpoint=hub_server.url)


@pytest.fixture
def pushed_repo(api: HfApi, hub_repo_id: str, tmp_path: Path) -> tuple[str, str, dict[str, bytes]]:
    """A repo with one upload of `sample_files()`: (repo_id, commit sha, files)."""
    files = sample_files()
    api.create_repo(hub_repo_id)
    info = api.upload_folder(repo_id=hub_repo_id, folder_path=write_files(tmp_path / "v1", files))
    return hub_repo_id, info.oid, files


def assert_unchanged(hub_server, repo_id: str, sha: str, files: dict[str, bytes]) -> None:
    assert hub_server.head(repo_id) == sha
    stored = hub_server.files(repo_id)
    assert {k: v for k, v in stored.items() if k != ".gitattributes"} == files


# ---- part 1: the protocol, without the model ----------------------------------------------------


def test_upload_folder_then_snapshot_download_into_empty_cache(hub_server, api, pushed_repo, tmp_path):
    repo_id, sha, files = pushed_repo
    info = api.model_info(repo_id, files_metadata=True)
    assert info.sha == sha
    lfs = {s.rfilename for s in info.siblings if s.lfs is not None}
    assert lfs == {"model.safetensors", "data/table.dat"}  # by .gitattributes pattern / by binary content
    assert {s.rfilename for s in info.siblings} == set(files) | {".gitattributes"}

    cache = tmp_path / "empty-cache"
    snapshot = Path(snapshot_download(repo_id, cache_dir=cache))
    assert snapshot.name == sha
    pulled = read_tree(snapshot)
    assert pulled.pop(".gitattributes").startswith(b"*.7z filter=lfs")
    assert pulled == files

    # Single-file download of an LFS file (302 to the storage origin) and of a regular one.
    assert (
        Path(hf_hub_download(repo_id, "model.safetensors", cache_dir=tmp_path / "c2")).read_bytes()
        == files["model.safetensors"]
    )
    assert (
        Path(hf_hub_download(repo_id, "notes/readme.txt", cache_dir=tmp_path / "c2")).read_bytes()
        == files["notes/readme.txt"]
    )


def test_unchanged_files_are_not_uploaded_again(hub_server, api, pushed_repo, tmp_path):
    repo_id, sha, files = pushed_repo
    puts = hub_server.calls("lfs_upload")
    changed = {**files, "config.json": b'{"changed": true}'}
    info = api.upload_folder(repo_id=repo_id, folder_path=write_files(tmp_path / "v2", changed))
    assert info.oid != sha
    assert hub_server.calls("lfs_upload") == puts  # preupload oids let the client skip unchanged files
    assert hub_server.files(repo_id)["config.json"] == b'{"changed": true}'


def test_resolve_headers_redirect_and_range(hub_server, pushed_repo):
    repo_id, sha, files = pushed_repo
    status, headers, _ = http("HEAD", f"{hub_server.url}/{repo_id}/resolve/main/config.json")
    assert status == 200
    assert headers["X-Repo-Commit"] == sha
    assert headers["Content-Length"] == str(len(files["config.json"]))
    assert headers["ETag"] == f'"{git_hash(files["config.json"])}"'  # the git blob id, as the client computes it
    assert not any(name.lower().startswith("x-xet") for name in headers)

    request = urllib.request.Request(f"{hub_server.url}/{repo_id}/resolve/{sha}/model.safetensors", method="HEAD")
    opener = urllib.request.build_opener(_NoRedirect())
    with pytest.raises(urllib.error.HTTPError) as redirect:
        opener.open(request, timeout=30)
    weights = files["model.safetensors"]
    assert redirect.value.code == 302
    assert redirect.value.headers["X-Linked-Etag"] == f'"{hashlib.sha256(weights).hexdigest()}"'
    assert redirect.value.headers["X-Linked-Size"] == str(len(weights))
    location = redirect.value.headers["Location"]
    assert location.startswith(hub_server.storage_url)

    status, headers, body = http("GET", location, headers={"Range": "bytes=10-19"})
    assert (status, body, headers["Content-Range"]) == (206, weights[10:20], f"bytes 10-19/{len(weights)}")
    status, _, body = http("GET", f"{hub_server.url}/{repo_id}/resolve/main/config.json", headers={"Range": "bytes=-5"})
    assert (status, body) == (206, files["config.json"][-5:])


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def test_revision_pins_an_older_commit(hub_server, api, pushed_repo, tmp_path):
    repo_id, first_sha, first_files = pushed_repo
    second_files = sample_files(b"v2")
    second = api.upload_folder(repo_id=repo_id, folder_path=write_files(tmp_path / "v2", second_files))
    assert second.oid != first_sha
    assert hub_server.history(repo_id)[:2] == [second.oid, first_sha]

    old = Path(snapshot_download(repo_id, revision=first_sha, cache_dir=tmp_path / "cache"))
    new = Path(snapshot_download(repo_id, cache_dir=tmp_path / "cache"))
    assert (old.name, new.name) == (first_sha, second.oid)
    assert {k: v for k, v in read_tree(old).items() if k != ".gitattributes"} == first_files
    assert {k: v for k, v in read_tree(new).items() if k != ".gitattributes"} == second_files
    pinned = hf_hub_download(repo_id, "model.safetensors", revision=first_sha, cache_dir=tmp_path / "c2")
    assert Path(pinned).read_bytes() == first_files["model.safetensors"]
    assert api.model_info(repo_id, revision=first_sha).sha == first_sha
    assert api.model_info(repo_id, revision=first_sha[:7]).sha == first_sha  # short sha


def test_typed_errors_for_missing_repo_file_and_revision(api, pushed_repo, tmp_path):
    repo_id, _, _ = pushed_repo
    with pytest.raises(RepositoryNotFoundError):
        api.model_info("user/does-not-exist")
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("user/does-not-exist", "config.json", cache_dir=tmp_path)
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(repo_id, "missing.json", cache_dir=tmp_path)
    with pytest.raises(EntryNotFoundError):
        list(api.list_repo_tree(repo_id, path_in_repo="no-such-folder"))
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(repo_id, "config.json", revision="no-such-branch", cache_dir=tmp_path)
    with pytest.raises(RevisionNotFoundError):
        snapshot_download(repo_id, revision="0" * 40, cache_dir=tmp_path)
    with pytest.raises(RevisionNotFoundError):
        api.model_info(repo_id, revision="no-such-branch")


def test_create_repo_conflict_and_exist_ok(api, hub_repo_id):
    url = api.create_repo(hub_repo_id)
    with pytest.raises(HfHubHTTPError) as conflict:
        api.create_repo(hub_repo_id)
    assert conflict.value.response.status_code == 409
    assert api.create_repo(hub_repo_id, exist_ok=True) == url
    assert url.repo_id == hub_repo_id
    assert api.whoami()["name"] == hub_repo_id.split("/")[0]


def test_tree_listing_recursive_paths_and_pagination(hub_server, api, pushed_repo, monkeypatch):
    repo_id, _, files = pushed_repo
    monkeypatch.setattr(hub_server, "tree_page_size", 2)  # force several pages (Link: rel="next")
    recursive = {e.path for e in api.list_repo_tree(repo_id, recursive=True)}
    assert recursive == set(files) | {".gitattributes", "data", "notes"}
    root = {e.path for e in api.list_repo_tree(repo_id)}
    assert root == {".gitattributes", "config.json", "model.safetensors", "data", "notes"}
    assert [e.path for e in api.list_repo_tree(repo_id, path_in_repo="notes")] == ["notes/readme.txt"]
    (weights,) = api.get_paths_info(repo_id, ["model.safetensors"])
    assert weights.lfs.sha256 == hashlib.sha256(files["model.safetensors"]).hexdigest()


def test_failed_lfs_upload_leaves_repo_at_previous_commit(hub_server, api, pushed_repo, tmp_path):
    repo_id, sha, files = pushed_repo
    commits_before = hub_server.calls("commit")
    # The second LFS PUT is refused, as an expired pre-signed URL would be (403: not retried).
    hub_server.fail_next("lfs_upload", status=403, skip=1, message="Request has expired")
    with pytest.raises(RuntimeError, match="Error while uploading"):
        api.upload_folder(repo_id=repo_id, folder_path=write_files(tmp_path / "v2", sample_files(b"v2")))
    assert hub_server.calls("commit") == commits_before  # the client never sent the commit
    assert_unchanged(hub_server, repo_id, sha, files)


def test_commit_request_dying_midway_leaves_repo_at_previous_commit(hub_server, api, pushed_repo, tmp_path):
    repo_id, sha, files = pushed_repo
    new_files = sample_files(b"v2")
    hub_server.fail_next("commit", drop=True)  # half of the ndjson arrives, then the connection closes
    with pytest.raises(httpx2.TransportError):  # huggingface_hub's HTTP library; commits are not retried
        api.upload_folder(repo_id=repo_id, folder_path=write_files(tmp_path / "v2", new_files))
    assert_unchanged(hub_server, repo_id, sha, files)

    hub_server.fail_next("commit", status=500)
    with pytest.raises(HfHubHTTPError):
        api.upload_folder(repo_id=repo_id, folder_path=tmp_path / "v2")
    assert_unchanged(hub_server, repo_id, sha, files)

    retry = api.upload_folder(repo_id=repo_id, folder_path=tmp_path / "v2")  # LFS objects are reused
    assert hub_server.head(repo_id) == retry.oid != sha
    assert {k: v for k, v in hub_server.files(repo_id).items() if k != ".gitattributes"} == new_files


def test_transient_lfs_failure_is_retried(hub_server, api, hub_repo_id, tmp_path):
    api.create_repo(hub_repo_id)
    hub_server.fail_next("lfs_upload", status=503)  # the client backs off 1 s and retries
    files = {"weights.bin": b"\0" * 1000 + b"x"}
    info = api.upload_folder(repo_id=hub_repo_id, folder_path=write_files(tmp_path, files))
    assert hub_server.head(hub_repo_id) == info.oid
    assert hub_server.files(hub_repo_id)["weights.bin"] == files["weights.bin"]


def test_parent_commit_mismatch_is_rejected(hub_server, api, pushed_repo):
    repo_id, sha, files = pushed_repo
    api.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=repo_id)
    head = hub_server.head(repo_id)
    with pytest.raises(HfHubHTTPError) as stale:
        api.create_commit(
            repo_id,
            operations=[CommitOperationAdd("y.txt", b"y")],
            commit_message="based on a stale parent",
            parent_commit=sha,
        )
    assert stale.value.response.status_code == 412
    assert hub_server.head(repo_id) == head


# ---- part 1b: the server's own checks, with raw HTTP ---------------------------------------------


def test_commit_with_missing_lfs_object_is_rejected_atomically(hub_server, pushed_repo):
    repo_id, sha, files = pushed_repo
    missing = hashlib.sha256(b"never uploaded").hexdigest()
    body = ndjson(
        {"key": "header", "value": {"summary": "half valid"}},
        {"key": "file", "value": {"path": "ok.txt", "encoding": "base64", "content": base64.b64encode(b"ok").decode()}},
        {"key": "deletedFile", "value": {"path": "config.json"}},
        {"key": "lfsFile", "value": {"path": "w.bin", "algo": "sha256", "oid": missing, "size": 14}},
    )
    status, _, answer = http(
        "POST",
        f"{hub_server.url}/api/models/{repo_id}/commit/main",
        body,
        {**AUTH, "Content-Type": "application/x-ndjson"},
    )
    assert status == 400 and b"does not exist" in answer
    assert_unchanged(hub_server, repo_id, sha, files)  # neither ok.txt nor the deletion applied


def test_lfs_put_checks_sha256_and_size(hub_server, pushed_repo):
    repo_id, sha, files = pushed_repo
    content = b"\0real content"
    oid = hashlib.sha256(content).hexdigest()
    batch = json.dumps(
        {
            "operation": "upload",
            "transfers": ["basic"],
            "hash_algo": "sha256",
            "objects": [{"oid": oid, "size": len(content)}],
        }
    ).encode()
    status, _, answer = http(
        "POST",
        f"{hub_server.url}/{repo_id}.git/info/lfs/objects/batch",
        batch,
        {**AUTH, "Content-Type": "application/vnd.git-lfs+json"},
    )
    assert status == 200
    href = json.loads(answer)["objects"][0]["actions"]["upload"]["href"]
    status, _, _ = http("PUT", href, b"\0forged content")
    assert status == 400
    commit = ndjson(
        {"key": "header", "value": {"summary": "uses a forged object"}},
        {"key": "lfsFile", "value": {"path": "w.bin", "algo": "sha256", "oid": oid, "size": len(content)}},
    )
    status, _, _ = http(
        "POST",
        f"{hub_server.url}/api/models/{repo_id}/commit/main",
        commit,
        {**AUTH, "Content-Type": "application/x-ndjson"},
    )
    assert status == 400
    assert_unchanged(hub_server, repo_id, sha, files)

    assert http("PUT", href, content)[0] == 200
    assert (
        http(
            "POST",
            f"{hub_server.url}/api/models/{repo_id}/commit/main",
            commit,
            {**AUTH, "Content-Type": "application/x-ndjson"},
        )[0]
        == 200
    )
    assert hub_server.files(repo_id)["w.bin"] == content


def test_truncated_commit_request_is_not_applied(hub_server, pushed_repo):
    repo_id, sha, files = pushed_repo
    body = ndjson(
        {"key": "header", "value": {"summary": "truncated"}}, {"key": "deletedFile", "value": {"path": "config.json"}}
    )
    head = (
        f"POST /api/models/{repo_id}/commit/main HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer t\r\nContent-Type: application/x-ndjson\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    before = len(hub_server.request_log)
    with socket.create_connection(("127.0.0.1", hub_server.port), timeout=10) as sock:
        sock.sendall(head + body[: len(body) // 2])  # the client dies midway
    deadline = time.monotonic() + 10
    while not any(e[0] == "commit" for e in hub_server.request_log[before:]) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert ("commit", "POST", f"/api/models/{repo_id}/commit/main", 0) in hub_server.request_log[before:]
    assert_unchanged(hub_server, repo_id, sha, files)


def test_writes_need_a_token(hub_server, hub_repo_id):
    payload = json.dumps({"name": hub_repo_id.split("/")[1]}).encode()
    status, _, _ = http("POST", f"{hub_server.url}/api/repos/create", payload, {"Content-Type": "application/json"})
    assert status == 401


# ---- part 2: the project's model, tokenizer and pipeline through the Hub ------------------------

GREEDY = {"num_beams": 1, "do_sample": False, "max_new_tokens": 8}
SENTENCES = ["Ein Mann fährt Fahrrad.", "Zwei Hunde spielen im Schnee."]

FRESH_PROCESS_LOAD = """
import builtins
import json
import sys

from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, pipeline

prompts = []  # transformers asks "Do you wish to run the custom code?" when trust_remote_code is missing


def no_to_prompts(message=""):
    prompts.append(message)
    return "n"


builtins.input = no_to_prompts
repo_id, sentences, greedy = json.loads(sys.argv[1])
model = AutoModelForSeq2SeqLM.from_pretrained(repo_id, trust_remote_code=True)
tokenizer = AutoTokenizer.from_pretrained(repo_id, trust_remote_code=True)
translator = pipeline("translation", model=repo_id, trust_remote_code=True)
prompts_when_trusted = len(prompts)
# Without trust_remote_code, AutoTokenizer reads config.json (which has an auto_map): it prompts,
# and on "no" falls back to the plain config; the tokenizer itself needs no custom code.
plain_tokenizer = AutoTokenizer.from_pretrained(repo_id)

ids = [model.generate(**tokenizer(s, return_tensors="pt"), **greedy)[0].tolist() for s in sentences]
print("\\nRESULT " + json.dumps({
    "model_class": f"{type(model).__module__}.{type(model).__name__}",
    "pipeline_class": f"{type(translator).__module__}.{type(translator).__name__}",
    "ids": ids,
    "texts": [tokenizer.decode(i, skip_special_tokens=True) for i in ids],
    "pipeline": [translator(s, **greedy) for s in sentences],
    "prompts_when_trusted": prompts_when_trusted,
    "plain_tokenizer_prompted": len(prompts) > prompts_when_trusted,
    "encodings": [tokenizer(s)["input_ids"] for s in sentences],
    "plain_encodings": [plain_tokenizer(s)["input_ids"] for s in sentences],
}))
"""


@pytest.fixture(scope="module")
def hub_tokenizer(tmp_path_factory):
    """The project's BPE tokenizer trained on a few dozen German/English lines."""
    hvt = require_model()
    de, en = write_corpus(tmp_path_factory.mktemp("corpus"))
    return hvt.train_tokenizer([de, en], vocab_size=300)


def greedy_in_process(model, tokenizer, sentences: list[str]) -> tuple[list[list[int]], list[str]]:
    """Greedy output ids and texts, one sentence at a time (no padding), as the pipeline does."""
    import torch

    with torch.no_grad():
        ids = [model.generate(**tokenizer(s, return_tensors="pt"), **GREEDY)[0].tolist() for s in sentences]
    return ids, [tokenizer.decode(i, skip_special_tokens=True) for i in ids]


def test_pushed_model_loads_in_a_fresh_process_without_the_package(hub_server, hub_repo_id, hub_tokenizer, tmp_path):
    hvt = require_model()
    model = tiny_translation_model(hvt, len(hub_tokenizer), seed=0)
    model.push_to_hub(hub_repo_id)
    hub_tokenizer.push_to_hub(hub_repo_id)
    stored = hub_server.files(hub_repo_id)
    assert {
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "README.md",
        "configuration_vanilla_transformer.py",
        "modeling_vanilla_transformer.py",
        "pipeline_translation.py",
    } <= set(stored)
    config = json.loads(stored["config.json"])
    assert "AutoModelForSeq2SeqLM" in config["auto_map"] and "translation" in config["custom_pipelines"]

    expected_ids, expected_texts = greedy_in_process(model, hub_tokenizer, SENTENCES)
    out = result_of(run_isolated(FRESH_PROCESS_LOAD, tmp_path / "fresh", json.dumps([hub_repo_id, SENTENCES, GREEDY])))

    assert out["model_class"].startswith("transformers_modules.")  # the code came from the repo
    assert out["pipeline_class"].startswith("transformers_modules.")
    assert out["ids"] == expected_ids
    assert out["texts"] == expected_texts
    assert out["pipeline"] == [[{"translation_text": text}] for text in expected_texts]
    assert out["prompts_when_trusted"] == 0
    assert out["encodings"] == out["plain_encodings"] == [hub_tokenizer(s)["input_ids"] for s in SENTENCES]


def test_revision_pins_the_first_model_after_a_second_push(hub_server, hub_repo_id, hub_tokenizer, tmp_path):
    import torch
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    hvt = require_model()
    first = tiny_translation_model(hvt, len(hub_tokenizer), seed=0)
    second = tiny_translation_model(hvt, len(hub_tokenizer), seed=1)
    first.push_to_hub(hub_repo_id)
    hub_tokenizer.push_to_hub(hub_repo_id)
    first_sha = hub_server.head(hub_repo_id)
    second.push_to_hub(hub_repo_id, commit_message="Second revision: other weights")
    assert hub_server.head(hub_repo_id) != first_sha

    cache = tmp_path / "cache"
    pinned = AutoModelForSeq2SeqLM.from_pretrained(
        hub_repo_id, revision=first_sha, trust_remote_code=True, cache_dir=cache
    ).eval()
    latest = AutoModelForSeq2SeqLM.from_pretrained(hub_repo_id, trust_remote_code=True, cache_dir=cache).eval()
    tokenizer = AutoTokenizer.from_pretrained(hub_repo_id, revision=first_sha, cache_dir=cache)

    batch = tokenizer(SENTENCES, return_tensors="pt", padding=True)
    decoder_input_ids = torch.tensor([[first.config.decoder_start_token_id, 5, 6, 7]] * len(SENTENCES))

    def logits(model):
        with torch.no_grad():
            return model(**batch, decoder_input_ids=decoder_input_ids).logits

    assert not torch.allclose(logits(first), logits(second))
    assert torch.equal(logits(pinned), logits(first))
    assert torch.equal(logits(latest), logits(second))
    assert greedy_in_process(pinned, tokenizer, SENTENCES) == greedy_in_process(first, hub_tokenizer, SENTENCES)
