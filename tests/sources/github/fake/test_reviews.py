"""Pull-request reviews and review comments in the fake GitHub API, through PyGithub."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from github import Github, UnknownObjectException

from tests.fakes.github_api import FakeGitHub

REPO = "acme/widgets"
OTHER_TOKEN = "ghp_AliceFakeToken000000000000000000000000"


@pytest.fixture
def gh(fake_github: FakeGitHub, make_client: Callable[..., Github]) -> Github:
    fake_github.add_repo(REPO)
    return make_client(fake_github)


def open_pull(fake: FakeGitHub, gh: Github, branch: str = "adw/1-fix") -> int:
    fake.add_branch(REPO, branch, "c" * 40)
    return gh.get_repo(REPO).create_pull(title="Fix", body="", head=branch, base="main").number


def test_list_review_comments_and_reviews(fake_github: FakeGitHub, gh: Github) -> None:
    number = open_pull(fake_github, gh)
    fake_github.set_permission(REPO, "bob", "write")
    first = fake_github.add_review_comment(REPO, number, "Needs a test", user="alice", path="src/app.py", line=12)
    second = fake_github.add_review_comment(REPO, number, "Typo", user="bob")
    approved = fake_github.add_review(REPO, number, "LGTM", user="bob", state="APPROVED")
    changes = fake_github.add_review(REPO, number, "Please split this", user="carol", state="CHANGES_REQUESTED")

    pr = gh.get_repo(REPO).get_pull(number)
    comments = list(pr.get_review_comments())
    assert [(c.id, c.body, c.user.login, c.path, c.raw_data["line"]) for c in comments] == [
        (first, "Needs a test", "alice", "src/app.py", 12),
        (second, "Typo", "bob", "README.md", 1),
    ]
    assert comments[0].commit_id == comments[0].original_commit_id == "c" * 40
    assert comments[0].html_url.endswith(f"/acme/widgets/pull/{number}#discussion_r{first}")
    assert comments[0].pull_request_url.endswith(f"/pulls/{number}")
    assert (comments[0].raw_data["side"], comments[1].raw_data["author_association"]) == ("RIGHT", "COLLABORATOR")

    reviews = list(pr.get_reviews())
    assert [(r.user.login, r.state, r.body) for r in reviews] == [
        ("alice", "COMMENTED", ""),  # GitHub wraps a single review comment in a review of its own
        ("bob", "COMMENTED", ""),
        ("bob", "APPROVED", "LGTM"),
        ("carol", "CHANGES_REQUESTED", "Please split this"),
    ]
    assert [c.pull_request_review_id for c in comments] == [r.id for r in reviews[:2]]
    assert [r.id for r in reviews[2:]] == [approved, changes]
    assert all(r.commit_id == "c" * 40 and r.submitted_at is not None for r in reviews)
    assert reviews[2].html_url.endswith(f"/pull/{number}#pullrequestreview-{approved}")
    assert pr.get_review(approved).body == "LGTM"
    assert pr.get_review_comment(first).body == "Needs a test"
    assert pr.review_comments == 2 and pr.comments == 0  # issue comments are counted apart

    assert [c.id for c in fake_github.review_comments(REPO, number)] == [first, second]
    assert [r.state for r in fake_github.reviews(REPO, number)] == [r.state for r in reviews]
    fake_github.assert_valid()


def test_review_activity_bumps_the_pull_requests_updated_at(fake_github: FakeGitHub, gh: Github) -> None:
    number = open_pull(fake_github, gh)
    repo = gh.get_repo(REPO)

    def served(stamp: datetime | None) -> float:
        assert stamp is not None
        return stamp.timestamp()

    created = served(repo.get_pull(number).updated_at)
    fake_github.advance_clock(60)
    fake_github.add_review_comment(REPO, number, "nit", user="alice")
    after_comment = served(repo.get_pull(number).updated_at)
    assert after_comment - created >= 60
    fake_github.advance_clock(60)
    fake_github.add_review(REPO, number, "ok", user="bob", state="APPROVED")
    after_review = served(repo.get_issue(number).updated_at)  # the issue view moves too
    assert after_review - after_comment >= 60
    # A pending review is a draft: nothing is submitted, nothing changes.
    fake_github.advance_clock(60)
    fake_github.add_review(REPO, number, "draft", user="carol", state="PENDING")
    assert served(repo.get_pull(number).updated_at) == after_review
    fake_github.assert_valid()


def test_review_comments_paginate_past_30(
    fake_github: FakeGitHub, gh: Github, make_client: Callable[..., Github]
) -> None:
    number = open_pull(fake_github, gh)
    ids = [fake_github.add_review_comment(REPO, number, f"comment {i}", user="alice", line=i + 1) for i in range(35)]
    paged = make_client(fake_github, per_page=30)  # PyGithub's default: it sends no per_page at all
    pr = paged.get_repo(REPO).get_pull(number)
    mark = len(fake_github.requests)
    assert [c.id for c in pr.get_review_comments()] == ids
    first, second = fake_github.requests_to("GET", r"/comments$", since=mark)
    assert "per_page" not in first.query and first.response_headers["Link"].count('rel="next"') == 1
    assert second.path == f"/repositories/{fake_github.repo(REPO).id}/pulls/{number}/comments"
    assert second.query["page"] == ["2"] and 'rel="next"' not in second.response_headers["Link"]
    # Every single comment brought its own review, so the reviews list pages too.
    mark = len(fake_github.requests)
    assert len(list(pr.get_reviews())) == 35
    assert len(fake_github.requests_to("GET", r"/reviews$", since=mark)) == 2
    fake_github.assert_valid()


def test_sort_direction_and_since(fake_github: FakeGitHub, gh: Github) -> None:
    number = open_pull(fake_github, gh)
    old = fake_github.add_review_comment(REPO, number, "old", user="alice")
    fake_github.advance_clock(3600)
    new = fake_github.add_review_comment(REPO, number, "new", user="alice")
    pr = gh.get_repo(REPO).get_pull(number)
    assert [c.id for c in pr.get_review_comments(sort="created", direction="desc")] == [new, old]
    assert [c.id for c in pr.get_review_comments(direction="desc")] == [old, new]  # ignored without sort
    cutoff = datetime.fromtimestamp(fake_github.now() - 60, UTC)
    assert [c.id for c in pr.get_review_comments(since=cutoff)] == [new]
    fake_github.assert_valid()


def test_not_a_pull_request_is_404(fake_github: FakeGitHub, gh: Github) -> None:
    number = open_pull(fake_github, gh)
    plain = fake_github.add_issue(REPO, "Just an issue", user="alice")
    for target in (plain, 999):
        for tail in ("comments", "reviews"):
            with pytest.raises(UnknownObjectException) as err:
                gh.requester.requestJsonAndCheck("GET", f"/repos/{REPO}/pulls/{target}/{tail}")
            assert err.value.data["message"] == "Not Found"
    pr = gh.get_repo(REPO).get_pull(number)
    with pytest.raises(UnknownObjectException):
        pr.get_review(424242)
    with pytest.raises(UnknownObjectException):
        pr.get_review_comment(424242)
    with pytest.raises(KeyError):
        fake_github.add_review_comment(REPO, plain, "x", user="alice")
    with pytest.raises(KeyError):
        fake_github.add_review(REPO, plain, "x", user="alice")
    fake_github.assert_valid()


def test_conditional_requests_see_new_review_activity(fake_github: FakeGitHub, gh: Github) -> None:
    number = open_pull(fake_github, gh)
    fake_github.add_review_comment(REPO, number, "first", user="alice")
    for tail in ("comments", "reviews"):
        url = f"/repos/{REPO}/pulls/{number}/{tail}"
        status, headers, _ = gh.requester.requestJson("GET", url)
        etag = headers["etag"]
        assert status == 200
        used = fake_github.points_used()
        status, headers, body = gh.requester.requestJson("GET", url, headers={"If-None-Match": etag})
        assert (status, body, headers["etag"]) == (304, "", etag)
        assert fake_github.points_used() == used  # 304s are free

        fake_github.add_review_comment(REPO, number, f"more {tail}", user="bob")
        status, headers, body = gh.requester.requestJson("GET", url, headers={"If-None-Match": etag})
        assert status == 200 and headers["etag"] != etag
        assert len(json.loads(body)) == (2 if tail == "comments" else 3)
    fake_github.assert_valid()


def test_review_rules(fake_github: FakeGitHub, gh: Github, make_client: Callable[..., Github]) -> None:
    number = open_pull(fake_github, gh)  # opened by the token's user, adw-bot
    with pytest.raises(ValueError, match="own pull request"):
        fake_github.add_review(REPO, number, "", user=fake_github.login, state="APPROVED")
    with pytest.raises(ValueError, match="own pull request"):
        fake_github.add_review(REPO, number, "", user=fake_github.login, state="CHANGES_REQUESTED")
    with pytest.raises(ValueError, match="unknown review state"):
        fake_github.add_review(REPO, number, "", user="alice", state="REQUEST_CHANGES")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="line"):
        fake_github.add_review_comment(REPO, number, "", user="alice", line=0)
    own = fake_github.add_review(REPO, number, "note to self", user=fake_github.login)
    pending = fake_github.add_review(REPO, number, "draft", user="alice", state="PENDING")
    with pytest.raises(ValueError, match="one pending review"):
        fake_github.add_review(REPO, number, "again", user="alice", state="PENDING")

    # A pending review is visible to its author only, and has no submitted_at yet.
    assert [r.id for r in gh.get_repo(REPO).get_pull(number).get_reviews()] == [own]
    fake_github.add_token(OTHER_TOKEN, "alice")
    as_alice = make_client(fake_github, token=OTHER_TOKEN).get_repo(REPO).get_pull(number)
    (mine,) = [r for r in as_alice.get_reviews() if r.id == pending]
    assert mine.state == "PENDING" and "submitted_at" not in mine.raw_data
    with pytest.raises(UnknownObjectException):
        gh.get_repo(REPO).get_pull(number).get_review(pending)
    fake_github.assert_valid()
