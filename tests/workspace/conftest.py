"""Fixtures for ``adw_modules.workspace.worktrees``: real git, real bare repositories as remotes.

``remotes`` is a directory of bare repositories (``<owner>/<name>.git``) each seeded with one
commit on ``main`` (README.md and a .gitignore ignoring ``*.log``); ``make_workspaces(name)``
builds a ``Workspaces`` on its own root (another name = another "host") whose remote template
points there.  ``git_http`` serves that directory over smart HTTP (``git http-backend`` behind
HTTP Basic auth on 127.0.0.1) to test the token path.  Every child runs with a private HOME.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from adw_modules.config.workspace import WorkspaceConfig
from adw_modules.workspace.worktrees import Workspaces

REPO = "acme/widgets"
pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def run_git(env: dict[str, str], *args: str, cwd: Path | None = None, input: str | None = None) -> str:
    """A test's own git call (argv, no shell, timeout); returns stripped stdout."""
    proc = subprocess.run(
        ["git", *args], cwd=cwd, env=env, input=input, capture_output=True, text=True, timeout=30, check=False
    )
    if proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
    return proc.stdout.strip()


@dataclass
class Remotes:
    path: Path
    env: dict[str, str]
    seeds: dict[str, str] = field(default_factory=dict)  # repo -> seed commit sha

    def bare(self, repo: str) -> Path:
        return self.path / f"{repo}.git"

    def add(self, repo: str) -> str:
        bare = self.bare(repo)
        bare.parent.mkdir(parents=True, exist_ok=True)
        run_git(self.env, "init", "--quiet", "--bare", "--initial-branch=main", str(bare))
        scratch = self.path.parent / f"seed-{repo.replace('/', '__')}"
        run_git(self.env, "clone", "--quiet", str(bare), str(scratch))
        (scratch / "README.md").write_text("# widgets\n")
        (scratch / ".gitignore").write_text("*.log\n")
        run_git(self.env, "add", "README.md", ".gitignore", cwd=scratch)
        run_git(
            self.env,
            "-c",
            "user.name=Seeder",
            "-c",
            "user.email=seed@example.com",
            "commit",
            "-qm",
            "seed",
            cwd=scratch,
        )
        run_git(self.env, "push", "--quiet", "origin", "HEAD:refs/heads/main", cwd=scratch)
        self.seeds[repo] = run_git(self.env, "rev-parse", "HEAD", cwd=scratch)
        return self.seeds[repo]

    def heads(self, repo: str) -> dict[str, str]:
        """``git ls-remote --heads`` of the bare repository: branch -> sha."""
        out = run_git(self.env, "ls-remote", "--heads", str(self.bare(repo)))
        pairs = (line.split("\t") for line in out.splitlines() if line)
        return {ref.removeprefix("refs/heads/"): sha for sha, ref in pairs}


@pytest.fixture
def git_env(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir()
    return {"PATH": os.environ.get("PATH", os.defpath), "HOME": str(home), "LC_ALL": "C"}


@pytest.fixture
def remotes(tmp_path: Path, git_env: dict[str, str]) -> Remotes:
    r = Remotes(tmp_path / "remotes", git_env)
    r.add(REPO)
    return r


@pytest.fixture
def make_workspaces(tmp_path: Path, remotes: Remotes, git_env: dict[str, str]) -> Callable[..., Workspaces]:
    def make(host: str = "host-a", *, environ: dict[str, str] | None = None, **overrides: Any) -> Workspaces:
        cfg = WorkspaceConfig(
            root=tmp_path / host / "workspaces",
            remote=str(remotes.path) + "/{repo}.git",
            author_name="Adw Bot",
            author_email="adw-bot@example.com",
            token_env=None,
        )
        return Workspaces(replace(cfg, **overrides), git_env if environ is None else environ)

    return make


# -- smart HTTP with Basic auth ----------------------------------------------------------------
@dataclass
class GitHttp:
    url: str  # http://127.0.0.1:PORT
    token: str
    auth_seen: list[tuple[str, bool]] = field(default_factory=list)  # (user, accepted)
    accept: Callable[[str], bool] | None = None  # instead of ``token``: e.g. the fake GitHub's live tokens


class _Handler(BaseHTTPRequestHandler):
    server_ref: GitHttp
    project_root: Path
    env: dict[str, str]

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _serve(self) -> None:
        body = self._body()
        user = None
        scheme, _, value = (self.headers.get("Authorization") or "").partition(" ")
        if scheme == "Basic":
            user, _, password = base64.b64decode(value).decode().partition(":")
            check = self.server_ref.accept
            accepted = check(password) if check is not None else password == self.server_ref.token
            self.server_ref.auth_seen.append((user, accepted))
            if not accepted:
                user = None
        if user is None:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="adw-test"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        path, _, query = self.path.partition("?")
        cgi_env = {
            **self.env,
            "GIT_PROJECT_ROOT": str(self.project_root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "REQUEST_METHOD": self.command,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_USER": user,
            "REMOTE_ADDR": "127.0.0.1",
        }
        if self.headers.get("Content-Encoding"):
            cgi_env["HTTP_CONTENT_ENCODING"] = self.headers["Content-Encoding"]
        if self.headers.get("Git-Protocol"):
            cgi_env["GIT_PROTOCOL"] = self.headers["Git-Protocol"]
        proc = subprocess.run(["git", "http-backend"], input=body, env=cgi_env, capture_output=True, timeout=30)
        head, _, payload = proc.stdout.partition(b"\r\n\r\n")
        status = 200
        headers = []
        for line in head.decode().split("\r\n"):
            name, _, val = line.partition(":")
            if name.lower() == "status":
                status = int(val.strip().split()[0])
            elif name:
                headers.append((name, val.strip()))
        self.send_response(status)
        for name, val in headers:
            self.send_header(name, val)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = _serve


@pytest.fixture
def git_http(remotes: Remotes, git_env: dict[str, str]) -> Iterator[GitHttp]:
    token = "ghp_WorkspaceTestToken0123456789abcdef"  # not a real token
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    state = GitHttp(f"http://127.0.0.1:{httpd.server_address[1]}", token)
    httpd.RequestHandlerClass = type(
        "_Bound", (_Handler,), {"server_ref": state, "project_root": remotes.path, "env": git_env}
    )
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)
