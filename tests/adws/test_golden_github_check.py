"""``adw github check``'s text view against golden files (a personal token; an App with a webhook)."""

from __future__ import annotations

from pathlib import Path

from adws.cli_github import check_text  # the view itself: what the command prints
from tests.adws.test_golden_views import check


def test_github_check_with_a_token(tmp_path: Path) -> None:
    data = {
        "ok": False,
        "base_url": "https://api.github.com",
        "login": "adw-bot",
        "scopes": None,
        "repositories": [
            {"repo": "acme/app", "reachable": True, "push": True, "missing_labels": [], "created": ["adw:queued"]},
            {"repo": "acme/docs", "reachable": True, "push": False, "missing_labels": ["adw:done"], "created": []},
            {
                "repo": "acme/gone",
                "reachable": False,
                "push": None,
                "missing_labels": [],
                "created": [],
                "error": "GitHub answered 404: Not Found",
            },
        ],
    }
    check("github_check_token", check_text(data), tmp_path)


def test_github_check_as_an_app_with_a_webhook(tmp_path: Path) -> None:
    data = {
        "ok": True,
        "base_url": "https://ghe.example.com/api/v3",
        "login": "adw-app[bot]",
        "scopes": None,
        "app": {"id": "123456", "installation": 7890123},
        "repositories": [
            {
                "repo": "acme/app",
                "reachable": True,
                "push": True,
                "missing_labels": [],
                "created": [],
                "webhook": "webhook: https://adw.example.com/github/webhook (active; events issues, issue_comment; "
                "last delivery answered 202 (active))",
            },
        ],
    }
    check("github_check_app", check_text(data), tmp_path)
