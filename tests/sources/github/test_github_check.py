"""`adw github check` against the fake GitHub REST API."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from adws.cli import cli
from tests.fakes.github_api import FAKE_TOKEN, FakeGitHub


def write_config(tmp_path: Path, base_url: str, repos: list[str]) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        f"""
[providers.p]
command_template = ["true"]
[routing]
default_provider = "p"
default_model = "m"
[github]
repositories = {json.dumps(repos)}
base_url = "{base_url}"
read_spacing_s = 0
write_spacing_s = 0
"""
    )
    return path


def test_check_reports_and_creates_missing_labels(tmp_path: Path) -> None:
    with FakeGitHub() as fake:
        fake.add_repo("acme/app")
        fake.add_label("acme/app", "adw")
        fake.set_permission("acme/app", "adw-bot", "write")
        config = write_config(tmp_path, fake.base_url, ["acme/app", "acme/missing"])
        runner = CliRunner()
        env = {"GITHUB_TOKEN": FAKE_TOKEN}
        r = runner.invoke(cli, ["github", "check", "--config", str(config), "--json"], env=env)
        assert r.exit_code == 1, r.output
        data = json.loads(r.output)
        assert data["login"] == "adw-bot" and data["scopes"] == ["repo", "read:org"]
        app, missing = data["repositories"]
        assert app["reachable"] and app["push"] is True
        assert app["missing_labels"] == [
            "adw:queued",
            "adw:running",
            "adw:done",
            "adw:failed",
            "adw:cancelled",
            "adw:pr-open",
        ]
        assert not missing["reachable"] and "404" in missing["error"]

        config = write_config(tmp_path, fake.base_url, ["acme/app"])
        r = runner.invoke(cli, ["github", "check", "--config", str(config), "--create-labels"], env=env)
        assert r.exit_code == 0, r.output
        assert "+ created label adw:queued" in r.output and "All good." in r.output
        assert {"adw:queued", "adw:running", "adw:done", "adw:failed"} <= {
            lb.name for lb in fake.repo("acme/app").labels.values()
        }
        assert FAKE_TOKEN not in r.output
        fake.assert_valid()


def test_check_without_a_token_says_how_to_fix(tmp_path: Path) -> None:
    config = write_config(tmp_path, "http://127.0.0.1:9", ["acme/app"])
    r = CliRunner().invoke(cli, ["github", "check", "--config", str(config)], env={"GITHUB_TOKEN": ""})
    assert r.exit_code == 1
    assert "GITHUB_TOKEN is not set" in r.output


def test_check_text_says_pushable_and_shows_the_webhooks_last_delivery(tmp_path: Path) -> None:
    with FakeGitHub() as fake:
        fake.add_repo("acme/app")
        fake.set_permission("acme/app", "adw-bot", "write")
        for name in ("adw", "adw:queued", "adw:running", "adw:done", "adw:failed", "adw:cancelled", "adw:pr-open"):
            fake.add_label("acme/app", name)
        fake.add_hook("acme/app", "https://adw.example.com/github/webhook", "s", ["issues", "issue_comment"])
        config = write_config(tmp_path, fake.base_url, ["acme/app"])
        config.write_text(config.read_text() + '[github.webhook]\nlisten = "127.0.0.1:0"\n')
        r = CliRunner().invoke(cli, ["github", "check", "--config", str(config)], env={"GITHUB_TOKEN": FAKE_TOKEN})
        assert r.exit_code == 0, r.output
        assert "✓ acme/app: reachable, pushable" in r.output
        assert (
            "webhook: https://adw.example.com/github/webhook (active; events issues, issue_comment; never delivered)"
            " — not subscribed to pull_request_review, pull_request_review_comment\n"
        ) in r.output
        fake.assert_valid()


def test_check_names_a_webhook_whose_secret_is_not_adws(tmp_path: Path) -> None:
    from adw_modules.sources.github.webhook import ACTIONS, WebhookReceiver

    with FakeGitHub() as fake:
        fake.add_repo("acme/app")
        receiver = WebhookReceiver(("127.0.0.1", 0), "/github/webhook", lambda: "right", lambda d, e: True, print)
        receiver.start()
        try:
            fake.add_hook("acme/app", receiver.url, "wrong", list(ACTIONS))
            n = fake.add_issue("acme/app", "x", user="someone", body="y")
            assert fake.deliver("acme/app", "issues", fake.issues_payload("acme/app", n, "opened", "someone")) == [401]
        finally:
            receiver.stop()
        config = write_config(tmp_path, fake.base_url, ["acme/app"])
        config.write_text(config.read_text() + '[github.webhook]\nlisten = "127.0.0.1:0"\n')
        r = CliRunner().invoke(cli, ["github", "check", "--config", str(config)], env={"GITHUB_TOKEN": FAKE_TOKEN})
        events = ", ".join(ACTIONS)
        assert (
            f"webhook: {receiver.url} (active; events {events}; last delivery answered 401 (failed))"
            " — adw refused its signature: the hook's secret is not [github.webhook]'s\n"
        ) in r.output
