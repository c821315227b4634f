"""The push token reaches git only through GIT_ASKPASS: never argv, never logs or errors, never stored."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from adw_modules.workspace.gitcmd import TOKEN_VAR, GitError, GitRunner, token_allowed, write_askpass
from adw_modules.workspace.worktrees import WorkspaceError, Workspaces
from tests.workspace.conftest import REPO, GitHttp, Remotes


def _no_token_anywhere(ws: Workspaces, token: str, home: Path) -> None:
    assert ws.git.calls, "the runner recorded its commands"
    for argv in ws.git.calls:
        assert not any(token in arg for arg in argv), argv
    assert not (home / ".git-credentials").exists(), "a configured credential helper stored the token"
    askpass = ws.root / "bin" / "adw-askpass.py"
    assert askpass.is_file() and token not in askpass.read_text()
    assert askpass.stat().st_mode & 0o077 == 0
    for config in ws.root.glob("clones/*/.git/config"):
        assert token not in config.read_text()


def test_push_over_http_with_a_token_by_reference(
    make_workspaces: Callable[..., Workspaces], git_http: GitHttp, remotes: Remotes, git_env: dict[str, str]
) -> None:
    home = Path(git_env["HOME"])
    # A user-level helper that would write every credential it sees to ~/.git-credentials.
    (home / ".gitconfig").write_text("[credential]\n\thelper = store\n")
    environ = {**git_env, "PUSH_TOKEN": git_http.token}
    ws = make_workspaces(environ=environ, remote=git_http.url + "/{repo}.git", token_env="PUSH_TOKEN")
    wt = ws.prepare(REPO, 1, 50, "Over HTTP")
    (wt.path / "http.txt").write_text("pushed over smart http\n")
    changes = ws.finish(wt, "adw: over http", push=True)
    assert changes.pushed and remotes.heads(REPO)[wt.branch] == changes.head_sha
    assert ("x-access-token", True) in git_http.auth_seen
    assert all(accepted for _, accepted in git_http.auth_seen)
    _no_token_anywhere(ws, git_http.token, home)


def test_a_wrong_token_fails_with_a_clear_masked_error(
    make_workspaces: Callable[..., Workspaces], git_http: GitHttp, git_env: dict[str, str]
) -> None:
    wrong = "ghp_WrongTokenForTheWorkspaceTests000000"
    ws = make_workspaces(
        environ={**git_env, "PUSH_TOKEN": wrong}, remote=git_http.url + "/{repo}.git", token_env="PUSH_TOKEN"
    )
    with pytest.raises(WorkspaceError) as err:
        ws.prepare(REPO, 2, 51, "Refused")
    text = str(err.value)
    assert " clone " in text and "exit code 128" in text and "Authentication failed" in text
    assert wrong not in text
    assert ("x-access-token", False) in git_http.auth_seen
    _no_token_anywhere(ws, wrong, Path(git_env["HOME"]))


def test_without_a_token_git_fails_instead_of_prompting(
    make_workspaces: Callable[..., Workspaces], git_http: GitHttp
) -> None:
    ws = make_workspaces(remote=git_http.url + "/{repo}.git", token_env="PUSH_TOKEN")  # variable not set
    with pytest.raises(WorkspaceError, match="exit code 128"):
        ws.prepare(REPO, 3, 52, "No token")
    assert git_http.auth_seen == []


def test_errors_that_echo_the_token_are_masked(tmp_path: Path, git_env: dict[str, str]) -> None:
    token = "ghp_EchoedTokenInStderr0000000000000000"
    runner = GitRunner(git_env, token=token, askpass=write_askpass(tmp_path / "bin"))
    with pytest.raises(GitError) as err:
        runner.run(["rev-parse", "--verify", f"refs/heads/{token}"], cwd=tmp_path)
    assert token not in str(err.value) and "[REDACTED]" in str(err.value)
    url_secret = "https://someone:hunter2-password@example.com/acme/widgets.git"
    with pytest.raises(GitError) as err2:
        runner.run(["rev-parse", "--verify", url_secret], cwd=tmp_path)
    assert "hunter2-password" not in str(err2.value)


def test_the_token_is_offered_only_to_https_or_loopback(tmp_path: Path, git_env: dict[str, str]) -> None:
    assert token_allowed("https://github.com/acme/widgets.git")
    assert token_allowed("http://127.0.0.1:8080/acme/widgets.git")
    assert not token_allowed("http://example.com/acme/widgets.git")
    assert not token_allowed("/srv/git/acme/widgets.git") and not token_allowed("file:///srv/git/x.git")
    runner = GitRunner({**git_env, "GIT_DIR": "/x"}, token="ghp_abcdefgh12345678", askpass=write_askpass(tmp_path))
    assert TOKEN_VAR in runner.env(url="https://github.com/acme/widgets.git")
    plain = runner.env(url="http://example.com/acme/widgets.git")
    assert TOKEN_VAR not in plain and "GIT_ASKPASS" not in plain
    assert not [k for k in runner.env(url=None) if k.startswith("GIT_") and k != "GIT_TERMINAL_PROMPT"]
    assert runner.env(url=None)["GIT_TERMINAL_PROMPT"] == "0"


def test_a_remote_that_never_answers_times_out(make_workspaces: Callable[..., Workspaces]) -> None:
    with socket.socket() as silent:  # accepts connections (backlog) and never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        ws = make_workspaces(remote=f"http://127.0.0.1:{port}/{{repo}}.git", git_timeout_s=1.0)
        started = time.monotonic()
        with pytest.raises(WorkspaceError, match=r"clone .*timed out after 1 s"):
            ws.prepare(REPO, 4, 53, "Silent remote")
        assert time.monotonic() - started < 10


def test_an_agent_cannot_redirect_the_push_or_run_hooks_with_the_token(
    make_workspaces: Callable[..., Workspaces],
    git_http: GitHttp,
    remotes: Remotes,
    git_env: dict[str, str],
    tmp_path: Path,
) -> None:
    """The agent shares the clone's config and hooks: it rewrites the remote and plants a pre-push hook."""
    environ = {**git_env, "PUSH_TOKEN": git_http.token}
    ws = make_workspaces(environ=environ, remote=git_http.url + "/{repo}.git", token_env="PUSH_TOKEN")
    wt = ws.prepare(REPO, 7, 57, "Hostile agent")
    clone = next(ws.root.glob("clones/*"))
    loot = tmp_path / "loot.txt"
    hook = clone / ".git" / "hooks" / "pre-push"
    hook.write_text(f"#!/bin/sh\nenv > {loot}\n")
    hook.chmod(0o755)
    from tests.workspace.conftest import run_git

    # Send origin to a host that is not the configured one (the token would go there if git asked it).
    run_git(git_env, "config", "remote.origin.url", "http://localhost:9/evil.git", cwd=clone)
    (wt.path / "work.txt").write_text("done\n")
    changes = ws.finish(wt, "adw: hostile", push=True)
    assert changes.pushed and remotes.heads(REPO)[wt.branch] == changes.head_sha  # went to the configured URL
    assert not loot.exists(), "a repository hook ran during the push"
    assert all(arg != "origin" for argv in ws.git.calls if "push" in argv for arg in argv)
    _no_token_anywhere(ws, git_http.token, Path(git_env["HOME"]))
