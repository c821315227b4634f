"""``[github.webhook]``, the App keys and the trigger switches: parsed, and bad values named with file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from adw_modules.config.schema import ConfigError, load_config

BASE = """\
[providers.p]
command_template = ["true"]
[routing]
default_provider = "p"
default_model = "m"
[github]
repositories = ["acme/app"]
"""


def _load(tmp_path: Path, extra: str) -> object:
    path = tmp_path / "config.toml"
    path.write_text(BASE + extra)
    return load_config(path)


def test_webhook_app_and_trigger_settings_are_read(tmp_path: Path) -> None:
    (tmp_path / "app.pem").write_text("-----BEGIN PRIVATE KEY-----\n")
    config = _load(
        tmp_path,
        'app_id = 123\nprivate_key_path = "app.pem"\nmention = "@team-bot"\nassignment_trigger = false\n'
        '[github.webhook]\nlisten = "0.0.0.0:8787"\nsecret_command = ["pass", "show", "adw/hook"]\n',
    )
    gh = config.github  # type: ignore[attr-defined]
    assert gh.app_id == "123" and gh.private_key_path == str(tmp_path / "app.pem")
    assert gh.mention == "@team-bot" and gh.mention_trigger and not gh.assignment_trigger
    assert gh.webhook.listen == ("0.0.0.0", 8787) and gh.webhook.path == "/github/webhook"
    assert gh.webhook.secret_command == ("pass", "show", "adw/hook") and gh.webhook.secret_env is None
    assert gh.webhook.poll_interval_s == 600


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('[github.webhook]\nlisten = "8787"\n', 'github.webhook: listen "8787" must be "HOST:PORT"'),
        ('[github.webhook]\nlisten = "h:1"\npath = "hook"\n', 'path "hook" must start with "/"'),
        ('[github.webhook]\nlisten = "h:1"\nsecret = "x"\n', 'github.webhook: unknown key "secret"'),
        ('[github.webhook]\nlisten = "h:1"\nsecret_env = "A"\nsecret_command = ["b"]\n', "by one reference"),
        ("app_id = 5\n", "exactly one of private_key_path or private_key_command"),
        ('app_id = "abc"\nprivate_key_command = ["x"]\n', 'app_id "abc" must be the App\'s numeric id'),
        ("installation_id = 9\n", "need app_id"),
        ('app_id = 5\nprivate_key_path = "nope.pem"\n', 'private_key_path file "nope.pem" does not exist'),
    ],
)
def test_bad_settings_are_named_with_file_and_line(tmp_path: Path, extra: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, extra)
    (issue,) = [i for i in caught.value.issues if message in i]
    assert issue.startswith(f"{tmp_path / 'config.toml'}:"), issue
    assert issue.split(":", 2)[1].isdigit(), issue  # the line


def test_adw_run_stops_with_a_clear_error_for_a_taken_port_or_a_missing_secret(tmp_path: Path) -> None:
    import socket

    from click.testing import CliRunner

    from adws.cli import EXIT_CONFIG, cli
    from tests.fakes.github_api import FAKE_TOKEN, FakeGitHub

    with FakeGitHub() as fake, socket.socket() as taken:
        fake.add_repo("acme/app")
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        path = tmp_path / "config.toml"
        path.write_text(
            BASE.replace('repositories = ["acme/app"]', f'repositories = ["acme/app"]\nbase_url = "{fake.base_url}"')
            + f'[coordinator]\nstate_dir = "state"\n[github.webhook]\nlisten = "127.0.0.1:{port}"\n'
        )
        env = {"GITHUB_TOKEN": FAKE_TOKEN, "ADW_WEBHOOK_SECRET": "s" * 24}
        r = CliRunner().invoke(cli, ["run", "--once", "--config", str(path)], env=env)
        assert r.exit_code == EXIT_CONFIG, r.output
        assert f"github.webhook: cannot listen on 127.0.0.1:{port}: Address already in use" in r.output
        r = CliRunner().invoke(cli, ["run", "--once", "--config", str(path)], env={"GITHUB_TOKEN": FAKE_TOKEN})
        assert r.exit_code == EXIT_CONFIG, r.output
        assert "github.webhook: ADW_WEBHOOK_SECRET is not set" in r.output
