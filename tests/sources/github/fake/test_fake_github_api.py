"""The fake GitHub REST API behaves like GitHub for what PyGithub asks of it.

All tests in this module share one strict fake (each on its own repository); the last test checks
that every JSON body served during the whole module was validated against GitHub's OpenAPI
description and that none failed.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from itertools import count
from urllib.parse import parse_qs, urlsplit

import pytest
from github import BadCredentialsException, Github, GithubException, UnknownObjectException

from tests.fakes.github_api import FAKE_TOKEN, FakeGitHub
from tests.github_openapi import ResponseValidator

_repo_numbers = count(1)


@pytest.fixture(scope="module")
def fake(openapi_validator: ResponseValidator) -> Iterator[FakeGitHub]:
    with FakeGitHub(validator=openapi_validator) as server:
        yield server
    # Every JSON body the module's tests were served was checked against the OpenAPI description.
    served = [r for r in server.requests if r.response_headers.get("Content-Type", "").startswith("application/json")]
    assert served and all(r.validated for r in served)
    server.assert_valid()


@pytest.fixture(scope="module")
def gh(fake: FakeGitHub) -> Iterator[Github]:
    client = fake.client()
    yield client
    client.close()


@pytest.fixture
def repo_name(fake: FakeGitHub) -> str:
    """A fresh repository owned by ``acme`` for each test."""
    name = f"acme/widgets-{next(_repo_numbers)}"
    fake.add_repo(name)
    return name


def test_the_token_user_is_the_authenticated_user_with_its_scopes(fake: FakeGitHub, gh: Github) -> None:
    mark = len(fake.requests)
    me = gh.get_user()
    assert me.login == "adw-bot"
    assert me.type == "User"
    (request,) = fake.requests_to("GET", "^/user$", since=mark)
    assert request.headers["authorization"] == f"token {FAKE_TOKEN}"
    assert request.response_headers["X-OAuth-Scopes"] == "repo, read:org"
    fake.add_user("dependabot[bot]", type="Bot")
    assert gh.get_user("dependabot[bot]").type == "Bot"
    with pytest.raises(UnknownObjectException):
        gh.get_user("no-such-user").type  # noqa: B018


def test_a_bot_token_authenticates_as_a_bot(fake: FakeGitHub) -> None:
    fake.add_token("ghs_FakeInstallationToken000000000000000", "adw-app[bot]", user_type="Bot")
    with fake.client("ghs_FakeInstallationToken000000000000000") as client:
        me = client.get_user()
        assert (me.login, me.type) == ("adw-app[bot]", "Bot")


def test_listing_past_100_follows_githubs_link_header_page_by_page(
    fake: FakeGitHub, gh: Github, repo_name: str
) -> None:
    fake.add_issues(repo_name, 250, labels=["agent:ready"], user="alice")
    fake.add_issues(repo_name, 20, title="Unlabelled", user="alice")
    fake.add_issue(repo_name, "Closed and labelled", labels=["agent:ready"], state="closed")
    repo = gh.get_repo(repo_name)
    mark = len(fake.requests)

    issues = list(repo.get_issues(state="open", labels=["agent:ready"]))

    assert len(issues) == 250
    assert [i.number for i in issues] == list(range(250, 0, -1))  # newest first, like GitHub
    assert all(i.title.startswith("Issue ") for i in issues)
    pages = fake.requests_to("GET", "/issues$", since=mark)
    assert len(pages) == 3
    assert pages[0].path == f"/repos/{repo_name}/issues"
    repo_id = fake.repo(repo_name).id
    assert [p.path for p in pages[1:]] == [f"/repositories/{repo_id}/issues"] * 2
    assert [p.query.get("page") for p in pages] == [None, ["2"], ["3"]]
    assert all(p.query["labels"] == ["agent:ready"] and p.query["per_page"] == ["100"] for p in pages)
    assert sum(r.points for r in fake.requests[mark:]) == 3


def test_link_header_has_githubs_rels_and_total_count_uses_the_last_page(
    fake: FakeGitHub, gh: Github, repo_name: str
) -> None:
    fake.add_issues(repo_name, 7)
    repo = gh.get_repo(repo_name)
    mark = len(fake.requests)
    paginated = repo.get_issues()
    assert paginated.totalCount == 7  # PyGithub asks for per_page=1 and reads rel="last"

    (request,) = fake.requests[mark:]
    links = {
        rel.split('"')[1]: urlsplit(url.strip("<> "))
        for url, rel in (part.split(";") for part in request.response_headers["Link"].split(","))
    }
    assert set(links) == {"next", "last"}
    assert parse_qs(links["last"].query) == {"per_page": ["1"], "page": ["7"]}

    headers, _ = gh.requester.requestJsonAndCheck(
        "GET", f"/repos/{repo_name}/issues", parameters={"per_page": 3, "page": 2}
    )
    rels = [part.split('rel="')[1].rstrip('"') for part in headers["link"].split(", ")]
    assert rels == ["prev", "next", "last", "first"]


def test_label_filter_needs_every_label_case_insensitively(fake: FakeGitHub, gh: Github, repo_name: str) -> None:
    both = fake.add_issue(repo_name, "both", labels=["Bug", "agent:ready"])
    fake.add_issue(repo_name, "bug only", labels=["bug"])
    fake.add_issue(repo_name, "ready only", labels=["agent:ready"])
    repo = gh.get_repo(repo_name)
    assert [i.number for i in repo.get_issues(labels=["bug", "AGENT:READY"])] == [both]
    assert {i.title for i in repo.get_issues(labels=["bug"])} == {"both", "bug only"}


def test_pull_requests_are_in_the_issues_list_with_a_pull_request_object(
    fake: FakeGitHub, gh: Github, repo_name: str
) -> None:
    issue = fake.add_issue(repo_name, "an issue", labels=["agent:ready"])
    pr = fake.add_issue(repo_name, "a pull request", labels=["agent:ready"], pull_request=True)
    listed = {i.number: i for i in gh.get_repo(repo_name).get_issues(labels=["agent:ready"])}
    assert set(listed) == {issue, pr}
    assert "pull_request" not in listed[issue].raw_data
    marker = listed[pr].raw_data["pull_request"]
    assert marker["url"].endswith(f"/repos/{repo_name}/pulls/{pr}")
    assert listed[pr].html_url == f"https://github.com/{repo_name}/pull/{pr}"
    pull = listed[pr].pull_request
    assert pull is not None and pull.html_url == listed[pr].html_url


def test_reading_pull_request_of_a_listed_plain_issue_costs_a_request_per_issue(
    fake: FakeGitHub, gh: Github, repo_name: str
) -> None:
    # A PyGithub quirk the fake makes visible: list items are "incomplete" objects, and the list
    # body has no `pull_request` for a plain issue (GitHub omits it), so reading `.pull_request`
    # (or `.raw_data`) makes PyGithub GET each issue.  Only the private `_rawData` is free.
    fake.add_issues(repo_name, 3)
    issues = list(gh.get_repo(repo_name).get_issues())
    mark = len(fake.requests)
    assert all("pull_request" not in i._rawData for i in issues)
    assert len(fake.requests) == mark
    assert all(i.pull_request is None for i in issues)
    assert [r.path for r in fake.requests[mark:]] == [f"/repos/{repo_name}/issues/{n}" for n in (3, 2, 1)]
    assert all("pull_request" not in i.raw_data for i in issues)  # now complete: no further request
    assert len(fake.requests) == mark + 3


def test_state_since_and_sort_filters(fake: FakeGitHub, gh: Github, repo_name: str) -> None:
    old = fake.add_issue(repo_name, "old")
    closed = fake.add_issue(repo_name, "closed", state="closed")
    fake.advance_clock(120)
    cutoff = datetime.fromtimestamp(int(fake.now()), UTC)
    fake.advance_clock(60)
    new = fake.add_issue(repo_name, "new")
    repo = gh.get_repo(repo_name)

    assert [i.number for i in repo.get_issues()] == [new, old]
    assert [i.number for i in repo.get_issues(state="closed")] == [closed]
    assert {i.number for i in repo.get_issues(state="all")} == {old, closed, new}
    assert [i.number for i in repo.get_issues(since=cutoff)] == [new]
    assert [i.number for i in repo.get_issues(sort="created", direction="asc")] == [old, new]

    fake.advance_clock(60)
    fake.label_issue(repo_name, old, "touched", actor="alice")  # updates updated_at
    assert [i.number for i in repo.get_issues(since=cutoff, sort="updated")] == [old, new]
    with pytest.raises(GithubException) as info:
        list(repo.get_issues(state="bogus"))
    assert info.value.status == 422


def test_events_show_who_labelled_unlabelled_closed_and_reopened(fake: FakeGitHub, gh: Github, repo_name: str) -> None:
    n = fake.add_issue(repo_name, "task", user="alice")
    fake.label_issue(repo_name, n, "agent:ready", actor="mallory")
    fake.label_issue(repo_name, n, "agent:ready", actor="bob")  # already there: no new event
    fake.unlabel_issue(repo_name, n, "agent:ready", actor="bob")
    fake.label_issue(repo_name, n, "agent:ready", actor="carol")
    fake.close_issue(repo_name, n, actor="dave", state_reason="not_planned")
    fake.reopen_issue(repo_name, n, actor="erin")
    fake.add_comment(repo_name, n, "why?", user="frank")
    issue = gh.get_repo(repo_name).get_issue(n)

    events = [(e.event, e.actor.login, e.raw_data.get("label", {}).get("name")) for e in issue.get_events()]
    assert events == [
        ("labeled", "mallory", "agent:ready"),
        ("unlabeled", "bob", "agent:ready"),
        ("labeled", "carol", "agent:ready"),
        ("closed", "dave", None),
        ("reopened", "erin", None),
    ]
    assert [e.raw_data.get("state_reason") for e in issue.get_events()][3] == "not_planned"
    timeline = [(e.event, e.actor.login) for e in issue.get_timeline()]
    assert timeline == [*((event, actor) for event, actor, _ in events), ("commented", "frank")]
    # The latest `labeled` event for the trigger label names who applied it now (the security check).
    latest = [e for e in issue.get_events() if e.event == "labeled" and e.label.name == "agent:ready"][-1]
    assert latest.actor.login == "carol"


def test_events_are_paginated_in_time_order(fake: FakeGitHub, repo_name: str) -> None:
    n = fake.add_issue(repo_name, "busy")
    for i in range(130):
        fake.label_issue(repo_name, n, f"l{i}", actor="alice")
    mark = len(fake.requests)
    with fake.client(per_page=50) as client:
        names = [e.label.name for e in client.get_repo(repo_name).get_issue(n).get_events()]
    assert names == [f"l{i}" for i in range(130)]
    assert len(fake.requests_to("GET", "/events$", since=mark)) == 3


@pytest.mark.parametrize(
    ("role", "legacy"),
    [
        ("admin", "admin"),
        ("maintain", "write"),
        ("write", "write"),
        ("triage", "read"),
        ("read", "read"),
        ("none", "none"),
    ],
)
def test_permission_lookup_gives_legacy_permission_and_role_name(
    fake: FakeGitHub, gh: Github, repo_name: str, role: str, legacy: str
) -> None:
    fake.add_user("pat")
    if role != "none":
        fake.set_permission(repo_name, "pat", role)  # type: ignore[arg-type]
    repo = gh.get_repo(repo_name)
    assert repo.get_collaborator_permission("pat") == legacy
    assert repo.get_collaborator_role_name("pat") == role


def test_the_owner_is_admin_and_an_unknown_user_is_404(fake: FakeGitHub, gh: Github, repo_name: str) -> None:
    repo = gh.get_repo(repo_name)
    assert repo.get_collaborator_permission("acme") == "admin"
    with pytest.raises(UnknownObjectException) as info:
        repo.get_collaborator_permission("nobody-by-that-name")
    assert info.value.status == 404
    assert fake.requests[-1].path == f"/repos/{repo_name}/collaborators/nobody-by-that-name/permission"


def test_a_bots_permission_is_looked_up_by_its_encoded_login(fake: FakeGitHub, gh: Github, repo_name: str) -> None:
    fake.add_user("renovate[bot]", type="Bot")
    fake.set_permission(repo_name, "renovate[bot]", "write")
    assert gh.get_repo(repo_name).get_collaborator_permission("renovate[bot]") == "write"
    assert fake.requests[-1].path.endswith("/collaborators/renovate%5Bbot%5D/permission")


def test_comments_are_created_as_the_token_user_listed_and_edited(fake: FakeGitHub, gh: Github, repo_name: str) -> None:
    n = fake.add_issue(repo_name, "task")
    fake.add_comment(repo_name, n, "first!", user="alice")
    issue = gh.get_repo(repo_name).get_issue(n)

    comment = issue.create_comment("Working on it")
    assert comment.user.login == "adw-bot"
    created = fake.requests[-1]
    assert (created.method, created.status) == ("POST", 201)
    assert created.response_headers["Location"] == comment.url

    comment.edit("Done: https://github.com/acme/pull/1")
    assert comment.body == "Done: https://github.com/acme/pull/1"
    assert [(c.user, c.body) for c in fake.comments(repo_name, n)] == [
        ("alice", "first!"),
        ("adw-bot", "Done: https://github.com/acme/pull/1"),
    ]
    assert [c.body for c in issue.get_comments()] == ["first!", "Done: https://github.com/acme/pull/1"]
    assert gh.get_repo(repo_name).get_issue(n).comments == 2


def test_labels_added_removed_and_set_through_the_api_record_the_token_user(
    fake: FakeGitHub, gh: Github, repo_name: str
) -> None:
    fake.add_label(repo_name, "agent:queued", color="0e8a16", description="waiting for a worker")
    n = fake.add_issue(repo_name, "task", labels=["agent:queued"], user="alice")
    issue = gh.get_repo(repo_name).get_issue(n)

    issue.add_to_labels("agent:running")
    issue.remove_from_labels("agent:queued")
    assert fake.issue_labels(repo_name, n) == ["agent:running"]
    issue.set_labels("agent:done", "needs-review")
    assert fake.issue_labels(repo_name, n) == ["agent:done", "needs-review"]
    assert [(e.event, e.actor, e.label) for e in fake.events(repo_name, n)] == [
        ("labeled", "alice", "agent:queued"),
        ("labeled", "adw-bot", "agent:running"),
        ("unlabeled", "adw-bot", "agent:queued"),
        ("unlabeled", "adw-bot", "agent:running"),
        ("labeled", "adw-bot", "agent:done"),
        ("labeled", "adw-bot", "needs-review"),
    ]
    with pytest.raises(GithubException) as info:
        issue.remove_from_labels("agent:queued")
    assert info.value.status == 404
    assert info.value.data["message"] == "Label does not exist"


def test_closing_and_reopening_through_the_api(fake: FakeGitHub, gh: Github, repo_name: str) -> None:
    n = fake.add_issue(repo_name, "task")
    issue = gh.get_repo(repo_name).get_issue(n)
    issue.edit(state="closed", state_reason="completed")
    assert issue.state == "closed" and issue.closed_by is not None and issue.closed_by.login == "adw-bot"
    assert fake.issue(repo_name, n).state == "closed"
    issue.edit(state="open")
    assert [(e.event, e.actor) for e in fake.events(repo_name, n)] == [("closed", "adw-bot"), ("reopened", "adw-bot")]


def test_repository_labels_get_list_and_create(fake: FakeGitHub, gh: Github, repo_name: str) -> None:
    repo = gh.get_repo(repo_name)
    created = repo.create_label("agent:failed", "b60205", "the agent gave up")
    assert (created.name, created.color, created.description) == ("agent:failed", "b60205", "the agent gave up")
    assert repo.get_label("agent:failed").color == "b60205"
    assert [label.name for label in repo.get_labels()] == ["agent:failed"]
    with pytest.raises(GithubException) as info:
        repo.create_label("Agent:Failed", "000000")
    assert info.value.status == 422
    assert info.value.data["errors"][0]["code"] == "already_exists"
    with pytest.raises(UnknownObjectException):
        repo.get_label("missing")


def test_repository_and_issue_documents(fake: FakeGitHub, gh: Github, repo_name: str) -> None:
    repo = gh.get_repo(repo_name)
    assert (repo.full_name, repo.private, repo.owner.login, repo.permissions.push) == (repo_name, True, "acme", False)
    n = repo.create_issue("From the API", body="body text", labels=["agent:ready"]).number
    issue = fake.issue(repo_name, n)
    assert (issue.user, issue.body, issue.labels) == ("adw-bot", "body text", ["agent:ready"])


def test_unknown_things_are_404_and_a_bad_token_is_401(fake: FakeGitHub, gh: Github) -> None:
    with pytest.raises(UnknownObjectException):
        gh.get_repo("acme/does-not-exist")
    status, _, body = gh.requester.requestJson("GET", "/no/such/endpoint")
    assert status == 404
    assert body is not None and '"message":"Not Found"' in body
    with fake.client("ghp_WrongToken000000000000000000000000000") as wrong, pytest.raises(BadCredentialsException):
        wrong.get_user().login  # noqa: B018
