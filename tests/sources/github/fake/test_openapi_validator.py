"""The OpenAPI response validator rejects what GitHub would never send, and says where and why."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.github_api import FakeGitHub
from tests.github_openapi import (
    OPENAPI_PACKAGE,
    OPENAPI_VERSION,
    CliInstallError,
    OpenAPIValidationError,
    ResponseValidator,
    ensure_github_openapi,
)

ISSUES = "/repos/acme/widgets/issues"


@pytest.fixture(scope="module")
def documents(openapi_validator: ResponseValidator) -> dict[str, Any]:
    """Bodies the fake builds (valid ones), to be broken by the tests below."""
    with FakeGitHub(validator=openapi_validator) as fake:
        fake.add_repo("acme/widgets")
        n = fake.add_issue("acme/widgets", "task", user="alice", labels=["agent:ready"])
        fake.close_issue("acme/widgets", n, actor="bob")
        fake.add_comment("acme/widgets", n, "hi", user="alice")
        repo = fake.repo("acme/widgets")
        issue = repo.issues[n]
        docs = {
            "issue": fake._issue_doc(repo, issue),
            "events": [fake._event_doc(repo, e) for e in issue.events],
            "comment": fake._comment_doc(repo, repo.comments[issue.comment_ids[0]]),
        }
    fake.assert_valid()
    return docs


def test_the_pinned_description_is_loaded(openapi_validator: ResponseValidator) -> None:
    assert openapi_validator.version == OPENAPI_VERSION
    assert openapi_validator.spec["openapi"].startswith("3.0")
    assert "/repos/{owner}/{repo}/issues/{issue_number}/events" in openapi_validator.spec["paths"]


@pytest.mark.parametrize(
    ("method", "path", "template"),
    [
        ("GET", "/repos/o/r/issues/comments/5", "/repos/{owner}/{repo}/issues/comments/{comment_id}"),
        ("GET", "/repos/o/r/issues/5/comments?page=2", "/repos/{owner}/{repo}/issues/{issue_number}/comments"),
        (
            "DELETE",
            "/repos/o/r/issues/5/labels/agent%3Aready",
            "/repos/{owner}/{repo}/issues/{issue_number}/labels/{name}",
        ),
        (
            "GET",
            "/repos/o/r/collaborators/bot%5Bbot%5D/permission",
            "/repos/{owner}/{repo}/collaborators/{username}/permission",
        ),
        ("GET", "/user", "/user"),
    ],
)
def test_concrete_paths_map_to_templates(
    openapi_validator: ResponseValidator, method: str, path: str, template: str
) -> None:
    assert openapi_validator.find_operation(method, path).template == template


def test_path_parameters_are_decoded(openapi_validator: ResponseValidator) -> None:
    operation = openapi_validator.find_operation("DELETE", "/repos/o/r/issues/5/labels/agent%3Aready")
    assert operation.params == {"owner": "o", "repo": "r", "issue_number": "5", "name": "agent:ready"}


def test_unknown_paths_methods_and_statuses_are_reported(openapi_validator: ResponseValidator) -> None:
    with pytest.raises(OpenAPIValidationError, match="no such path"):
        openapi_validator.find_operation("GET", "/repos/o/r/nothing/here/at/all")
    with pytest.raises(OpenAPIValidationError, match="has no PUT"):
        openapi_validator.find_operation("PUT", "/repos/o/r/issues/1/events")
    with pytest.raises(OpenAPIValidationError, match="status 201 is not documented"):
        openapi_validator.validate("GET", "/repos/o/r/issues/1", 201, {})


def test_valid_documents_pass(openapi_validator: ResponseValidator, documents: dict[str, Any]) -> None:
    openapi_validator.validate("GET", ISSUES, 200, [documents["issue"]])
    openapi_validator.validate("GET", f"{ISSUES}/1/events", 200, documents["events"])
    openapi_validator.validate("PATCH", "/repos/acme/widgets/issues/comments/9", 200, documents["comment"])


def test_a_missing_required_field_is_rejected_with_path_status_pointer_and_expectation(
    openapi_validator: ResponseValidator, documents: dict[str, Any]
) -> None:
    issue = copy.deepcopy(documents["issue"])
    del issue["user"]["login"]
    with pytest.raises(OpenAPIValidationError) as info:
        openapi_validator.validate("GET", ISSUES, 200, [issue])
    message = str(info.value)
    assert message.startswith(f"GET {ISSUES} -> 200 (issues/list-for-repo)")
    assert "at /0/user: 'login' is a required property" in message
    assert "schema expects required: [" in message
    assert f"{OPENAPI_PACKAGE}@{OPENAPI_VERSION}" in message


@pytest.mark.parametrize(
    ("mutate", "pointer", "fragment"),
    [
        (lambda d: d.update(id="12"), "/id", "'12' is not of type 'integer'"),
        (lambda d: d.update(title=None), "/title", "None for not nullable"),
        (lambda d: d.update(created_at="yesterday"), "/created_at", "'yesterday' is not a 'date-time'"),
        (lambda d: d.update(html_url="github.com/acme/widgets/issues/1"), "/html_url", "is not a 'uri'"),
        (lambda d: d.update(author_association="FRIEND"), "/author_association", "'FRIEND' is not one of"),
        (lambda d: d["labels"].append({"id": "x"}), "/labels/1/id", "'x' is not of type 'integer'"),
    ],
)
def test_wrong_types_formats_and_enums_are_rejected(
    openapi_validator: ResponseValidator, documents: dict[str, Any], mutate: Any, pointer: str, fragment: str
) -> None:
    issue = copy.deepcopy(documents["issue"])
    mutate(issue)
    with pytest.raises(OpenAPIValidationError) as info:
        openapi_validator.validate("GET", "/repos/acme/widgets/issues/1", 200, issue)
    assert f"at {pointer}" in str(info.value)
    assert fragment in str(info.value)


def test_nullable_fields_accept_null_even_with_an_enum(
    openapi_validator: ResponseValidator, documents: dict[str, Any]
) -> None:
    issue = copy.deepcopy(documents["issue"])
    issue.update(body=None, closed_at=None, state_reason=None, state="open")
    openapi_validator.validate("GET", "/repos/acme/widgets/issues/1", 200, issue)


def test_events_are_checked_against_the_schema_their_type_names(
    openapi_validator: ResponseValidator, documents: dict[str, Any]
) -> None:
    labeled = copy.deepcopy(documents["events"][0])
    assert labeled["event"] == "labeled"
    del labeled["label"]["color"]
    # The description's anyOf alone lets it through (project-card event schemas accept any object)...
    openapi_validator.validate_schema("issue-event-for-issue", labeled)
    # ...the validator does not.
    with pytest.raises(OpenAPIValidationError) as info:
        openapi_validator.validate("GET", f"{ISSUES}/1/events", 200, [labeled])
    assert "event 'labeled'" in str(info.value)
    assert "at /label: 'color' is a required property" in str(info.value)


def test_undocumented_error_statuses_must_have_githubs_error_shape(openapi_validator: ResponseValidator) -> None:
    limited = {"message": "API rate limit exceeded for user ID 1.", "documentation_url": "https://docs.github.com/rest"}
    openapi_validator.validate("GET", "/repos/o/r/issues/1/events", 403, limited)
    with pytest.raises(OpenAPIValidationError, match="basic-error"):
        openapi_validator.validate("GET", "/repos/o/r/issues/1/events", 403, {"message": 42})


def test_strict_fake_records_a_body_the_description_rejects(
    openapi_validator: ResponseValidator, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = FakeGitHub._label_doc

    def without_color(self: FakeGitHub, repo: Any, label: Any) -> dict[str, Any]:
        doc = original(self, repo, label)
        del doc["color"]
        return doc

    monkeypatch.setattr(FakeGitHub, "_label_doc", without_color)
    with FakeGitHub(validator=openapi_validator) as fake, fake.client() as gh:
        fake.add_repo("acme/widgets")
        fake.add_label("acme/widgets", "bug")
        assert gh.get_repo("acme/widgets").get_label("bug").name == "bug"  # still served
    (error,) = fake.validation_errors
    assert "GET /repos/acme/widgets/labels/bug -> 200 (issues/get-label)" in error
    assert "'color' is a required property" in error
    with pytest.raises(AssertionError, match="served 1 body"):
        fake.assert_valid()


def test_an_unreachable_registry_fails_the_install_with_npms_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("npm_config_registry", "http://127.0.0.1:9/")  # discard port: refused
    monkeypatch.setenv("npm_config_cache", str(tmp_path / "npm-cache"))
    monkeypatch.setenv("npm_config_fetch_retries", "0")
    with pytest.raises(CliInstallError) as info:
        ensure_github_openapi(tmp_path / "prefix")
    assert f"{OPENAPI_PACKAGE}@{OPENAPI_VERSION}" in str(info.value)
    assert "ECONNREFUSED" in str(info.value)
