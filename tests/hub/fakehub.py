"""Test helpers for the Hub path: a loopback server that speaks the part of the Hub's HTTP protocol that
huggingface_hub 2.4 and transformers 5.24 use, and a runner for fresh Python processes in which paperzoo cannot be
imported.

The server (stdlib `http.server`, one thread per request) keeps model repos in memory, one snapshot per commit:
    POST /api/repos/create                              -> 200 {url}, 409 when the repo exists
    POST /api/validate-yaml                             -> no errors (the README's YAML is parsed and kept)
    POST /api/models/{ns}/{name}/preupload/{rev}        -> every file "regular" (no LFS, no Xet)
    POST /api/models/{ns}/{name}/commit/{rev}           -> NDJSON: header, file (base64), deletedFile
    GET|HEAD /{ns}/{name}/resolve/{rev}/{path}          -> X-Repo-Commit, ETag, Content-Length;
                                                           404 + X-Error-Code EntryNotFound / RevisionNotFound /
                                                           RepoNotFound
    GET /api/whoami-v2                                  -> user "testuser"
    GET /api/models/{ns}/{name}[/revision/{rev}]        -> model_info with siblings
    GET /api/agent-harnesses                            -> an empty registry (huggingface_hub 2.4 fetches it once
                                                           a day for its user agent)
With `FakeHub(tokens={...})` every request must carry one of those tokens (Authorization: Bearer) or gets 401, as the
Hub answers an unknown or missing token. Anything else answers 404 and is recorded in `unhandled`, so a test can
assert that the fake was enough.
Clients must set HF_ENDPOINT before huggingface_hub.constants is first imported: run them in a fresh process.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import yaml

USER = "testuser"


@dataclass
class Repo:
    private: bool = False
    commits: list[tuple[str, dict[str, bytes]]] = field(default_factory=list)  # (sha, snapshot), oldest first

    @property
    def head(self) -> tuple[str, dict[str, bytes]]:
        return self.commits[-1]

    def snapshot(self, revision: str) -> tuple[str, dict[str, bytes]] | None:
        if revision == "main":
            return self.head
        for sha, files in self.commits:
            if sha == revision:
                return sha, files
        return None


class FakeHub:
    def __init__(self, tokens: set[str] | None = None):
        self.tokens = tokens  # None: any token (or none) is accepted
        self.repos: dict[str, Repo] = {}
        self.requests: list[tuple[str, str, int]] = []
        self.unhandled: list[tuple[str, str]] = []
        self.validated_yaml: list[dict] = []
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # -- lifecycle -----------------------------------------------------------------------------------------------

    def start(self) -> str:
        hub = self

        class Handler(_Handler):
            pass

        Handler.hub = hub
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="fakehub", daemon=True).start()
        return self.endpoint

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FakeHub:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- repository operations -----------------------------------------------------------------------------------

    def create(self, repo_id: str, private: bool) -> bool:
        with self.lock:
            if repo_id in self.repos:
                return False
            empty_sha = hashlib.sha1(f"init {repo_id}".encode()).hexdigest()
            self.repos[repo_id] = Repo(private=private, commits=[(empty_sha, {})])
            return True

    def commit(self, repo_id: str, lines: list[dict]) -> str:
        with self.lock:
            repo = self.repos[repo_id]
            parent, files = repo.head
            files = dict(files)
            if not lines or lines[0].get("key") != "header":
                raise ValueError("the first NDJSON line must be the header")
            summary = lines[0]["value"].get("summary", "")
            for line in lines[1:]:
                key, value = line["key"], line["value"]
                if key == "file":
                    if value.get("encoding") != "base64":
                        raise ValueError(f"unsupported encoding {value.get('encoding')!r}")
                    files[value["path"]] = base64.b64decode(value["content"])
                elif key == "deletedFile":
                    files.pop(value["path"], None)
                else:  # lfsFile, deletedFolder, copies: the fake only ever offers regular uploads
                    raise ValueError(f"the fake Hub does not support {key!r} operations")
            digest = hashlib.sha1(parent.encode() + summary.encode())
            for path in sorted(files):
                digest.update(path.encode() + b"\0" + hashlib.sha256(files[path]).digest())
            sha = digest.hexdigest()
            repo.commits.append((sha, files))
            return sha

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        return dict(self.repos[repo_id].snapshot(revision)[1])


class _Handler(BaseHTTPRequestHandler):
    hub: FakeHub
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # quiet
        pass

    # -- plumbing ------------------------------------------------------------------------------------------------

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None, head: bool = False,
              content_type: str = "application/json") -> None:
        self.hub.requests.append((self.command, self.path, status))
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if body and not head:
            self.wfile.write(body)

    def _json(self, status: int, obj, headers: dict | None = None) -> None:
        self._send(status, json.dumps(obj).encode(), headers)

    def _error(self, status: int, code: str, message: str, head: bool = False) -> None:
        body = json.dumps({"error": message}).encode()
        self._send(status, body, {"X-Error-Code": code, "X-Error-Message": message}, head=head)

    def _unhandled(self) -> None:
        self.hub.unhandled.append((self.command, self.path))
        self._error(404, "NotImplemented", f"fake Hub: no route for {self.command} {self.path}")

    def _parts(self) -> list[str]:
        return [unquote(p) for p in urlsplit(self.path).path.split("/") if p]

    # -- routes --------------------------------------------------------------------------------------------------

    def _authorized(self, head: bool = False) -> bool:
        tokens = self.hub.tokens
        header = self.headers.get("Authorization", "")
        if tokens is None or (header.startswith("Bearer ") and header[len("Bearer "):] in tokens):
            return True
        self._error(401, "Unauthorized", "Invalid credentials in Authorization header", head)
        return False

    def do_POST(self):
        parts, body = self._parts(), self._body()
        hub = self.hub
        if not self._authorized():
            return None
        if parts == ["api", "repos", "create"]:
            payload = json.loads(body or b"{}")
            if payload.get("type", "model") not in (None, "model"):
                return self._error(400, "BadRequest", "the fake Hub hosts model repos only")
            repo_id = f"{payload.get('organization') or USER}/{payload['name']}"
            url = f"{hub.endpoint}/{repo_id}"
            if not hub.create(repo_id, payload.get("visibility") == "private" or bool(payload.get("private"))):
                return self._json(409, {"error": "You already created this model repo", "url": url})
            return self._json(200, {"url": url, "name": repo_id, "id": repo_id})
        if parts == ["api", "validate-yaml"]:
            payload = json.loads(body or b"{}")
            content = payload.get("content", "")
            meta = {}
            if content.startswith("---"):
                meta = yaml.safe_load(content.split("---", 2)[1]) or {}
            hub.validated_yaml.append(meta)
            return self._json(200, {"errors": [], "warnings": []})
        if len(parts) >= 6 and parts[:2] == ["api", "models"] and parts[4] in ("preupload", "commit"):
            repo_id, action, revision = f"{parts[2]}/{parts[3]}", parts[4], "/".join(parts[5:])
            repo = hub.repos.get(repo_id)
            if repo is None:
                return self._error(404, "RepoNotFound", f"Repository {repo_id} not found")
            if revision != "main":
                return self._error(404, "RevisionNotFound", f"the fake Hub commits to main only, not {revision}")
            if action == "preupload":
                payload = json.loads(body or b"{}")
                files = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": None}
                         for f in payload.get("files", [])]
                return self._json(200, {"files": files, "commitOid": repo.head[0]})
            try:
                lines = [json.loads(line) for line in body.splitlines() if line.strip()]
                sha = hub.commit(repo_id, lines)
            except (ValueError, KeyError) as err:
                return self._error(400, "BadRequest", str(err))
            return self._json(200, {"success": True, "commitOid": sha, "pullRequestUrl": None,
                                    "commitUrl": f"{hub.endpoint}/{repo_id}/commit/{sha}"})
        return self._unhandled()

    def do_HEAD(self):
        self._get(head=True)

    def do_GET(self):
        self._get(head=False)

    def _get(self, head: bool) -> None:
        parts = self._parts()
        hub = self.hub
        if not self._authorized(head):
            return None
        if parts == ["api", "agent-harnesses"]:
            return self._json(200, {"standardEnvVars": [], "harnesses": {}})
        if parts == ["api", "whoami-v2"]:
            return self._json(200, {"type": "user", "name": USER, "fullname": "Test User", "orgs": [],
                                    "auth": {"type": "access_token",
                                             "accessToken": {"displayName": "dummy", "role": "write"}}})
        if len(parts) >= 4 and parts[:2] == ["api", "models"]:
            repo_id = f"{parts[2]}/{parts[3]}"
            revision = "main"
            if len(parts) >= 6 and parts[4] == "revision":
                revision = "/".join(parts[5:])
            elif len(parts) != 4:
                return self._unhandled()
            repo = hub.repos.get(repo_id)
            if repo is None:
                return self._error(404, "RepoNotFound", f"Repository {repo_id} not found", head)
            snap = repo.snapshot(revision)
            if snap is None:
                return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}", head)
            sha, files = snap
            return self._json(200, {"id": repo_id, "modelId": repo_id, "sha": sha, "private": repo.private,
                                    "tags": [], "library_name": "transformers",
                                    "siblings": [{"rfilename": p} for p in sorted(files)]})
        if len(parts) >= 5 and parts[2] == "resolve":
            repo_id, revision, path = f"{parts[0]}/{parts[1]}", parts[3], "/".join(parts[4:])
            repo = hub.repos.get(repo_id)
            if repo is None:
                return self._error(404, "RepoNotFound", f"Repository {repo_id} not found", head)
            snap = repo.snapshot(revision)
            if snap is None:
                return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}", head)
            sha, files = snap
            if path not in files:
                return self._error(404, "EntryNotFound", f"{path} does not exist on {revision}", head)
            data = files[path]
            blob = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()  # a git blob id, as the Hub's ETag
            return self._send(200, data, {"X-Repo-Commit": sha, "ETag": f'"{blob}"'}, head=head,
                              content_type="application/octet-stream")
        return self._unhandled()


# ----------------------------------------------------------------------------------------------------------------------
# Fresh processes


# Prepended to every child script that must not see paperzoo: a meta-path finder placed first refuses `paperzoo` and
# its submodules (whatever makes them findable: sys.path, .pth files, editable-install finders), and sys.path loses
# every entry that holds a paperzoo folder. The child then proves that `import paperzoo` fails.
ISOLATION_PRELUDE = r'''
import importlib.abc as _ia, os as _os, sys as _sys

class _HidePaperzoo(_ia.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "paperzoo" or name.startswith("paperzoo."):
            raise ModuleNotFoundError(f"No module named {name!r} (hidden by the test)", name=name)
        return None

_sys.meta_path.insert(0, _HidePaperzoo())
_sys.path[:] = [p for p in _sys.path if not _os.path.isdir(_os.path.join(p or _os.getcwd(), "paperzoo"))]
try:
    import paperzoo  # noqa: F401
except ImportError:
    pass
else:
    raise SystemExit("paperzoo is importable in the isolated process")
del _ia, _os, _sys, _HidePaperzoo
'''


def repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


def run_python(script: str, *args: str, env: dict | None = None, cwd: str | os.PathLike, isolated: bool,
               timeout: float = 180) -> subprocess.CompletedProcess:
    """Run `script` with `python -c` in a fresh process (`isolated`: paperzoo cannot be imported; otherwise the
    repository root is on PYTHONPATH). The environment is the parent's minus PYTHONPATH, plus `env`."""
    child_env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith(("HF_", "HUGGING"))}
    child_env.update({"HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
                      "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1", "TOKENIZERS_PARALLELISM": "false"})
    if not isolated:
        child_env["PYTHONPATH"] = str(repo_root())
    child_env.update(env or {})
    source = (ISOLATION_PRELUDE if isolated else "") + script
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", source, *args], env=child_env, cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(
            f"child process failed (rc={proc.returncode}, {time.monotonic() - start:.1f}s)\n"
            f"--- stdout ---\n{proc.stdout[-4000:]}\n--- stderr ---\n{proc.stderr[-8000:]}"
        )
    return proc
