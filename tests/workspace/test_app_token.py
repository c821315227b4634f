"""A GitHub App's installation token expires during a run: the next request and the push use a fresh one."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from adw_modules.config.github import GitHubConfig
from adw_modules.sources.github.app import REFRESH_MARGIN, app_client
from adw_modules.sources.github.webhook import WebhookReceiver
from adw_modules.workspace.worktrees import Workspaces
from tests.fakes.github_api import FAKE_TOKEN, FakeGitHub
from tests.workspace.conftest import REPO, GitHttp, Remotes


def _ignore(event: str, payload: dict[str, object]) -> None:
    pass


def _key_pair() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


_APP_KEY = _key_pair()  # one 2048-bit key for the parametrised tests (generating one takes ~0.1 s)


def test_an_expiring_installation_token_is_renewed_for_requests_and_the_push(
    make_workspaces: Callable[..., Workspaces], git_http: GitHttp, remotes: Remotes, git_env: dict[str, str]
) -> None:
    private, public = _key_pair()
    with FakeGitHub() as fake:
        fake.add_repo(REPO)
        app = fake.add_app(4242, "adw-app", public, repos=[REPO])
        issue = fake.add_issue(REPO, "x", user="someone", body="y")
        git_http.accept = fake.token_valid  # the git remote takes what GitHub takes

        def clock() -> dt.datetime:
            return dt.datetime.fromtimestamp(fake.now(), dt.UTC)

        gh = GitHubConfig(repositories=(REPO,), base_url=fake.base_url, app_id="4242", private_key_path="unused")
        client = app_client(gh, private, clock=clock, pace_s=(0, 0))
        assert client.me() == "adw-app[bot]"  # "self": the App's bot user
        client.issue(REPO, issue)
        first = client.push_token()
        assert app.tokens_minted == 1 and first.startswith("ghs_")

        ws = make_workspaces(environ=git_env, remote=git_http.url + "/{repo}.git", token_env=None)
        ws.use_token(client.push_token)
        wt = ws.prepare(REPO, 1, issue, "App push")
        # The run goes on past the token's hour (less the refresh margin): GitHub would now refuse it.
        fake.advance_clock(3600 - REFRESH_MARGIN.total_seconds() + 1)
        client.issue(REPO, issue)
        assert app.tokens_minted == 2, "the next request minted a fresh token"
        fresh = client.push_token()
        assert fresh != first
        fake.advance_clock(REFRESH_MARGIN.total_seconds())
        assert not fake.token_valid(first) and fake.token_valid(fresh)
        (wt.path / "app.txt").write_text("pushed as the App\n")
        changes = ws.finish(wt, "adw: as the App", push=True)
        assert changes.pushed and remotes.heads(REPO)[wt.branch] == changes.head_sha
        assert git_http.auth_seen and all(ok for _, ok in git_http.auth_seen)
        calls = [r for r in fake.requests if r.path == f"/repos/{REPO}/issues/{issue}"]
        assert [r.status for r in calls] == [200, 200]
        fake.assert_valid()


def test_the_default_remote_follows_an_enterprise_base_url(tmp_path: Path) -> None:
    from adw_modules.config.workspace import default_remote

    assert default_remote({"base_url": "https://ghe.example.com/api/v3"}) == "https://ghe.example.com/{repo}.git"
    assert default_remote({"base_url": "https://api.github.com"}) == "https://github.com/{repo}.git"
    assert default_remote(None) == "https://github.com/{repo}.git"


def test_check_reports_the_app_identity(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from adws.cli import cli

    private, public = _key_pair()
    key = tmp_path / "app.pem"
    key.write_text(private)
    with FakeGitHub() as fake:
        fake.add_repo(REPO)
        fake.add_repo("acme/elsewhere")  # the App is not installed there
        for name in ("adw", "adw:queued", "adw:running", "adw:done", "adw:failed", "adw:cancelled", "adw:pr-open"):
            fake.add_label(REPO, name)
        receiver = WebhookReceiver(("127.0.0.1", 0), "/github/webhook", lambda: "s" * 20, lambda d, e: True, _ignore)
        receiver.start()
        app = fake.add_app(77, "adw-app", public, repos=[REPO], hook_url=receiver.url, hook_secret="s" * 20)
        n = fake.add_issue(REPO, "x", user="someone", body="y")
        fake.label_issue(REPO, n, "adw", actor="someone")
        assert fake.deliver(REPO, "issues", fake.issues_payload(REPO, n, "labeled", "someone", label="adw")) == [202]
        receiver.stop()
        config = tmp_path / "config.toml"
        config.write_text(
            f"""
[providers.p]
command_template = ["true"]
[routing]
default_provider = "p"
default_model = "m"
[github]
repositories = ["{REPO}", "acme/elsewhere"]
base_url = "{fake.base_url}"
app_id = 77
private_key_path = "app.pem"
"""
        )
        r = CliRunner().invoke(cli, ["github", "check", "--config", str(config)], env={})
        assert r.exit_code == 1, r.output
        assert (
            "✗ acme/elsewhere: not reachable (GitHub answered 404: Not Found — the App is not installed on"
            " acme/elsewhere (its settings: Install App))"
        ) in r.output
        installation = app.installations[REPO.lower()]
        assert f"✓ GitHub App 77: installation {installation}, acting as adw-app[bot]" in r.output
        assert f"✓ {REPO}: reachable, pushable" in r.output
        assert f"App webhook: {receiver.url} (json; last delivery (issues.labeled) answered 202 (OK))" in r.output
        assert "BEGIN PRIVATE KEY" not in r.output and private.splitlines()[1] not in r.output
        fake.assert_valid()


def _service_config(tmp_path: Path, fake: FakeGitHub, github: str, workspace: str = "") -> Path:
    config = tmp_path / "config.toml"
    config.write_text(
        f"""
[providers.p]
command_template = ["true"]
[routing]
default_provider = "p"
default_model = "m"
[coordinator]
state_dir = "state"
[workspace]
remote = "{tmp_path}/remote/{{repo}}.git"
{workspace}
[github]
repositories = ["{REPO}"]
base_url = "{fake.base_url}"
read_spacing_s = 0
write_spacing_s = 0
{github}
"""
    )
    return config


def test_adw_run_acts_as_the_app_and_pushes_with_its_tokens(tmp_path: Path) -> None:
    from adw_modules.config.schema import load_config
    from adws.service import Service

    private, public = _key_pair()
    (tmp_path / "app.pem").write_text(private)
    with FakeGitHub() as fake:
        fake.add_repo(REPO)
        fake.add_app(77, "adw-app", public, repos=[REPO])
        config = _service_config(tmp_path, fake, 'app_id = 77\nprivate_key_path = "app.pem"')
        service = Service(load_config(config), environ={"PATH": "/usr/bin:/bin"})
        try:
            assert service.github is not None and service.github.client.me() == "adw-app[bot]"
            assert service.coordinator.workspaces is not None
            token = service.coordinator.workspaces.git.current_token()
            assert token is not None and fake.token_valid(token)
            redact = service.coordinator.registry.secrets.redactor
            assert token not in redact(f"pushed with {token}")  # every minted token is masked
            assert private.splitlines()[1] not in redact(private)
        finally:
            service.store.close()
        fake.assert_valid()


# Every way ``[github]`` gets its token, against every ``[workspace] token_env`` that leaves the
# push to it: the default (the table omits it) and an empty one.  ``ADW_OTHER`` names another
# variable: then that variable's token is pushed, whatever [github] uses.
_GITHUB_CREDENTIALS = {
    "token_env": 'token_env = "ADW_BOT_TOKEN"',
    "token_command": f'token_command = ["echo", "{FAKE_TOKEN}"]',
    "app": 'app_id = 77\nprivate_key_path = "app.pem"',
}


@pytest.mark.parametrize("workspace_token_env", [None, "", "GITHUB_TOKEN", "ADW_OTHER"])
@pytest.mark.parametrize("credentials", sorted(_GITHUB_CREDENTIALS))
def test_the_push_token_follows_the_github_credentials(
    tmp_path: Path, credentials: str, workspace_token_env: str | None
) -> None:
    from adw_modules.config.schema import load_config
    from adws.service import Service

    private, public = _APP_KEY
    (tmp_path / "app.pem").write_text(private)
    environ = {"PATH": "/usr/bin:/bin", "ADW_BOT_TOKEN": FAKE_TOKEN, "GITHUB_TOKEN": "ghp_wrong", "ADW_OTHER": "other"}
    workspace = "" if workspace_token_env is None else f'token_env = "{workspace_token_env}"'
    with FakeGitHub() as fake:
        fake.add_repo(REPO)
        fake.add_app(77, "adw-app", public, repos=[REPO])
        config = _service_config(tmp_path, fake, _GITHUB_CREDENTIALS[credentials], workspace=workspace)
        service = Service(load_config(config), environ=environ)
        try:
            assert service.coordinator.workspaces is not None
            pushed = service.coordinator.workspaces.git.current_token()
            if workspace_token_env == "ADW_OTHER":
                assert pushed == "other"
            elif credentials == "app":
                assert pushed is not None and pushed.startswith("ghs_") and fake.token_valid(pushed)
            else:
                assert pushed == FAKE_TOKEN
            # A reload rebuilds the workspaces; the push still follows the same credentials.
            assert service.reload()
            again = service.coordinator.workspaces.git.current_token()
            assert (
                (again == "other")
                if workspace_token_env == "ADW_OTHER"
                else (again is not None and again != "ghp_wrong")
            )
        finally:
            service.store.close()


@pytest.mark.parametrize("kind", ["garbage", "public", "truncated"])
def test_a_malformed_app_key_is_a_clear_error_that_never_shows_it(tmp_path: Path, kind: str) -> None:
    from click.testing import CliRunner

    from adws.cli import cli

    private, public = _APP_KEY
    secret_line = "MIIEowIBAAKCAQEAsecretsecretsecretsecretsecret"
    key = {
        "garbage": f"-----BEGIN RSA PRIVATE KEY-----\n{secret_line}\n-----END RSA PRIVATE KEY-----\n",
        "public": public,
        "truncated": private[: len(private) // 2],
    }[kind]
    (tmp_path / "app.pem").write_text(key)
    with FakeGitHub() as fake:
        fake.add_repo(REPO)
        config = _service_config(tmp_path, fake, 'app_id = 77\nprivate_key_path = "app.pem"')
        for command in (["github", "check"], ["run", "--once"]):
            r = CliRunner().invoke(cli, [*command, "--config", str(config)], env={"PATH": "/usr/bin:/bin"})
            assert r.exit_code in (1, 2) and isinstance(r.exception, SystemExit), (command, r.exception)
            assert "not an unencrypted RSA private key in PEM form" in r.output and "app.pem" in r.output
            body_lines = [line for line in key.splitlines() if line and not line.startswith("-----")]
            assert not any(line in r.output for line in body_lines)


def test_the_app_token_endpoint_failing_backs_off_and_recovers(tmp_path: Path) -> None:
    """5xx from ``POST /app/installations/{id}/access_tokens``: the poll backs off (no crash, no
    task lost); once GitHub answers again the next poll mints a token and goes on."""
    private, public = _APP_KEY
    with FakeGitHub() as fake:
        fake.add_repo(REPO)
        fake.add_app(77, "adw-app", public, repos=[REPO])
        gh = GitHubConfig(repositories=(REPO,), base_url=fake.base_url, app_id="77", private_key_path="unused")
        client = app_client(gh, private, clock=lambda: dt.datetime.fromtimestamp(fake.now(), dt.UTC), pace_s=(0, 0))
        fake.inject_server_error(502, method="POST", path=r"/app/installations/\d+/access_tokens$", times=1)
        from adw_modules.sources.github.client import Backoff

        with pytest.raises(Backoff) as raised:
            client.issue(REPO, fake.add_issue(REPO, "x", user="someone", body="y"))
        assert "502" in raised.value.reason
        fake.advance_clock((raised.value.until - client.clock()).total_seconds() + 1)  # the backoff is over
        assert client.push_token().startswith("ghs_")  # GitHub answers again: a token at once
        fake.assert_valid()


def test_check_says_when_the_app_cannot_mint_a_token(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from adws.cli import cli

    private, public = _APP_KEY
    (tmp_path / "app.pem").write_text(private)
    with FakeGitHub() as fake:
        fake.add_repo(REPO)
        fake.add_app(77, "adw-app", public, repos=[REPO])
        fake.inject_server_error(502, method="POST", path=r"/app/installations/\d+/access_tokens$")
        config = _service_config(tmp_path, fake, 'app_id = 77\nprivate_key_path = "app.pem"')
        r = CliRunner().invoke(cli, ["github", "check", "--config", str(config)], env={"PATH": "/usr/bin:/bin"})
        assert r.exit_code == 1
        assert "✓ GitHub App" not in r.output and "GitHub answered 502" in r.output
