"""Issue -> worktree -> agent edits -> branch pushed to a real (local bare) remote -> draft PR on the
fake GitHub; no-change answers, failed attempts, failover on the same branch, /adw retry, gc."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from adw_modules.config.schema import load_config
from adw_modules.coordinator import Coordinator
from adw_modules.queue.store import Store
from adw_modules.queue.store.schema import tasks as tasks_t
from adw_modules.queue.tasks import TaskState
from adw_modules.sources.github.client import GitHubClient
from adw_modules.sources.github.source import GitHubSource
from adws.cli import cli
from tests.fakes.github_api import FAKE_TOKEN, FakeGitHub

REPO = "acme/app"
AGENT = Path(__file__).resolve().parent / "agent.py"
GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@x",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@x",
    "PATH": "/usr/bin:/bin",
    "HOME": "/nonexistent",
    # The test's git reads no configuration of this machine or its users.
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True, env=GIT_ENV).stdout


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    bare = tmp_path / "remote" / f"{REPO}.git"
    bare.mkdir(parents=True)
    git("init", "-q", "--bare", "-b", "main", str(bare), cwd=tmp_path)
    seed = tmp_path / "seed"
    git("clone", "-q", str(bare), str(seed), cwd=tmp_path)
    (seed / "README.md").write_text("app\n")
    git("add", "-A", cwd=seed)
    git("commit", "-q", "-m", "seed", cwd=seed)
    git("push", "-q", "origin", "HEAD:main", cwd=seed)
    return bare


@pytest.fixture
def fake() -> Iterator[FakeGitHub]:
    with FakeGitHub() as f:
        f.add_repo(REPO)
        f.set_permission(REPO, "maintainer", "write")
        f.set_permission(REPO, "adw-bot", "write")
        yield f
        f.assert_valid()


class Rig:
    def __init__(self, tmp_path: Path, fake: FakeGitHub, remote: Path, providers: str, extra: str = "") -> None:
        self.fake = fake
        self.remote = remote
        path = tmp_path / "config.toml"
        path.write_text(
            providers
            + textwrap.dedent(
                f"""
                [routing]
                default_provider = "a"
                default_model = "alpha"
                fallback = ["b:beta"]
                [coordinator]
                max_concurrency = 4
                retry_base_s = 0.01
                retry_max_s = 0.01
                state_dir = "state"
                {extra}
                [github]
                repositories = ["{REPO}"]
                base_url = "{fake.base_url}"
                [workspace]
                remote = "{remote.parent.parent}/{{repo}}.git"
                """
            )
        )
        self.config = load_config(path)
        self.store = Store.open(f"sqlite:///{tmp_path / 'state' / 'adw.db'}")
        assert self.config.github is not None
        client = GitHubClient(fake.base_url, FAKE_TOKEN, pace_s=(0, 0))
        self.source = GitHubSource(self.config.github, self.store, client)
        self.coord = Coordinator(self.config, self.store, environ={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
        self.coord.prompt_renderers["github"] = self.source.prompt
        self.coord.startup()

    def issue(self, title: str) -> int:
        n = self.fake.add_issue(REPO, title, user="someone", body="please fix")
        self.fake.label_issue(REPO, n, "adw", actor="maintainer")
        return n

    def run(self) -> None:
        assert self.source.poll()
        for _ in range(10):
            started = self.coord.dispatch()
            assert self.coord.wait_idle(30)
            self.publish_branches()
            assert self.source.sync()
            if not started:
                return

    def publish_branches(self) -> None:
        """Mirror the bare remote's branches into the fake GitHub (what a push to GitHub would do)."""
        for line in git(
            "for-each-ref", "--format=%(refname:short) %(objectname)", "refs/heads", cwd=self.remote
        ).splitlines():
            name, sha = line.split()
            if name != "main":
                self.fake.add_branch(REPO, name, sha)

    def task(self, n: int):
        t = self.store.find_task("github", f"{REPO}#{n}")
        assert t is not None
        return t

    def comment(self, n: int) -> str:
        (body,) = [c.body for c in self.fake.comments(REPO, n) if "<!-- adw:progress" in c.body]
        return body


def provider(name: str, mode: str = "edit") -> str:
    return textwrap.dedent(
        f"""
        [providers.{name}]
        command_template = ["{sys.executable}", "{AGENT}", "--model", "{{model}}"]
        prompt_stdin = true
        env = {{ AGENT_MODE = "{mode}" }}
        timeout = 30
        """
    )


def test_two_concurrent_tasks_get_separate_worktrees_and_draft_prs(
    tmp_path: Path, fake: FakeGitHub, remote: Path
) -> None:
    rig = Rig(tmp_path, fake, remote, provider("a") + provider("b"))
    n1, n2 = rig.issue("Fix login"), rig.issue("Fix logout")
    rig.run()
    ws1 = rig.store.source_state(rig.task(n1).id)["workspace"]
    ws2 = rig.store.source_state(rig.task(n2).id)["workspace"]
    assert ws1["branch"] == f"adw/{n1}-fix-login" and ws2["branch"] == f"adw/{n2}-fix-logout"
    assert ws1["commits_ahead"] == 1 and ws1["changed_files"] == ["alpha.txt"]
    assert git("ls-remote", "--heads", str(remote), cwd=tmp_path).count("refs/heads/adw/") == 2
    pulls = fake.pulls(REPO)
    assert sorted(p.head for p in pulls) == sorted([ws1["branch"], ws2["branch"]])
    assert all(p.draft for p in pulls)
    bodies = {p.head: p.issue.body or "" for p in pulls}
    assert bodies[ws1["branch"]].startswith(f"Fixes #{n1}") and "`a` / `alpha`" in bodies[ws1["branch"]]
    for n in (n1, n2):
        assert {"adw:done", "adw:pr-open"} <= set(fake.issue_labels(REPO, n))
        assert "| Pull request | [#" in rig.comment(n)
    worktrees = {p.name for p in (tmp_path / "state" / "workspaces" / "worktrees").iterdir()}
    assert worktrees == {f"task-{rig.task(n1).id}", f"task-{rig.task(n2).id}"}


def test_no_change_is_an_answer_not_a_failure(tmp_path: Path, fake: FakeGitHub, remote: Path) -> None:
    rig = Rig(tmp_path, fake, remote, provider("a", "none") + provider("b"))
    n = rig.issue("Does login retry?")
    rig.run()
    assert rig.task(n).state is TaskState.SUCCEEDED
    assert fake.pulls(REPO) == [] and "adw:pr-open" not in fake.issue_labels(REPO, n)
    body = rig.comment(n)
    assert "none: the agent answered without changing code" in body
    assert "Nothing to change: the code already does this." in body


def test_failed_attempt_keeps_its_work_on_a_pushed_branch(tmp_path: Path, fake: FakeGitHub, remote: Path) -> None:
    rig = Rig(tmp_path, fake, remote, provider("a", "fail") + provider("b", "fail"), extra="max_attempts = 1")
    n = rig.issue("Break things")
    rig.run()
    assert rig.task(n).state is TaskState.FAILED
    ws = rig.store.source_state(rig.task(n).id)["workspace"]
    assert ws["pushed"] and ws["commits_ahead"] == 1
    assert f"refs/heads/{ws['branch']}" in git("ls-remote", "--heads", str(remote), cwd=tmp_path)
    assert fake.pulls(REPO) == []
    assert f"| Branch | `{ws['branch']}` (1 commit(s), work kept) |" in rig.comment(n)


def test_failover_continues_on_the_same_branch(tmp_path: Path, fake: FakeGitHub, remote: Path) -> None:
    rig = Rig(tmp_path, fake, remote, provider("a", "rate_limit") + provider("b"))
    n = rig.issue("Half done")
    rig.run()
    attempts = rig.store.attempts_for(rig.task(n).id)
    assert [(a.provider, a.outcome) for a in attempts] == [("a", "rate_limited"), ("b", "success")]
    ws = rig.store.source_state(rig.task(n).id)["workspace"]
    clone = tmp_path / "check"
    git("clone", "-q", "-b", ws["branch"], str(remote), str(clone), cwd=tmp_path)
    assert (clone / "alpha.txt").exists()  # what the rate-limited attempt did was kept …
    assert "alpha.txt" in (clone / "beta.txt").read_text()  # … and the fallback model saw it
    (pr,) = fake.pulls(REPO)
    assert pr.head == ws["branch"]


def test_adw_retry_command_from_a_writer_requeues_with_the_thread(
    tmp_path: Path, fake: FakeGitHub, remote: Path
) -> None:
    rig = Rig(tmp_path, fake, remote, provider("a", "none") + provider("b"))
    n = rig.issue("Question")
    rig.run()
    task = rig.task(n)
    assert task.state is TaskState.SUCCEEDED
    fake.add_comment(REPO, n, "/adw please also update the docs", user="stranger")
    rig.run()
    assert rig.task(n).state is TaskState.SUCCEEDED and len(rig.store.attempts_for(task.id)) == 1
    assert any("adw:refused-command" in c.body for c in fake.comments(REPO, n))
    fake.add_comment(REPO, n, "/adw please also update the docs", user="maintainer")
    assert rig.source.poll()
    requeued = rig.task(n)
    assert requeued.state is TaskState.QUEUED
    prompt = rig.source.prompt(requeued)
    assert "Follow-up request from @maintainer:\nplease also update the docs" in prompt
    rig.run()
    assert len(rig.store.attempts_for(task.id)) == 2 and rig.task(n).state is TaskState.SUCCEEDED


def test_workspace_gc_removes_finished_worktrees(tmp_path: Path, fake: FakeGitHub, remote: Path) -> None:
    rig = Rig(tmp_path, fake, remote, provider("a") + provider("b"))
    n = rig.issue("Tidy")
    rig.run()
    worktree = tmp_path / "state" / "workspaces" / "worktrees" / f"task-{rig.task(n).id}"
    assert worktree.exists()
    # Finished an hour ago, kept for about 15 minutes: old enough however slow this run is.
    an_hour_ago = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    with rig.store.engine.begin() as conn:
        conn.execute(sa.update(tasks_t).where(tasks_t.c.id == rig.task(n).id).values(updated_at=an_hour_ago))
    path = rig.config.path
    path.write_text(path.read_text().replace("[workspace]\n", "[workspace]\nkeep_days = 0.01\n"))
    r = CliRunner().invoke(cli, ["workspace", "gc", "--config", str(path), "--json"])
    assert r.exit_code == 0, r.output
    assert not worktree.exists() and f'"task_id": {rig.task(n).id}' in r.output


def test_adw_command_on_the_pull_request_requeues_the_task(tmp_path: Path, fake: FakeGitHub, remote: Path) -> None:
    rig = Rig(tmp_path, fake, remote, provider("a") + provider("b"))
    n = rig.issue("Add a feature")
    rig.run()
    (pr,) = fake.pulls(REPO)
    assert pr.body is not None and "1 attempt(s)" in pr.body
    assert fake.requests_to("PATCH", "/pulls/") == []  # opened with its description: nothing to edit
    assert rig.source.poll()  # the first look at the PR's conversation
    fake.clear_log()
    assert rig.source.poll()
    pr_reads = [r for r in fake.requests if r.path.endswith(f"/issues/{pr.issue.number}/comments")]
    assert [r.status for r in pr_reads] == [304] and pr_reads[0].points == 0  # watching a quiet PR is free
    fake.add_review(
        REPO, pr.number, "Close, but the error path is missing.", user="reviewer", state="CHANGES_REQUESTED"
    )
    fake.add_review_comment(
        REPO, pr.number, "This raises on empty input <!-- hidden -->", user="reviewer", path="app.py", line=3
    )
    fake.advance_clock(5)
    fake.add_comment(REPO, pr.issue.number, "/adw also cover the error path", user="maintainer")
    assert rig.source.poll()
    task = rig.task(n)
    assert task.state is TaskState.QUEUED
    prompt = rig.source.prompt(task)
    review = prompt.index("Review by @reviewer (changes requested):\nClose, but the error path is missing.")
    inline = prompt.index("Review comment by @reviewer on app.py:3:\nThis raises on empty input")
    command = prompt.index("Comment on the pull request by @maintainer:\n/adw also cover the error path")
    follow_up = prompt.index("Follow-up request from @maintainer:\nalso cover the error path")
    assert review < inline < command < follow_up  # the review in the order it happened, then the request
    assert "hidden" not in prompt  # sanitised like the issue text
    rig.run()
    attempts = rig.store.attempts_for(task.id)
    assert len(attempts) == 2 and rig.task(n).state is TaskState.SUCCEEDED
    assert len(fake.pulls(REPO)) == 1  # the same branch and the same pull request carry on
    assert pr.body is not None and "2 attempt(s)" in pr.body  # its description follows the new run
    (edit,) = fake.requests_to("PATCH", f"/pulls/{pr.number}$")
    assert edit.status == 200
    assert rig.source.sync()
    assert len(fake.requests_to("PATCH", "/pulls/")) == 1  # unchanged since: not edited again


def test_a_pr_command_is_answered_on_the_pr_and_its_commit_names_the_instruction(
    tmp_path: Path, fake: FakeGitHub, remote: Path
) -> None:
    rig = Rig(tmp_path, fake, remote, provider("a") + provider("b"))
    n = rig.issue("Add a feature")
    rig.run()
    (pr,) = fake.pulls(REPO)
    assert ("adw-bot", "eyes") in fake.reactions(REPO, f"issues/{n}")  # the label was taken
    assert ("adw-bot", "rocket") in fake.reactions(REPO, f"issues/{n}")  # the pull request opened
    assert rig.source.poll()
    cid = fake.add_comment(REPO, pr.issue.number, "/adw also cover the error path", user="maintainer")
    assert rig.source.poll()
    assert fake.reactions(REPO, f"issues/comments/{cid}") == [("adw-bot", "eyes")]
    (taken,) = [c for c in fake.comments(REPO, pr.issue.number) if "adw:pr-reply" in c.body]
    assert "@maintainer's request is taken: also cover the error path." in taken.body
    rig.run()
    (reply,) = [c for c in fake.comments(REPO, pr.issue.number) if "adw:pr-reply" in c.body]
    assert reply.id == taken.id and "✅ done" in reply.body  # edited in place when the round ended
    assert "This round: 1 attempt(s), cost $" in reply.body
    log = git("log", "--format=%s%n%b", "-1", pr.head, cwd=remote)
    assert log.startswith(f"adw: also cover the error path (#{n})")
    assert "Follow-up requested by @maintainer:\nalso cover the error path" in log
    assert "Issue: Add a feature" in log
