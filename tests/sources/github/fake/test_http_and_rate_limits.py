"""Wire behaviour of the fake GitHub: headers, conditional requests, rate-limit accounting, faults.

Header and 304 checks use raw HTTP (``http.client``) so nothing hides what is on the wire; the
rest goes through PyGithub with its retries off (``retry=None``) or set explicitly.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Callable
from typing import Any

import pytest
import requests
from github import Github, GithubException, GithubRetry, RateLimitExceededException

from tests.fakes.github_api import FAKE_TOKEN, FakeGitHub

REPO = "acme/widgets"
MakeClient = Callable[..., Github]


def raw(
    fake: FakeGitHub,
    path: str,
    headers: dict[str, str] | None = None,
    method: str = "GET",
    token: str | None = FAKE_TOKEN,
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=10)
    try:
        sent = {"Accept": "application/vnd.github+json", **(headers or {})}
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        conn.request(method, path, headers=sent)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


@pytest.fixture
def fake(fake_github: FakeGitHub) -> FakeGitHub:
    fake_github.add_repo(REPO)
    fake_github.add_issue(REPO, "task", user="alice", labels=["agent:ready"])
    return fake_github


def test_responses_carry_githubs_headers(fake: FakeGitHub) -> None:
    status, headers, body = raw(fake, f"/repos/{REPO}/issues/1")
    assert status == 200
    assert headers["content-type"] == "application/json; charset=utf-8"
    assert headers["etag"].startswith('W/"') and headers["etag"].endswith('"')
    assert headers["x-ratelimit-limit"] == "5000"
    assert headers["x-ratelimit-remaining"] == "4999"
    assert headers["x-ratelimit-used"] == "1"
    assert headers["x-ratelimit-resource"] == "core"
    assert int(headers["x-ratelimit-reset"]) - fake.now() == pytest.approx(3600, abs=2)
    assert headers["x-oauth-scopes"] == "repo, read:org"
    assert json.loads(body)["number"] == 1
    _, again, _ = raw(fake, f"/repos/{REPO}/issues/1")
    assert again["x-github-request-id"] != headers["x-github-request-id"]
    assert again["etag"] == headers["etag"]  # same body, same entity tag


def test_if_none_match_gives_304_without_body_and_costs_no_point(fake: FakeGitHub) -> None:
    _, first, _ = raw(fake, f"/repos/{REPO}/issues")
    assert first["x-ratelimit-remaining"] == "4999"

    status, headers, body = raw(fake, f"/repos/{REPO}/issues", {"If-None-Match": first["etag"]})
    assert (status, body) == (304, b"")
    assert headers["etag"] == first["etag"]
    assert headers["x-ratelimit-remaining"] == "4999"  # not charged
    last = fake.requests[-1]
    assert (last.status, last.conditional, last.points) == (304, True, 0)

    fake.label_issue(REPO, 1, "agent:running", actor="alice")  # the list changes: new entity tag
    status, headers, _ = raw(fake, f"/repos/{REPO}/issues", {"If-None-Match": first["etag"]})
    assert status == 200 and headers["etag"] != first["etag"]
    assert headers["x-ratelimit-remaining"] == "4998"
    assert fake.points_used() == 2


def test_pygithub_update_uses_the_etag_and_costs_nothing_when_unchanged(
    fake: FakeGitHub, make_client: MakeClient
) -> None:
    issue = make_client(fake).get_repo(REPO).get_issue(1)
    used = fake.points_used()
    assert issue.update() is False  # 304
    assert fake.requests[-1].headers["if-none-match"] == issue.etag
    assert fake.points_used() == used
    fake.close_issue(REPO, 1, actor="alice")
    assert issue.update() is True
    assert issue.state == "closed"
    assert fake.points_used() == used + 1


def test_etags_differ_between_users(fake: FakeGitHub) -> None:
    fake.add_token("ghp_OtherUserToken00000000000000000000000", "alice")
    _, mine, _ = raw(fake, f"/repos/{REPO}/issues/1")
    _, hers, _ = raw(fake, f"/repos/{REPO}/issues/1", token="ghp_OtherUserToken00000000000000000000000")
    assert mine["etag"] != hers["etag"]  # GitHub varies on Authorization
    assert hers["x-ratelimit-remaining"] == "4999"  # separate budgets per user


def test_rate_limit_endpoint_is_free_and_reports_the_budget(fake: FakeGitHub, make_client: MakeClient) -> None:
    gh = make_client(fake)
    gh.get_repo(REPO)
    core = gh.get_rate_limit().resources.core
    assert (core.limit, core.remaining, core.used) == (5000, 4999, 1)
    assert fake.requests[-1].points == 0
    assert fake.rate_limit_state()["remaining"] == 4999


def test_exhausted_primary_rate_limit_is_403_until_the_reset(fake: FakeGitHub, make_client: MakeClient) -> None:
    gh = make_client(fake)
    fake.set_rate_limit_remaining(1)
    repo = gh.get_repo(REPO)  # the last point
    reset = fake.rate_limit_state()["reset"]

    with pytest.raises(RateLimitExceededException) as info:
        repo.get_issue(1)
    assert info.value.status == 403
    assert info.value.data["message"].startswith(f"API rate limit exceeded for user ID {fake.user('adw-bot').id}.")
    assert info.value.headers is not None
    assert info.value.headers["x-ratelimit-remaining"] == "0"
    assert info.value.headers["x-ratelimit-reset"] == str(reset)
    assert fake.requests[-1].points == 0  # refused requests are not charged

    fake.advance_clock(reset - fake.now() + 1)
    assert repo.get_issue(1).title == "task"
    assert fake.rate_limit_state()["remaining"] == 4999
    assert fake.rate_limit_state()["reset"] > reset


def test_pygithub_default_retry_would_wait_for_the_reset(fake: FakeGitHub, make_client: MakeClient) -> None:
    # GithubRetry reads X-RateLimit-Reset; capped, it raises instead of sleeping for an hour.
    from github.GithubException import RateLimitExceededExceedsMaxWait

    gh = make_client(fake, retry=GithubRetry(max_rate_limit_wait=5))
    fake.exhaust_rate_limit()
    with pytest.raises(RateLimitExceededExceedsMaxWait) as info:
        gh.get_repo(REPO)
    assert info.value.wait == pytest.approx(3601, abs=5)


def test_injected_primary_rate_limit_answers_n_matching_requests(fake: FakeGitHub, make_client: MakeClient) -> None:
    gh = make_client(fake)
    repo = gh.get_repo(REPO)
    fake.inject_primary_rate_limit(times=2, method="GET", path=r"/issues/\d+$")
    for _ in range(2):
        with pytest.raises(RateLimitExceededException):
            repo.get_issue(1)
    assert repo.get_issue(1).number == 1
    assert [r.fault for r in fake.requests[-3:]] == ["primary_rate_limit", "primary_rate_limit", None]
    assert fake.pending_faults() == 0


def test_secondary_rate_limit_has_retry_after(fake: FakeGitHub, make_client: MakeClient) -> None:
    gh = make_client(fake)
    repo = gh.get_repo(REPO)
    fake.inject_secondary_rate_limit(retry_after=42, method="POST")
    issue = repo.get_issue(1)
    with pytest.raises(RateLimitExceededException) as info:
        issue.create_comment("hello")
    assert info.value.status == 403
    assert info.value.headers is not None and info.value.headers["retry-after"] == "42"
    assert info.value.data["message"].startswith("You have exceeded a secondary rate limit")
    assert fake.comments(REPO, 1) == []
    issue.create_comment("hello")  # only the next POST was limited
    assert [c.body for c in fake.comments(REPO, 1)] == ["hello"]


@pytest.mark.parametrize(("status", "html"), [(502, True), (503, False), (500, False)])
def test_server_errors_surface_without_retries(
    fake: FakeGitHub, make_client: MakeClient, status: int, html: bool
) -> None:
    gh = make_client(fake)
    fake.inject_server_error(status, html=html, path="/issues/1$")
    repo = gh.get_repo(REPO)
    with pytest.raises(GithubException) as info:
        repo.get_issue(1)
    assert info.value.status == status
    content_type = fake.requests[-1].response_headers["Content-Type"]
    if html:
        assert content_type.startswith("text/html") and "Unicorn!" in str(info.value.data)
    else:
        assert content_type.startswith("application/json") and info.value.data["message"]


def test_pygithub_retries_5xx_and_dropped_connections(fake: FakeGitHub, make_client: MakeClient) -> None:
    gh = make_client(fake, retry=GithubRetry(total=3, backoff_factor=0))
    fake.inject_server_error(502, times=2, path="/issues/1$")
    assert gh.get_repo(REPO).get_issue(1).number == 1
    assert [r.status for r in fake.requests_to("GET", "/issues/1$")] == [502, 502, 200]

    fake.inject_dropped_connection(times=1, path="/issues/1$")
    assert gh.get_repo(REPO).get_issue(1).number == 1
    assert [r.status for r in fake.requests_to("GET", "/issues/1$")][-2:] == [0, 200]


def test_a_dropped_connection_is_a_connection_error_without_retries(fake: FakeGitHub, make_client: MakeClient) -> None:
    gh = make_client(fake)
    fake.inject_dropped_connection()
    with pytest.raises(requests.exceptions.ConnectionError):
        gh.get_repo(REPO)
    assert (fake.requests[-1].status, fake.requests[-1].points) == (0, 0)


def test_tokenless_requests_see_no_private_data(fake: FakeGitHub) -> None:
    status, headers, body = raw(fake, "/user", token=None)
    assert status == 401 and json.loads(body)["message"] == "Requires authentication"
    status, headers, body = raw(fake, f"/repos/{REPO}", token=None)
    assert status == 404 and json.loads(body)["message"] == "Not Found"
    assert headers["x-ratelimit-limit"] == "60"


def test_unknown_paths_and_methods_are_githubs_404(fake: FakeGitHub) -> None:
    for method, path in [("GET", "/nope"), ("POST", f"/repos/{REPO}"), ("GET", f"/repos/{REPO}/issues/99")]:
        status, headers, body = raw(fake, path, method=method)
        document: dict[str, Any] = json.loads(body)
        assert status == 404, (method, path)
        assert document["message"] == "Not Found"
        assert document["documentation_url"].startswith("https://docs.github.com/")
        assert headers["content-type"] == "application/json; charset=utf-8"
