"""Credential profiles: the overlay on secret references, its precedence (--profile, $ADW_PROFILE,
default_profile), errors with their line, ``adw profiles`` (never a value), the doctor's check, and
switching on SIGHUP in a running service."""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from adw_modules.config.schema import ConfigError, load_config
from adw_modules.ops.doctor import Probes, run_doctor
from adws.cli import cli
from adws.cli_ops import doctor_text
from tests.adws.test_golden_views import check

WORK_KEY = "sk-work-0123456789abcdef"
PERSONAL_KEY = "sk-personal-fedcba9876543210"  # printed by a command: must never be shown

CONFIG = """\
[providers.claude]
command_template = ["/bin/true", "{{model}}"]
requires_api_key = true
api_key_env = "ANTHROPIC_API_KEY"

[providers.router]
command_template = ["/bin/true"]
requires_api_key = true
api_key_env = "OPENROUTER_API_KEY"
api_key_command = ["/bin/false"]   # the base reference: a vault that is not set up here

[github]
repositories = ["o/r"]

[routing]
default_provider = "claude"
default_model = "m"

[coordinator]
state_dir = "state"

[profiles]
default_profile = "work"

[profiles.work.providers.claude]
api_key_env = "WORK_ANTHROPIC_KEY"

[profiles.work.providers.router]
api_key_env = "WORK_ROUTER_KEY"   # env only: the base command is dropped

[profiles.personal.providers.claude]
api_key_command = ["{python}", "-c", "print('{personal}')"]

[profiles.personal.github]
token_env = "PERSONAL_GITHUB_TOKEN"

[profiles.empty]
"""


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(CONFIG.format(python=sys.executable, personal=PERSONAL_KEY))
    return path


def env(**values: str) -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", **values}


def test_default_profile_applies_and_env_only_drops_the_base_command(config_path: Path) -> None:
    config = load_config(config_path, environ=env())
    assert (config.profiles.active, config.profiles.source) == ("work", "default_profile")
    assert config.providers["claude"].api_key_env == "WORK_ANTHROPIC_KEY"
    router = config.providers["router"]
    assert (router.api_key_env, router.api_key_command) == ("WORK_ROUTER_KEY", None)
    assert config.github is not None and config.github.token_env == "GITHUB_TOKEN"  # work leaves it


def test_precedence_is_option_then_environment_then_default(config_path: Path) -> None:
    by_env = load_config(config_path, environ=env(ADW_PROFILE="personal"))
    assert (by_env.profiles.active, by_env.profiles.source) == ("personal", "ADW_PROFILE")
    claude = by_env.providers["claude"]
    # A command only: the base variable stays (the name the key is passed to the CLI in).
    assert claude.api_key_command is not None and claude.api_key_env == "ANTHROPIC_API_KEY"
    assert by_env.github is not None and by_env.github.token_env == "PERSONAL_GITHUB_TOKEN"
    by_option = load_config(config_path, profile="empty", environ=env(ADW_PROFILE="personal"))
    assert (by_option.profiles.active, by_option.profiles.source) == ("empty", "--profile")
    assert by_option.providers["claude"].api_key_env == "ANTHROPIC_API_KEY"  # the base, untouched
    assert by_option.fingerprint != by_env.fingerprint  # a reload sees the change


def test_no_profiles_means_the_config_as_written(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[providers.a]\ncommand_template = ["x"]\napi_key_env = "K"\ndefault_model = "m"\n')
    config = load_config(path, environ=env(ADW_PROFILE=""))
    assert config.profiles.active is None and config.providers["a"].api_key_env == "K"


def test_an_unknown_profile_names_the_defined_ones(config_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r'profile "home" \(from ADW_PROFILE\) is not defined \(profiles: work, personal, empty\)'
    ):
        load_config(config_path, environ=env(ADW_PROFILE="home"))
    result = CliRunner().invoke(cli, ["--config", str(config_path), "--profile", "hmoe", "profiles"])
    assert result.exit_code == 2 and 'profile "hmoe" (from --profile) is not defined' in result.output


def test_profile_errors_name_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(
        "[providers.a]\n"
        'command_template = ["x"]\n'
        'default_model = "m"\n'
        "[profiles]\n"
        'default_profile = "nope"\n'
        "[profiles.w.providers.b]\n"
        'api_key_env = "K"\n'
        "[profiles.w.providers.a]\n"
        'api_key = "sk-literal"\n'
        'api_key_env = "not a name"\n'
        "[profiles.w.github]\n"
        'token_env = "T"\n'
    )
    with pytest.raises(ConfigError) as exc:
        load_config(path, environ=env())
    issues = exc.value.issues
    assert f'{path}:5: profiles: default_profile "nope" is not a profile (profiles: w)' in issues
    assert any(i.startswith(f'{path}:6: profiles.w.providers.b: provider "b" is not defined') for i in issues)
    assert any(
        i.startswith(f'{path}:9: profiles.w.providers.a: unknown secret-reference key "api_key"') for i in issues
    )
    assert any(
        f'{path}:10: profiles.w.providers.a: api_key_env "not a name" is not an environment variable name' in i
        for i in issues
    )
    assert any(i.startswith(f"{path}:11: profiles.w.github: overrides [github]") for i in issues)
    assert not any("sk-literal" in i for i in issues)


def test_adw_providers_names_the_profile_its_availability_is_judged_with(
    config_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("ADW_PROFILE", "WORK_ROUTER_KEY", "WORK_ANTHROPIC_KEY", "PERSONAL_GITHUB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")  # the same ✗ reasons everywhere
    result = CliRunner().invoke(cli, ["--config", str(config_path), "--profile", "personal", "providers"])
    assert result.exit_code == 0, result.output
    check("providers_profile", result.output.replace(sys.executable, "<python>").rstrip("\n"), tmp_path)
    data = json.loads(CliRunner().invoke(cli, ["--config", str(config_path), "providers", "--json"]).output)
    assert data["profile"] == {"active": "work", "source": "default_profile"}


def test_adw_profiles_lists_references_and_whether_they_resolve_never_values(
    config_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("ADW_PROFILE", "WORK_ROUTER_KEY", "PERSONAL_GITHUB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WORK_ANTHROPIC_KEY", WORK_KEY)
    runner = CliRunner()
    text = runner.invoke(cli, ["--config", str(config_path), "--profile", "personal", "profiles"])
    assert text.exit_code == 0, text.output
    shown = text.output.replace(sys.executable, "<python>").rstrip("\n")
    check("profiles", shown, tmp_path)
    as_json = runner.invoke(cli, ["--config", str(config_path), "profiles", "--json"])
    data = json.loads(as_json.output)
    assert (data["active"], data["source"]) == ("work", "default_profile")
    refs = {(p["name"], r["target"], r["key"]): r["resolves"] for p in data["profiles"] for r in p["references"]}
    assert refs == {
        ("work", "claude", "api_key_env"): True,
        ("work", "router", "api_key_env"): False,
        ("personal", "claude", "api_key_command"): True,
        ("personal", "github", "token_env"): False,
    }
    for output in (text.output, as_json.output):
        assert WORK_KEY not in output and PERSONAL_KEY not in output and "fedcba" not in output


def test_the_profile_decides_availability(config_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ADW_PROFILE", raising=False)
    monkeypatch.delenv("WORK_ANTHROPIC_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    runner = CliRunner()
    work = json.loads(runner.invoke(cli, ["--config", str(config_path), "providers", "--json"]).output)
    personal = json.loads(
        runner.invoke(cli, ["--profile", "personal", "--config", str(config_path), "providers", "--json"]).output
    )

    def claude(data: dict[str, object]) -> dict[str, object]:
        rows = data["providers"]
        assert isinstance(rows, list)
        return next(p for p in rows if p["name"] == "claude")

    assert claude(work)["available"] is False and "WORK_ANTHROPIC_KEY not set" in str(claude(work)["reason"])
    assert claude(personal)["available"] is True  # its command prints a key
    assert PERSONAL_KEY not in json.dumps(personal)


def test_doctor_checks_the_active_profile(config_path: Path, tmp_path: Path) -> None:
    probes = Probes(environ=env(WORK_ANTHROPIC_KEY=WORK_KEY))
    failing = [c for c in run_doctor(config_path, probes) if c.name == "profile"]
    probes_ok = Probes(environ=env(GITHUB_TOKEN="x"))
    passing = [c for c in run_doctor(config_path, probes_ok, profile="personal") if c.name == "profile"]
    text = doctor_text([*failing, *passing]).replace(sys.executable, "<python>")
    check("doctor_profile", text, tmp_path)
    assert failing[0].status == "fail" and passing[0].status == "fail"  # personal's github token is unset
    env_ok = Probes(environ=env(PERSONAL_GITHUB_TOKEN="t"))
    (ok,) = [c for c in run_doctor(config_path, env_ok, profile="personal") if c.name == "profile"]
    assert ok.status == "ok" and ok.detail == "personal (from --profile): 2 of 2 reference(s) resolve"
    assert PERSONAL_KEY not in doctor_text([ok, *failing, *passing])


@pytest.fixture
def service(config_path: Path) -> Iterator[object]:
    from adws.service import Service

    environ = env(WORK_ANTHROPIC_KEY=WORK_KEY, GITHUB_TOKEN="ghp_unused")
    svc = Service(load_config(config_path, environ=environ), environ=environ)
    yield svc
    svc.store.close()


def test_sighup_switches_the_profile_by_default_profile(service: object, config_path: Path) -> None:
    from adws.service import Service

    assert isinstance(service, Service)
    assert service.coordinator.registry.api_key("claude") == WORK_KEY
    previous = signal.getsignal(signal.SIGHUP)
    try:
        service.install_signal_handlers()
        config_path.write_text(
            config_path.read_text().replace('default_profile = "work"', 'default_profile = "personal"')
        )
        os.kill(os.getpid(), signal.SIGHUP)  # the handler runs before kill returns (main thread)
        assert service.reload_requested
        assert service.reload()
    finally:
        signal.signal(signal.SIGHUP, previous)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    assert (service.config.profiles.active, service.config.profiles.source) == ("personal", "default_profile")
    assert service.coordinator.registry.api_key("claude") == PERSONAL_KEY
    # The key a command printed is masked from then on, in everything the coordinator writes.
    assert PERSONAL_KEY not in service.coordinator.redact(f"the key is {PERSONAL_KEY}")


def test_a_reload_keeps_an_explicit_profile(config_path: Path) -> None:
    from adws.service import Service

    environ = env(WORK_ANTHROPIC_KEY=WORK_KEY, GITHUB_TOKEN="ghp_unused")
    svc = Service(load_config(config_path, profile="work", environ=environ), environ=environ)
    try:
        config_path.write_text(
            config_path.read_text().replace('default_profile = "work"', 'default_profile = "personal"')
        )
        assert svc.reload()
        assert (svc.config.profiles.active, svc.config.profiles.source) == ("work", "--profile")
        config_path.write_text(config_path.read_text().replace("[profiles.work.", "[profiles.job."))
        assert not svc.reload()  # the pinned profile is gone: rejected, the old config stays
        assert svc.config.profiles.active == "work"
    finally:
        svc.store.close()


def test_a_reload_log_names_the_profile_switch(config_path: Path) -> None:
    from adws.service import config_changes

    work = load_config(config_path, profile="work", environ=env())
    personal = load_config(config_path, profile="personal", environ=env())
    changes = config_changes(work, personal)
    assert "profile work -> personal" in changes and "provider claude changed" in changes
    assert not any(PERSONAL_KEY in c or "print(" in c for c in changes)


def test_doctor_reads_adw_profile_from_the_env_file_as_the_unit_would(config_path: Path) -> None:
    env_file = config_path.parent / "adw.env"
    env_file.write_text("ADW_PROFILE=personal\nPERSONAL_GITHUB_TOKEN=t\n")
    env_file.chmod(0o600)
    (check_,) = [c for c in run_doctor(config_path, Probes(environ=env())) if c.name == "profile"]
    assert (check_.status, check_.detail) == ("ok", "personal (from ADW_PROFILE): 2 of 2 reference(s) resolve")


def test_a_command_reference_is_shown_by_its_program_and_argument_count_only() -> None:
    from adw_modules.ops.profiles import shown_reference

    assert shown_reference("api_key_command", ["op", "read", "op://x/secret"]) == "op … (2 args)"
    assert shown_reference("token_command", ["sleep", "100"]) == "sleep … (1 arg)"
    assert shown_reference("api_key_command", ["pass"]) == "pass"
