"""Removing worktrees: by request, by age, by the disk cap; unfinished tasks are never touched."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from adw_modules.workspace.worktrees import Workspaces, disk_usage
from tests.workspace.conftest import REPO, Remotes, run_git

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
MB = 1024 * 1024


def _worktrees(ws: Workspaces, git_env: dict[str, str]) -> set[str]:
    listing = run_git(git_env, "worktree", "list", "--porcelain", cwd=ws.clone_path(REPO))
    return {line.split("/")[-1] for line in listing.splitlines() if line.startswith("worktree ") and "task-" in line}


def test_gc_by_age_keeps_recent_and_unfinished(
    make_workspaces: Callable[..., Workspaces], git_env: dict[str, str]
) -> None:
    ws = make_workspaces()
    for task_id in (1, 2, 3):
        ws.prepare(REPO, task_id, 60 + task_id, f"Task {task_id}")
    finished = {1: NOW - timedelta(days=10), 2: NOW - timedelta(days=1), 3: None}
    report = ws.gc(NOW, finished.get)
    assert [(r.task_id, r.reason, r.repo) for r in report.removed] == [(1, "age", REPO)]
    assert report.bytes_freed == report.removed[0].bytes > 0
    assert not ws.worktree_path(1).exists() and ws.worktree_path(2).exists() and ws.worktree_path(3).exists()
    assert _worktrees(ws, git_env) == {"task-2", "task-3"}
    assert ws.tasks() == [2, 3] and not report.over_limit
    # A task that is still running is never removed, however old its worktree is.
    assert ws.gc(NOW + timedelta(days=365), {2: None, 3: None}.get).removed == []


def test_gc_by_disk_cap_removes_the_oldest_finished_first(
    make_workspaces: Callable[..., Workspaces], git_env: dict[str, str]
) -> None:
    ws = make_workspaces()
    for task_id in (1, 2, 3):
        wt = ws.prepare(REPO, task_id, 70 + task_id, f"Big {task_id}")
        (wt.path / "big.bin").write_bytes(b"\0" * (2 * MB))
    finished = {1: NOW - timedelta(days=1), 2: NOW - timedelta(days=2), 3: None}  # 2 finished first
    total = disk_usage(ws.root)
    capped = Workspaces(replace(ws.cfg, max_disk_mb=(total - MB) / MB), git_env)
    report = capped.gc(NOW, finished.get)
    assert [(r.task_id, r.reason) for r in report.removed] == [(2, "disk")]
    assert report.bytes_freed >= 2 * MB and report.bytes_after <= total - MB and not report.over_limit
    assert ws.worktree_path(1).exists() and ws.worktree_path(3).exists()

    tiny = Workspaces(replace(ws.cfg, max_disk_mb=0.001), git_env)
    report = tiny.gc(NOW, finished.get)
    assert [r.task_id for r in report.removed] == [1]
    assert report.over_limit, "only the unfinished task's worktree (and the clone) are left"
    assert ws.worktree_path(3).exists() and (ws.worktree_path(3) / "big.bin").stat().st_size == 2 * MB
    assert _worktrees(ws, git_env) == {"task-3"}


def test_remove_drops_pushed_branches_and_keeps_unpushed_work(
    make_workspaces: Callable[..., Workspaces], remotes: Remotes, git_env: dict[str, str]
) -> None:
    ws = make_workspaces()
    pushed = ws.prepare(REPO, 1, 80, "Pushed")
    (pushed.path / "p.txt").write_text("p\n")
    assert ws.finish(pushed, "adw: pushed", push=True).pushed
    local = ws.prepare(REPO, 2, 81, "Local")
    (local.path / "l.txt").write_text("l\n")
    kept_head = ws.finish(local, "adw: local", push=False).head_sha

    removed = ws.remove(1)
    assert removed is not None and removed.reason == "requested" and not pushed.path.exists()
    assert ws.remove(2) is not None and not local.path.exists()
    assert ws.remove(2) is None
    clone = ws.clone_path(REPO)
    branches = run_git(git_env, "branch", "--format=%(refname:short)", cwd=clone).split()
    assert pushed.branch not in branches and local.branch in branches
    assert remotes.heads(REPO)[pushed.branch]  # the remote keeps it for the pull request

    # The same task prepared again continues from its kept local branch.
    again = ws.prepare(REPO, 2, 81, "Local")
    assert again.branch == local.branch and not again.reused
    assert run_git(git_env, "rev-parse", "HEAD", cwd=again.path) == kept_head
