"""Pull requests in the fake GitHub API, through PyGithub: create, duplicate, list, get, as issues."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from github import Github, GithubException, UnknownObjectException

from tests.fakes.github_api import FakeGitHub

REPO = "acme/widgets"


@pytest.fixture
def gh(fake_github: FakeGitHub, make_client: Callable[..., Github]) -> Github:
    fake_github.add_repo(REPO)
    return make_client(fake_github)


def test_create_a_draft_pull_request(fake_github: FakeGitHub, gh: Github) -> None:
    issue = fake_github.add_issue(REPO, "Fix the widget", user="alice")
    sha = fake_github.add_branch(REPO, "adw/1-fix-the-widget", "a" * 40)
    pr = gh.get_repo(REPO).create_pull(
        title="Fix the widget", body=f"Closes #{issue}", head="adw/1-fix-the-widget", base="main", draft=True
    )
    assert pr.number == issue + 1, "pull requests share the issues' number sequence"
    assert (pr.title, pr.body, pr.draft, pr.state, pr.merged) == ("Fix the widget", "Closes #1", True, "open", False)
    assert (pr.head.ref, pr.head.sha, pr.head.label, pr.base.ref) == (
        "adw/1-fix-the-widget",
        sha,
        "acme:adw/1-fix-the-widget",
        "main",
    )
    assert pr.user.login == fake_github.login and pr.html_url.endswith(f"/acme/widgets/pull/{pr.number}")
    (created,) = fake_github.requests_to("POST", "/pulls$")
    assert created.status == 201 and created.response_headers["Location"].endswith(f"/pulls/{pr.number}")
    (pull,) = fake_github.pulls(REPO)
    assert (pull.number, pull.head, pull.base, pull.draft, pull.body) == (
        pr.number,
        pr.head.ref,
        "main",
        True,
        "Closes #1",
    )
    fake_github.assert_valid()


def test_a_second_pull_request_for_an_open_head_is_refused(fake_github: FakeGitHub, gh: Github) -> None:
    fake_github.add_branch(REPO, "adw/2-dup")
    repo = gh.get_repo(REPO)
    repo.create_pull(title="First", body="", head="adw/2-dup", base="main")
    with pytest.raises(GithubException) as err:
        repo.create_pull(title="Again", body="", head="acme:adw/2-dup", base="main")
    assert err.value.status == 422
    assert err.value.data["errors"][0]["message"] == "A pull request already exists for acme:adw/2-dup."
    assert len(fake_github.pulls(REPO)) == 1
    # Once the first is closed, a new one for the same head is fine.
    fake_github.close_issue(REPO, fake_github.pulls(REPO)[0].number, actor="acme")
    assert repo.create_pull(title="Again", body="", head="adw/2-dup", base="main").number == 2
    fake_github.assert_valid()


def test_head_and_base_must_be_branches(fake_github: FakeGitHub, gh: Github) -> None:
    repo = gh.get_repo(REPO)
    for head, base, bad in (("adw/never-pushed", "main", "head"), ("main", "develop", "base")):
        with pytest.raises(GithubException) as err:
            repo.create_pull(title="x", body="", head=head, base=base)
        assert err.value.status == 422 and err.value.data["errors"][0]["field"] == bad
    fake_github.add_branch(REPO, "adw/pushed")
    assert repo.create_pull(title="x", body="", head="adw/pushed", base="main").number == 1
    fake_github.assert_valid()


def test_list_filter_paginate_and_get(fake_github: FakeGitHub, gh: Github) -> None:
    for n in range(5):
        fake_github.add_branch(REPO, f"adw/{n}")
    fake_github.add_branch(REPO, "release")
    repo = gh.get_repo(REPO)
    numbers = [repo.create_pull(title=f"PR {n}", body="", head=f"adw/{n}", base="main").number for n in range(4)]
    other = repo.create_pull(title="to release", body="", head="adw/4", base="release").number
    fake_github.close_issue(REPO, numbers[0], actor="acme")
    plain_issue = fake_github.add_issue(REPO, "Just an issue")

    assert [p.number for p in repo.get_pulls()] == [other, *reversed(numbers[1:])]
    assert [p.number for p in repo.get_pulls(state="closed")] == [numbers[0]]
    assert [p.number for p in repo.get_pulls(state="all", direction="asc")] == [*numbers, other]
    assert [p.number for p in repo.get_pulls(state="all", head="acme:adw/2")] == [numbers[2]]
    assert [p.number for p in repo.get_pulls(base="release")] == [other]

    paged = make_paged_client(fake_github)
    mark = len(fake_github.requests)
    assert [p.number for p in paged.get_repo(REPO).get_pulls(state="all")] == [other, *reversed(numbers)]
    assert len(fake_github.requests_to("GET", "/pulls$", since=mark)) == 3  # 2 + 2 + 1
    paged.close()

    pr = repo.get_pull(numbers[1])
    assert (pr.title, pr.head.ref, pr.mergeable, pr.comments) == ("PR 1", "adw/1", None, 0)
    with pytest.raises(UnknownObjectException):
        repo.get_pull(plain_issue)
    with pytest.raises(UnknownObjectException):
        repo.get_pull(999)
    fake_github.assert_valid()


def make_paged_client(fake: FakeGitHub) -> Github:
    return fake.client(per_page=2)


def test_pull_requests_appear_in_the_issues_list(fake_github: FakeGitHub, gh: Github) -> None:
    fake_github.add_branch(REPO, "adw/9-x")
    issue = fake_github.add_issue(REPO, "An issue")
    repo = gh.get_repo(REPO)
    pr = repo.create_pull(title="A pull", body="", head="adw/9-x", base="main", draft=True)
    listed = {i.number: i for i in repo.get_issues(state="all")}
    assert set(listed) == {issue, pr.number}
    link = listed[pr.number].pull_request
    assert link is not None and link.url.endswith(f"/pulls/{pr.number}")
    assert listed[issue].raw_data.get("pull_request") is None
    as_issue = repo.get_issue(pr.number)
    assert as_issue.title == "A pull" and as_issue.raw_data["draft"] is True
    # A PR made with add_issue(pull_request=True) is served by the pulls endpoints too.
    legacy = fake_github.add_issue(REPO, "Older PR", pull_request=True)
    assert repo.get_pull(legacy).head.ref == f"pr-{legacy}"
    fake_github.assert_valid()


def test_edit_a_pull_request(fake_github: FakeGitHub, gh: Github) -> None:
    fake_github.add_branch(REPO, "adw/3-edit")
    repo = gh.get_repo(REPO)
    pr = repo.create_pull(title="Old", body="old body", head="adw/3-edit", base="main", draft=True)
    pr.edit(body="new body", title="New")
    again = repo.get_pull(pr.number)
    assert (again.title, again.body, again.draft, again.state) == ("New", "new body", True, "open")
    with pytest.raises(GithubException) as bad:
        pr.edit(base="no-such-branch")
    assert bad.value.status == 422
    pr.edit(state="closed")
    assert fake_github.pull(REPO, pr.number).state == "closed"
    plain = fake_github.add_issue(REPO, "Not a pull request", user="alice")
    with pytest.raises(UnknownObjectException):
        gh.requester.requestJsonAndCheck("PATCH", f"/repos/{REPO}/pulls/{plain}", input={"body": "x"})
    fake_github.assert_valid()
