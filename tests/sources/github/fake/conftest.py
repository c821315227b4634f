"""Fixtures for testing the fake GitHub REST API (``tests.fakes.github_api``) through PyGithub.

``openapi_validator`` loads GitHub's OpenAPI description once per session, installing the pinned
npm package on first use; it FAILS (never skips) when that is impossible, because CI installs it.
``fake_github`` is a fresh strict fake per test whose teardown fails the test if any body it
served did not match the description.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from github import Github

from tests.fakes.github_api import FakeGitHub
from tests.github_openapi import OPENAPI_PACKAGE, OPENAPI_VERSION, CliInstallError, ResponseValidator, default_validator


@pytest.fixture(scope="session")
def openapi_validator() -> ResponseValidator:
    try:
        return default_validator()
    except CliInstallError as exc:
        pytest.fail(
            f"GitHub's OpenAPI description ({OPENAPI_PACKAGE}@{OPENAPI_VERSION}) is unavailable; "
            f"run `python tests/github_openapi.py` with the npm registry reachable.\n{exc}",
            pytrace=False,
        )


@pytest.fixture
def fake_github(openapi_validator: ResponseValidator) -> Iterator[FakeGitHub]:
    with FakeGitHub(validator=openapi_validator) as fake:
        yield fake
    fake.assert_valid()


@pytest.fixture
def make_client() -> Iterator[Callable[..., Github]]:
    """``make_client(fake, token=None, **Github_options)``; every client is closed at teardown."""
    clients: list[Github] = []

    def make(fake: FakeGitHub, token: str | None = None, **options: Any) -> Github:
        client = fake.client(token, **options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()
