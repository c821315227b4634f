"""Per-task git worktrees: one clone per repository, one worktree and branch per task.

Layout under ``[workspace] root`` (default ``<state_dir>/workspaces``)::

    clones/<owner>__<name>/          a clone of the remote (no checkout), made on first use;
                                     its config sets the author (so a worker's own commits
                                     have an identity too) and turns automatic gc off
    clones/<owner>__<name>.lock      the per-clone file lock (fcntl), shared by processes
    worktrees/task-<id>/             the task's worktree, on branch <prefix><issue>-<slug>
    meta/task-<id>.json              repo, branch, base sha: what a retry reuses
    bin/adw-askpass.py               hands the push token to git (see ``gitcmd``)

Contracts:

- ``prepare(repo, task_id, issue_number, title)``: ``git fetch`` (under the clone's lock), then
  the task's worktree.  An existing worktree of the same task is reused as is (a retry or a
  failover sees what the previous attempt left).  A new one starts from the local branch if it
  exists (fast-forwarded to the remote branch when that is ahead), else from the remote branch
  (another host ran the first attempt), else from the default branch's tip.  ``base_sha`` is
  the default branch's tip at the first prepare.  If the branch is checked out by another
  task's worktree, this task's branch gets the suffix ``-task-<id>``.
- ``finish(wt, message, push)``: commits what the worker left uncommitted (untracked files
  included, ``.gitignore`` respected) as the configured author, without hooks or signing;
  counts commits ahead of ``base_sha``; pushes ``HEAD`` to the task branch when ``push`` and
  there is something to push, with ``--force-with-lease`` on the remote-tracking ref we last
  saw (a branch someone else moved is not overwritten).  Nothing changed is a valid outcome.
- ``remove(task_id)``/``gc(now, is_finished)``: remove worktrees of finished tasks (age, then
  the disk cap, oldest first); a worktree whose task is not finished is never touched.  The
  local branch is deleted only when the remote has every commit of it.
- Every failure is a ``WorkspaceError`` naming the git command, its exit code and the tail of
  its stderr, with the token masked.  Git commands that change a clone's shared state run
  under the clone's lock (a ``threading.Lock`` plus ``fcntl.flock``, so threads and several
  coordinator processes sharing a root are both safe).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import threading
import unicodedata
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from adw_modules.config.workspace import WorkspaceConfig
from adw_modules.workspace.gitcmd import GitError, GitRunner, write_askpass

SLUG_MAX = 40
_REPO = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")


class WorkspaceError(Exception):
    """A workspace operation failed; the message is safe to log and to show on an issue."""


@dataclass(frozen=True)
class Worktree:
    repo: str
    task_id: int
    path: Path
    branch: str
    base_sha: str
    reused: bool = False  # an earlier attempt's worktree, as it left it


@dataclass(frozen=True)
class Changes:
    commits_ahead: int
    committed_for_worker: bool
    pushed: bool  # the remote branch holds head_sha (pushed now, or already there)
    head_sha: str
    changed_files: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class RemovedWorktree:
    task_id: int
    repo: str | None
    path: Path
    reason: str  # "age" | "disk" | "requested"
    bytes: int


@dataclass
class GcReport:
    removed: list[RemovedWorktree] = field(default_factory=list)
    bytes_freed: int = 0
    bytes_after: int = 0
    over_limit: bool = False  # still above max_disk_mb with nothing finished left to remove


def slugify(title: str, limit: int = SLUG_MAX) -> str:
    """Lowercase ascii words joined by dashes, at most ``limit`` characters ("" if none)."""
    ascii_text = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    return slug[:limit].rstrip("-")


def branch_name(prefix: str, task_id: int, issue_number: int | None, title: str) -> str:
    if issue_number is None:
        return f"{prefix}task-{task_id}"
    slug = slugify(title)
    return f"{prefix}{issue_number}-{slug}" if slug else f"{prefix}{issue_number}"


# One threading lock per clone path for the whole process: several Workspaces objects on one
# root (as a reload creates) still exclude each other; flock excludes other processes.
_THREAD_LOCKS: dict[str, threading.Lock] = {}
_THREAD_LOCKS_GUARD = threading.Lock()


def _thread_lock(path: Path) -> threading.Lock:
    with _THREAD_LOCKS_GUARD:
        return _THREAD_LOCKS.setdefault(str(path), threading.Lock())


class Workspaces:
    """Clones, worktrees and branches under ``cfg.root``; see the module docstring."""

    def __init__(self, cfg: WorkspaceConfig, environ: Mapping[str, str]) -> None:
        self.cfg = cfg
        self.root = cfg.root
        token = environ.get(cfg.token_env) if cfg.token_env else None
        askpass = write_askpass(self.root / "bin") if token else None
        self.environ = environ
        self.git = GitRunner(environ, token=token, askpass=askpass, timeout_s=cfg.git_timeout_s)

    def use_token(self, token: Callable[[], str | None]) -> None:
        """Push with the GitHub source's credentials: ``token()`` gives the current token (the
        ``[github]`` personal token, or a GitHub App's installation token, renewed as it expires)."""
        askpass = write_askpass(self.root / "bin")
        self.git = GitRunner(self.environ, token=token, askpass=askpass, timeout_s=self.cfg.git_timeout_s)

    # -- paths --------------------------------------------------------------------------------
    def clone_path(self, repo: str) -> Path:
        _check_repo(repo)
        owner, name = repo.split("/")
        return self.root / "clones" / f"{owner}__{name}"

    def worktree_path(self, task_id: int) -> Path:
        return self.root / "worktrees" / f"task-{int(task_id)}"

    def _meta_path(self, task_id: int) -> Path:
        return self.root / "meta" / f"task-{int(task_id)}.json"

    @contextmanager
    def _locked(self, repo: str) -> Iterator[Path]:
        clone = self.clone_path(repo)
        clone.parent.mkdir(parents=True, exist_ok=True)
        with _thread_lock(clone), open(clone.with_name(clone.name + ".lock"), "a") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield clone
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    # -- prepare ------------------------------------------------------------------------------
    def prepare(self, repo: str, task_id: int, issue_number: int | None, title: str) -> Worktree:
        """The task's worktree (reused if it exists); see the module docstring."""
        _check_repo(repo)
        path = self.worktree_path(task_id)
        meta = self._read_meta(task_id)
        if meta is not None and meta["repo"] != repo:
            raise WorkspaceError(f"task {task_id} already has a worktree of {meta['repo']}, not {repo}")
        url = self.cfg.remote_url(repo)
        with self._locked(repo) as clone, _wrap(f"preparing the worktree of task {task_id} ({repo})"):
            self._ensure_clone(clone, url)
            # By the configured URL, never the clone's remote.origin.url: an agent can edit that.
            self.git.run(
                ["fetch", "--prune", "--no-tags", url, "+refs/heads/*:refs/remotes/origin/*"], cwd=clone, remote_url=url
            )
            if meta is not None and self._is_worktree(path):
                return Worktree(repo, task_id, path, meta["branch"], meta["base_sha"], reused=True)
            self._discard_broken(clone, path)
            base_sha = meta["base_sha"] if meta is not None else self._default_tip(clone, url)
            branch = meta["branch"] if meta is not None else self._free_branch(clone, task_id, issue_number, title)
            self._add_worktree(clone, path, branch, base_sha)
            self._write_meta(task_id, {"repo": repo, "branch": branch, "base_sha": base_sha})
            return Worktree(repo, task_id, path, branch, base_sha)

    def _ensure_clone(self, clone: Path, url: str) -> None:
        if (clone / ".git").is_dir():
            return
        if clone.exists():  # a clone interrupted half-way
            shutil.rmtree(clone)
        self.git.run(["clone", "--no-checkout", "--no-tags", "--origin", "origin", url, str(clone)], remote_url=url)
        for key, value in (
            ("gc.auto", "0"),  # no background gc racing concurrent worktree operations
            ("maintenance.auto", "false"),
            ("user.name", self.cfg.author_name),
            ("user.email", self.cfg.author_email),
        ):
            self.git.run(["config", key, value], cwd=clone)

    def _default_tip(self, clone: Path, url: str) -> str:
        if not self.git.ok(["rev-parse", "--verify", "--quiet", "refs/remotes/origin/HEAD"], cwd=clone):
            # Ask the configured URL (never the clone's own config) which branch is the default.
            out = self.git.out(["ls-remote", "--symref", url, "HEAD"], cwd=clone, remote_url=url)
            head = next((ln.split()[1] for ln in out.splitlines() if ln.startswith("ref:")), "refs/heads/main")
            target = "refs/remotes/origin/" + head.removeprefix("refs/heads/")
            self.git.run(["symbolic-ref", "refs/remotes/origin/HEAD", target], cwd=clone)
        return self.git.out(["rev-parse", "--verify", "refs/remotes/origin/HEAD^{commit}"], cwd=clone)

    def _free_branch(self, clone: Path, task_id: int, issue_number: int | None, title: str) -> str:
        branch = branch_name(self.cfg.branch_prefix, task_id, issue_number, title)
        if self._checked_out_elsewhere(clone, branch):
            branch = f"{branch}-task-{task_id}"
        if not self.git.ok(["check-ref-format", "--branch", branch]):
            raise WorkspaceError(f'"{branch}" is not a valid branch name (check [workspace] branch_prefix)')
        return branch

    def _checked_out_elsewhere(self, clone: Path, branch: str) -> bool:
        listing = self.git.out(["worktree", "list", "--porcelain"], cwd=clone)
        return f"branch refs/heads/{branch}" in listing.splitlines()

    def _add_worktree(self, clone: Path, path: Path, branch: str, base_sha: str) -> None:
        local = f"refs/heads/{branch}"
        tracking = f"refs/remotes/origin/{branch}"
        has_local = self.git.ok(["rev-parse", "--verify", "--quiet", local], cwd=clone)
        has_remote = self.git.ok(["rev-parse", "--verify", "--quiet", tracking], cwd=clone)
        path.parent.mkdir(parents=True, exist_ok=True)
        if has_local:
            if has_remote and self.git.ok(["merge-base", "--is-ancestor", local, tracking], cwd=clone):
                self.git.run(["update-ref", local, tracking], cwd=clone)  # another host went further
            self.git.run(["worktree", "add", str(path), branch], cwd=clone)
        else:
            start = tracking if has_remote else base_sha
            self.git.run(["worktree", "add", "--no-track", "-b", branch, str(path), start], cwd=clone)

    def _is_worktree(self, path: Path) -> bool:
        return (path / ".git").is_file() and self.git.ok(["rev-parse", "--git-dir"], cwd=path)

    def _discard_broken(self, clone: Path, path: Path) -> None:
        """A directory left by a crash between ``worktree add`` and the metadata write."""
        if path.exists():
            shutil.rmtree(path)
        self.git.run(["worktree", "prune"], cwd=clone)

    # -- finish -------------------------------------------------------------------------------
    def finish(self, wt: Worktree, message: str, push: bool) -> Changes:
        """Commit leftovers for the worker, count commits ahead of the base, push when asked."""
        where = wt.path
        with _wrap(f"finishing the worktree of task {wt.task_id} ({wt.repo})"):
            status = self.git.out(["status", "--porcelain=v1", "--untracked-files=all"], cwd=where)
            committed = False
            if status:
                self.git.run(["add", "--all"], cwd=where)
                author = ["-c", f"user.name={self.cfg.author_name}", "-c", f"user.email={self.cfg.author_email}"]
                self.git.run(
                    [*author, "-c", "commit.gpgsign=false", "commit", "--no-verify", "--quiet", "-F", "-"],
                    cwd=where,
                    input=message if message.strip() else "adw: changes left by the worker",
                )
                committed = True
            head = self.git.out(["rev-parse", "HEAD"], cwd=where)
            ahead = int(self.git.out(["rev-list", "--count", f"{wt.base_sha}..{head}"], cwd=where))
            names = self.git.run(["diff", "--name-only", "-z", f"{wt.base_sha}...{head}"], cwd=where).stdout
            changed = sorted(n for n in names.split("\0") if n)
            pushed = False
            if push and ahead > 0:
                pushed = self._push(wt, head)
        return Changes(ahead, committed, pushed, head, changed)

    def _push(self, wt: Worktree, head: str) -> bool:
        tracking = f"refs/remotes/origin/{wt.branch}"
        with self._locked(wt.repo) as clone:
            seen = self.git.run(["rev-parse", "--verify", "--quiet", tracking], cwd=clone, check=False).stdout.strip()
            url = self.cfg.remote_url(wt.repo)  # never the repository's own config: the agent could edit it
            lease = f"--force-with-lease=refs/heads/{wt.branch}:{seen}"
            self.git.run(
                ["push", "--quiet", "--no-verify", lease, url, f"{head}:refs/heads/{wt.branch}"],
                cwd=wt.path,
                remote_url=url,
            )
            self.git.run(["update-ref", tracking, head], cwd=clone)
        return True

    # -- removal and gc -----------------------------------------------------------------------
    def tasks(self) -> list[int]:
        """Task ids that have a worktree directory or metadata under this root."""
        ids: set[int] = set()
        for folder, pattern in ((self.root / "worktrees", r"task-(\d+)"), (self.root / "meta", r"task-(\d+)\.json")):
            if folder.is_dir():
                for entry in folder.iterdir():
                    m = re.fullmatch(pattern, entry.name)
                    if m:
                        ids.add(int(m.group(1)))
        return sorted(ids)

    def remove(self, task_id: int) -> RemovedWorktree | None:
        """Remove the task's worktree (and its local branch if the remote has all of it)."""
        return self._remove(task_id, "requested")

    def _remove(self, task_id: int, reason: str) -> RemovedWorktree | None:
        path = self.worktree_path(task_id)
        meta = self._read_meta(task_id)
        if meta is None and not path.exists():
            return None
        size = disk_usage(path)
        repo = meta["repo"] if meta is not None else None
        with _wrap(f"removing the worktree of task {task_id}"):
            if meta is not None and repo is not None and (self.clone_path(repo) / ".git").is_dir():
                with self._locked(repo) as clone:
                    if self._is_worktree(path):
                        self.git.run(["worktree", "remove", "--force", "--force", str(path)], cwd=clone)
                    elif path.exists():
                        shutil.rmtree(path)
                    self.git.run(["worktree", "prune"], cwd=clone)
                    self._drop_branch_if_pushed(clone, meta["branch"])
            elif path.exists():
                shutil.rmtree(path)
        self._meta_path(task_id).unlink(missing_ok=True)
        return RemovedWorktree(task_id, repo, path, reason, size)

    def _drop_branch_if_pushed(self, clone: Path, branch: str) -> None:
        local = f"refs/heads/{branch}"
        if not self.git.ok(["rev-parse", "--verify", "--quiet", local], cwd=clone):
            return
        if self._checked_out_elsewhere(clone, branch):
            return
        for keeper in (f"refs/remotes/origin/{branch}", "refs/remotes/origin/HEAD"):
            if self.git.ok(["rev-parse", "--verify", "--quiet", keeper], cwd=clone) and self.git.ok(
                ["merge-base", "--is-ancestor", local, keeper], cwd=clone
            ):
                self.git.run(["branch", "-D", branch], cwd=clone)
                return

    def gc(self, now: datetime, is_finished: Callable[[int], datetime | None]) -> GcReport:
        """Remove finished tasks' worktrees older than keep_days, prune, then enforce max_disk_mb.

        ``is_finished(task_id)`` says when the task finished, or None while it is not finished
        (its worktree is never touched).  Under the disk cap, the earliest finished go first.
        """
        report = GcReport()
        finished: list[tuple[datetime, int]] = []
        for task_id in self.tasks():
            at = is_finished(task_id)
            if at is None:
                continue
            if now - at >= timedelta(days=self.cfg.keep_days):
                self._record(report, self._remove(task_id, "age"))
            else:
                finished.append((at, task_id))
        clones = self.root / "clones"
        if clones.is_dir():
            for clone in sorted(clones.iterdir()):
                if (clone / ".git").is_dir():
                    repo = clone.name.replace("__", "/", 1)
                    with self._locked(repo), _wrap(f"pruning {clone}"):
                        self.git.run(["worktree", "prune"], cwd=clone)
        limit = int(self.cfg.max_disk_mb * 1024 * 1024)
        total = disk_usage(self.root)
        for _, task_id in sorted(finished):
            if total <= limit:
                break
            removed = self._remove(task_id, "disk")
            self._record(report, removed)
            total -= removed.bytes if removed is not None else 0
        total = disk_usage(self.root)
        report.bytes_after = total
        report.over_limit = total > limit
        return report

    @staticmethod
    def _record(report: GcReport, removed: RemovedWorktree | None) -> None:
        if removed is not None:
            report.removed.append(removed)
            report.bytes_freed += removed.bytes

    # -- metadata -----------------------------------------------------------------------------
    def _read_meta(self, task_id: int) -> dict[str, str] | None:
        try:
            data = json.loads(self._meta_path(task_id).read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or not all(isinstance(data.get(k), str) for k in ("repo", "branch", "base_sha")):
            return None
        return {k: data[k] for k in ("repo", "branch", "base_sha")}

    def _write_meta(self, task_id: int, meta: dict[str, str]) -> None:
        path = self._meta_path(task_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({**meta, "task_id": task_id}))
        os.replace(tmp, path)


def disk_usage(path: Path) -> int:
    """Bytes used by the files under ``path`` (symlinks not followed, hard links counted once)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    stack = [path]
    while stack:
        current = stack.pop()
        try:
            entries = list(os.scandir(current))
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if entry.is_dir(follow_symlinks=False):
                stack.append(Path(entry.path))
            elif (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total


def _check_repo(repo: str) -> None:
    if not _REPO.match(repo) or any(part in (".", "..") for part in repo.split("/")):
        raise WorkspaceError(f'repository must be "owner/name", got {repo!r}')


@contextmanager
def _wrap(doing: str) -> Iterator[None]:
    """Git failures (and file-system errors) as ``WorkspaceError`` saying what was being done."""
    try:
        yield
    except GitError as exc:
        raise WorkspaceError(f"{doing}: {exc}") from None
    except OSError as exc:
        raise WorkspaceError(f"{doing}: {exc}") from None
