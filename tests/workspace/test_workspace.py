"""Per-task worktrees against a real bare repository: prepare, finish, push, retry, failover."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from adw_modules.workspace.worktrees import WorkspaceError, Workspaces, Worktree, branch_name, slugify
from tests.workspace.conftest import REPO, Remotes, run_git


def commit_all(env: dict[str, str], wt: Worktree, message: str, *, name: str = "Worker Agent") -> str:
    """What a worker that commits its own work does."""
    run_git(env, "add", "--all", cwd=wt.path)
    run_git(
        env, "-c", f"user.name={name}", "-c", "user.email=worker@example.com", "commit", "-qm", message, cwd=wt.path
    )
    return run_git(env, "rev-parse", "HEAD", cwd=wt.path)


def test_slug_and_branch_names() -> None:
    assert slugify("Fix the Widget: crash on ÜTF-8 input!") == "fix-the-widget-crash-on-utf-8-input"
    long = slugify("A very long issue title that keeps going well past forty characters")
    assert len(long) <= 40 and not long.endswith("-") and long.startswith("a-very-long-issue-title")
    assert branch_name("adw/", 7, None, "whatever") == "adw/task-7"
    assert branch_name("adw/", 7, 12, "🔥🔥") == "adw/12"
    assert branch_name("bots/adw-", 7, 12, "Add docs") == "bots/adw-12-add-docs"


def test_concurrent_prepare_gives_separate_usable_worktrees(
    make_workspaces: Callable[..., Workspaces], remotes: Remotes, git_env: dict[str, str]
) -> None:
    ws = make_workspaces()
    start = threading.Barrier(2)
    results: dict[int, Worktree] = {}
    errors: list[BaseException] = []

    def prepare(task_id: int, issue: int, title: str) -> None:
        start.wait(timeout=10)
        try:
            results[task_id] = ws.prepare(REPO, task_id, issue, title)
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=prepare, args=(1, 11, "Fix the widget!")),
        threading.Thread(target=prepare, args=(2, 12, "Add Ünïcode support")),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == []
    one, two = results[1], results[2]
    assert (one.branch, two.branch) == ("adw/11-fix-the-widget", "adw/12-add-unicode-support")
    assert one.path != two.path and one.path.name == "task-1" and two.path.name == "task-2"
    assert one.base_sha == two.base_sha == remotes.seeds[REPO]
    clones = [argv for argv in ws.git.calls if "clone" in argv]
    assert len(clones) == 1, "the per-clone lock lets exactly one of them clone"
    for wt in (one, two):
        assert run_git(git_env, "rev-parse", "--abbrev-ref", "HEAD", cwd=wt.path) == wt.branch
        assert (wt.path / "README.md").read_text() == "# widgets\n"
        (wt.path / f"{wt.task_id}.txt").write_text("work\n")
        commit_all(git_env, wt, f"work of task {wt.task_id}")
    assert run_git(git_env, "log", "-1", "--format=%s", one.branch, cwd=one.path) == "work of task 1"
    assert run_git(git_env, "log", "-1", "--format=%s", two.branch, cwd=one.path) == "work of task 2"


def test_worker_commits_and_the_branch_is_pushed(
    make_workspaces: Callable[..., Workspaces], remotes: Remotes, git_env: dict[str, str]
) -> None:
    ws = make_workspaces()
    wt = ws.prepare(REPO, 3, 40, "Document the API")
    (wt.path / "API.md").write_text("# API\n")
    head = commit_all(git_env, wt, "docs: the API")
    changes = ws.finish(wt, "unused", push=True)
    assert (changes.commits_ahead, changes.committed_for_worker, changes.pushed) == (1, False, True)
    assert changes.head_sha == head and changes.changed_files == ["API.md"]
    assert remotes.heads(REPO) == {"main": remotes.seeds[REPO], "adw/40-document-the-api": head}


def test_uncommitted_and_untracked_changes_are_committed_for_the_worker(
    make_workspaces: Callable[..., Workspaces], remotes: Remotes, git_env: dict[str, str]
) -> None:
    ws = make_workspaces()
    wt = ws.prepare(REPO, 4, 41, "Tidy up")
    (wt.path / "README.md").write_text("# widgets, tidied\n")
    (wt.path / "src").mkdir()
    (wt.path / "src" / "new.py").write_text("print('hi')\n")
    (wt.path / "debug.log").write_text("ignored by .gitignore\n")
    changes = ws.finish(wt, "adw: task 4 (issue #41)\n\nLeft uncommitted by the worker.", push=True)
    assert changes.committed_for_worker and changes.commits_ahead == 1 and changes.pushed
    assert changes.changed_files == ["README.md", "src/new.py"]
    log = run_git(git_env, "log", "-1", "--format=%an <%ae>|%cn|%s", cwd=wt.path)
    assert log == "Adw Bot <adw-bot@example.com>|Adw Bot|adw: task 4 (issue #41)"
    assert run_git(git_env, "status", "--porcelain", cwd=wt.path) == ""
    assert (wt.path / "debug.log").exists()
    assert "debug.log" not in run_git(git_env, "ls-tree", "-r", "--name-only", "HEAD", cwd=wt.path)
    assert remotes.heads(REPO)["adw/41-tidy-up"] == changes.head_sha


def test_a_worker_that_changed_nothing_pushes_nothing(
    make_workspaces: Callable[..., Workspaces], remotes: Remotes
) -> None:
    ws = make_workspaces()
    wt = ws.prepare(REPO, 5, 42, "Nothing to do")
    changes = ws.finish(wt, "adw: nothing", push=True)
    assert (changes.commits_ahead, changes.committed_for_worker, changes.pushed) == (0, False, False)
    assert changes.head_sha == remotes.seeds[REPO] and changes.changed_files == []
    assert set(remotes.heads(REPO)) == {"main"}
    assert not [argv for argv in ws.git.calls if "push" in argv]


def test_push_false_keeps_the_commits_local(make_workspaces: Callable[..., Workspaces], remotes: Remotes) -> None:
    ws = make_workspaces()
    wt = ws.prepare(REPO, 6, None, "local only")
    assert wt.branch == "adw/task-6"
    (wt.path / "x.txt").write_text("x\n")
    changes = ws.finish(wt, "adw: local", push=False)
    assert changes.commits_ahead == 1 and not changes.pushed
    assert set(remotes.heads(REPO)) == {"main"}


def test_a_retry_reuses_the_worktree_and_sees_the_previous_changes(
    make_workspaces: Callable[..., Workspaces], remotes: Remotes
) -> None:
    ws = make_workspaces()
    first = ws.prepare(REPO, 7, 43, "Retry me")
    (first.path / "half-done.txt").write_text("the first model got this far\n")
    # The first attempt died without finish(); a new Workspaces (a restarted coordinator) retries.
    retry = make_workspaces().prepare(REPO, 7, 43, "Retry me")
    assert retry.reused and not first.reused
    assert (retry.path, retry.branch, retry.base_sha) == (first.path, first.branch, first.base_sha)
    assert (retry.path / "half-done.txt").read_text() == "the first model got this far\n"
    changes = ws.finish(retry, "adw: retry", push=True)
    assert changes.changed_files == ["half-done.txt"] and changes.pushed


def test_another_host_continues_from_the_pushed_branch(
    make_workspaces: Callable[..., Workspaces], remotes: Remotes, git_env: dict[str, str]
) -> None:
    host_a, host_b = make_workspaces("host-a"), make_workspaces("host-b")
    a = host_a.prepare(REPO, 8, 44, "Two hosts")
    (a.path / "a.txt").write_text("from host a\n")
    first = host_a.finish(a, "adw: attempt 1", push=True)

    b = host_b.prepare(REPO, 8, 44, "Two hosts")
    assert b.branch == a.branch and not b.reused and b.path != a.path
    assert run_git(git_env, "rev-parse", "HEAD", cwd=b.path) == first.head_sha
    assert (b.path / "a.txt").read_text() == "from host a\n"
    (b.path / "b.txt").write_text("from host b\n")
    second = host_b.finish(b, "adw: attempt 2", push=True)
    assert second.commits_ahead == 2 and second.changed_files == ["a.txt", "b.txt"]
    assert remotes.heads(REPO)[b.branch] == second.head_sha

    # Host A's view is stale now: its push must not overwrite host B's work.
    (a.path / "late.txt").write_text("stale\n")
    with pytest.raises(WorkspaceError) as err:
        host_a.finish(a, "adw: late", push=True)
    text = str(err.value)
    assert "task 8" in text and "git" in text and "push" in text and "exit code 1" in text and "stale info" in text
    assert remotes.heads(REPO)[b.branch] == second.head_sha


def test_an_issue_branch_held_by_another_task_gets_a_task_suffix(make_workspaces: Callable[..., Workspaces]) -> None:
    ws = make_workspaces()
    first = ws.prepare(REPO, 9, 45, "Same issue")
    second = ws.prepare(REPO, 10, 45, "Same issue")
    assert (first.branch, second.branch) == ("adw/45-same-issue", "adw/45-same-issue-task-10")


def test_a_worktree_directory_left_by_a_crash_is_replaced(make_workspaces: Callable[..., Workspaces]) -> None:
    ws = make_workspaces()
    junk = ws.worktree_path(11)
    junk.mkdir(parents=True)
    (junk / "partial").write_text("left by a crash before the metadata was written\n")
    wt = ws.prepare(REPO, 11, 46, "After a crash")
    assert not (wt.path / "partial").exists() and (wt.path / "README.md").exists() and not wt.reused


def test_inherited_git_variables_do_not_leak_into_git(
    make_workspaces: Callable[..., Workspaces], git_env: dict[str, str], tmp_path: Path
) -> None:
    hostile = {
        **git_env,
        "GIT_DIR": str(tmp_path / "nowhere"),
        "GIT_WORK_TREE": str(tmp_path),
        "GIT_CONFIG_PARAMETERS": "'user.name'='Hijacked'",
        "GIT_INDEX_FILE": str(tmp_path / "index"),
    }
    ws = make_workspaces(environ=hostile)
    wt = ws.prepare(REPO, 12, 47, "Clean env")
    (wt.path / "y.txt").write_text("y\n")
    changes = ws.finish(wt, "adw: clean env", push=True)
    assert changes.pushed and changes.commits_ahead == 1
    assert run_git(git_env, "log", "-1", "--format=%an", cwd=wt.path) == "Adw Bot"


def test_errors_name_the_command_exit_code_and_stderr(make_workspaces: Callable[..., Workspaces]) -> None:
    ws = make_workspaces()
    with pytest.raises(WorkspaceError) as err:
        ws.prepare("acme/missing", 13, 48, "No such repo")
    text = str(err.value)
    assert "git" in text and " clone " in text and "exit code 128" in text
    assert "does not appear to be a git repository" in text or "does not exist" in text
    with pytest.raises(WorkspaceError, match="owner/name"):
        ws.prepare("../escape", 14, None, "bad")
