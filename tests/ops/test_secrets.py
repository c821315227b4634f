"""Secrets by reference: every value fetched is masked from then on; every failure is a reason."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from adw_modules.config.github import GitHubConfig
from adw_modules.config.schema import ProviderConfig, load_config
from adw_modules.ops.redact import MASK, Redactor
from adw_modules.ops.secrets import SECRET_CACHE_TTL_S, SecretError, Secrets, run_secret_command, secrets_of
from adw_modules.routing.providers import ProviderRegistry
from adw_modules.workers.attempt import AttemptRunner

ENV = {"PATH": "/usr/bin:/bin"}
FIRST, ROTATED = "sk-first-key-0123456789", "sk-rotated-key-9876543210"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def script(path: Path, body: str, mode: int = 0o755) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(mode)
    return path


def rotating_key_command(tmp_path: Path) -> Path:
    """Prints FIRST the first time it runs and ROTATED every time after."""
    seen = tmp_path / "rotated"
    return script(
        tmp_path / "key-cmd",
        f'if [ -e "{seen}" ]; then echo {ROTATED}; else touch "{seen}"; echo {FIRST}; fi\n',
    )


def vault_registry(
    make_config: Callable[..., Path],
    key_command: list[str],
    redactor: Redactor | None = None,
    secret_timeout_s: float = 15.0,
) -> ProviderRegistry:
    text = f"""
    [providers.vault]
    command_template = ["./agent"]
    api_key_env = "VAULT_KEY"
    api_key_command = {json.dumps(key_command)}
    """
    config = load_config(make_config(text, base=True))
    return ProviderRegistry(config, environ=ENV, secret_timeout_s=secret_timeout_s, redactor=redactor)


# ---------------------------------------------------------------- masking what was fetched


def test_a_key_command_value_is_masked_once_fetched_and_so_is_its_rotated_value(
    make_config: Callable[..., Path], tmp_path: Path
) -> None:
    redactor = Redactor()
    registry = vault_registry(make_config, [str(rotating_key_command(tmp_path))], redactor=redactor)
    text = f"first {FIRST} then {ROTATED}"
    assert redactor(text) == text  # nothing fetched yet, nothing known

    clock = FakeClock()
    registry.secrets.clock = clock
    assert registry.api_key("vault") == FIRST
    assert redactor(text) == f"first {MASK} then {ROTATED}"

    clock.now += SECRET_CACHE_TTL_S  # the cached value expires; meanwhile the manager rotated the key
    assert registry.api_key("vault") == ROTATED
    assert redactor(text) == f"first {MASK} then {MASK}"


def test_the_coordinators_redactor_masks_a_key_rotated_after_the_config_was_applied(
    make_config: Callable[..., Path], tmp_path: Path
) -> None:
    # What Coordinator.apply_config does: fetch everything up front into the registry's redactor,
    # hand that redactor to the attempt runner, which fetches the key again for each attempt.
    registry = vault_registry(make_config, [str(rotating_key_command(tmp_path))])
    clock = FakeClock()
    registry.secrets.clock = clock
    redact = registry.secrets.fetch_all(registry.config)
    attempts = AttemptRunner(registry.config, registry, environ=ENV, redact=redact)
    assert redact(f"key {FIRST}") == f"key {MASK}"

    clock.now += SECRET_CACHE_TTL_S
    env = attempts.child_env("vault")
    assert env["VAULT_KEY"] == ROTATED
    assert attempts.redact(f"the agent printed {ROTATED}") == f"the agent printed {MASK}"


def test_env_keys_and_the_github_token_are_masked_once_fetched(tmp_path: Path) -> None:
    environ = {"BETA_KEY": "beta-secret-value", "GH_TOKEN": "ghp_token_from_env_123"}
    secrets = Secrets(environ, cache_ttl_s=0)  # every ask runs the command again
    gh = GitHubConfig(repositories=("acme/app",), token_env="GH_TOKEN")
    assert secrets.github_token(gh) == "ghp_token_from_env_123"
    assert secrets.redactor("t=ghp_token_from_env_123") == f"t={MASK}"

    rotating = rotating_key_command(tmp_path)
    by_command = GitHubConfig(repositories=("acme/app",), token_command=(str(rotating),))
    assert [secrets.github_token(by_command) for _ in range(2)] == [FIRST, ROTATED]
    assert secrets.redactor(f"{FIRST} {ROTATED}") == f"{MASK} {MASK}"


def test_secrets_of_masks_every_key_the_config_references(make_config: Callable[..., Path], tmp_path: Path) -> None:
    key_cmd = script(tmp_path / "vault-key", "echo vault-secret-value\n")
    text = f"""
    [providers.vault]
    command_template = ["./agent"]
    api_key_env = "VAULT_KEY"
    api_key_command = ["{key_cmd}"]
    [providers.broken]
    command_template = ["./agent"]
    api_key_env = "BROKEN_KEY"
    api_key_command = ["false"]
    [github]
    repositories = ["acme/app"]
    """
    config = load_config(make_config(text, base=True))
    redact = secrets_of(config, {"BETA_KEY": "beta-secret-value", "GITHUB_TOKEN": "ghp_github_token_value"})
    masked = redact("beta-secret-value vault-secret-value ghp_github_token_value")
    assert masked == f"{MASK} {MASK} {MASK}"  # the broken provider is skipped, not an exception


# ---------------------------------------------------------------- every failure is a reason


def test_a_non_executable_key_command_makes_the_provider_unavailable_with_a_reason(
    make_config: Callable[..., Path], tmp_path: Path
) -> None:
    not_executable = script(tmp_path / "key-cmd", "echo never-printed-secret\n", mode=0o644)
    registry = vault_registry(make_config, [str(not_executable)])

    availability = registry.availability("vault")  # nothing raises

    assert not availability.available
    assert availability.reason == (
        f"api_key_command: {not_executable} could not be started: permission denied "
        f"(is it executable? chmod +x {not_executable})"
    )
    assert registry.unavailable()["vault"] == availability.reason
    assert "vault" not in registry.available_names()


def test_a_key_command_that_hangs_times_out_and_the_provider_is_unavailable(
    make_config: Callable[..., Path], tmp_path: Path
) -> None:
    hangs = script(tmp_path / "key-cmd", "exec sleep 60\n")
    registry = vault_registry(make_config, [str(hangs)], secret_timeout_s=0.5)

    started = time.monotonic()
    availability = registry.availability("vault")  # nothing raises

    assert time.monotonic() - started < 10
    assert not availability.available
    assert availability.reason == "api_key_command timed out after 0.5 s"
    assert registry.unavailable() == {"beta": "BETA_KEY not set", "vault": availability.reason}


@pytest.mark.parametrize(
    ("body", "mode", "reason"),
    [
        ("exit 0\n", 0o755, "token_command printed nothing"),
        ("echo 'not logged in' >&2; exit 4\n", 0o755, "token_command failed (exit 4): not logged in"),
        ("echo ok\n", 0o644, "permission denied"),
    ],
)
def test_a_failing_token_command_is_a_secret_error_naming_the_setting(
    tmp_path: Path, body: str, mode: int, reason: str
) -> None:
    cmd = script(tmp_path / "token-cmd", body, mode=mode)
    gh = GitHubConfig(repositories=("acme/app",), token_command=(str(cmd),))
    with pytest.raises(SecretError) as info:
        Secrets({}).github_token(gh)
    assert str(info.value).startswith("token_command") and reason in str(info.value)


def test_start_failures_say_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(SecretError, match=r"^api_key_command: no-such-secret-tool-xyz not found$"):
        run_secret_command(["no-such-secret-tool-xyz"], 5)
    bad_interpreter = tmp_path / "key-cmd"
    bad_interpreter.write_text("#!/no/such/interpreter\n")
    bad_interpreter.chmod(0o755)
    with pytest.raises(SecretError, match=r"#! interpreter was not found"):
        run_secret_command([str(bad_interpreter)], 5)
    with pytest.raises(SecretError, match="could not be started: permission denied"):
        run_secret_command([str(tmp_path)], 5)  # a directory


def test_a_missing_env_key_is_a_reason_unless_the_key_is_optional() -> None:
    secrets = Secrets({})
    required = ProviderConfig("p", ("agent",), requires_api_key=True, api_key_env="P_KEY")
    with pytest.raises(SecretError, match=r"^P_KEY not set$"):
        secrets.provider_key(required)
    assert secrets.provider_key(ProviderConfig("q", ("agent",), api_key_env="Q_KEY")) is None
    assert secrets.provider_key(ProviderConfig("r", ("agent",))) is None
    with pytest.raises(SecretError, match=r"^GITHUB_TOKEN is not set"):
        secrets.github_token(GitHubConfig(repositories=("acme/app",)))


# ---------------------------------------------------------------- the redactor


def test_values_added_while_other_threads_mask_are_all_masked() -> None:
    redactor = Redactor()
    values = [f"secret-value-{i:04d}" for i in range(200)]
    stop = threading.Event()

    def mask_constantly() -> None:
        while not stop.is_set():
            redactor(" ".join(values))

    maskers = [threading.Thread(target=mask_constantly) for _ in range(2)]
    for t in maskers:
        t.start()

    def add_each(part: list[str]) -> None:
        for value in part:
            redactor.add(value)

    adders = [threading.Thread(target=add_each, args=(part,)) for part in (values[::2], values[1::2])]
    for t in adders:
        t.start()
    for t in adders:
        t.join()
    stop.set()
    for t in maskers:
        t.join()
    assert redactor(" ".join(values)) == " ".join([MASK] * len(values))


# ---------------------------------------------------------------- the key command's cache


def counting_key_command(tmp_path: Path) -> tuple[Path, Path]:
    """A key command that appends a line to a file each time it runs, and prints a new key each time."""
    runs = tmp_path / "runs"
    cmd = script(
        tmp_path / "key-cmd", f'echo run >> "{runs}"; echo "sk-key-$(wc -l < "{runs}" | tr -d " ")-0123456789"\n'
    )
    return cmd, runs


def test_a_key_command_runs_once_per_ttl_however_often_the_key_is_asked_for(
    make_config: Callable[..., Path], tmp_path: Path
) -> None:
    cmd, runs = counting_key_command(tmp_path)
    registry = vault_registry(make_config, [str(cmd)])
    clock = FakeClock()
    registry.secrets.clock = clock

    for _ in range(20):  # twenty dispatch passes, each refreshing availability and starting an attempt
        registry.refresh()
        assert registry.availability("vault").available
        assert registry.api_key("vault") == "sk-key-1-0123456789"
        clock.now += 10
    assert runs.read_text().count("run") == 1

    clock.now += SECRET_CACHE_TTL_S
    assert registry.api_key("vault") == "sk-key-2-0123456789"  # expired: fetched again, rotated
    assert runs.read_text().count("run") == 2
    masked = registry.secrets.redactor("sk-key-1-0123456789 sk-key-2-0123456789")
    assert masked == f"{MASK} {MASK}"


def test_a_failed_key_command_is_not_cached(make_config: Callable[..., Path], tmp_path: Path) -> None:
    cmd = script(tmp_path / "key-cmd", "exit 1\n")
    registry = vault_registry(make_config, [str(cmd)])
    with pytest.raises(SecretError):
        registry.api_key("vault")
    script(cmd, "echo sk-now-it-works-123\n")  # the operator fixed the secret manager
    assert registry.api_key("vault") == "sk-now-it-works-123"


# ---------------------------------------------------------------- every spelling in JSON text

KEY = "sk-ant-api03/AbC_dEf+xyz=="


def json_escaped_every_way(value: str) -> list[str]:
    """The spellings a JSON encoder (or a CLI author) may give ``value`` inside a JSON string."""
    every_char = "".join(f"\\u{ord(c):04x}" for c in value)
    upper_hex = "".join(f"\\u{ord(c):04X}" for c in value)
    mixed = "".join(f"\\u{ord(c):04x}" if i % 2 else c for i, c in enumerate(value))
    dashes = value.replace("-", "\\u002d")
    slashes = value.replace("/", "\\/")
    nested = json.dumps(json.dumps({"k": every_char}))  # JSON text inside a JSON string
    return [json.dumps(value), every_char, upper_hex, mixed, dashes, slashes, nested]


@pytest.mark.parametrize("spelling", json_escaped_every_way(KEY))
def test_a_key_is_masked_however_json_escapes_it(spelling: str) -> None:
    redactor = Redactor([KEY])
    line = '{"type":"assistant","text":"my key is ' + spelling + ' ok"}'
    masked = redactor(line)
    assert MASK in masked
    # Nothing left that decodes back to the key, at any depth.
    decoded = masked
    for _ in range(4):
        decoded = decoded.encode().decode("unicode_escape")
        assert KEY not in decoded


def test_masking_an_escaped_key_keeps_the_json_valid() -> None:
    redactor = Redactor([KEY])
    line = json.dumps({"type": "result", "result": f"key={KEY}!", "n": 1}, ensure_ascii=False)
    escaped = line.replace("-", "\\u002d").replace("/", "\\/")
    assert json.loads(redactor(escaped)) == {"type": "result", "result": f"key={MASK}!", "n": 1}


def test_a_key_outside_the_bmp_is_masked_as_its_surrogate_pair() -> None:
    key = "key-\U0001f511-0123456789"
    redactor = Redactor([key])
    assert redactor(json.dumps({"t": key})) == json.dumps({"t": MASK})


def test_text_that_only_resembles_a_key_is_left_alone() -> None:
    redactor = Redactor([KEY])
    near = KEY.replace("-", "\\u002e")  # '.' not '-'
    assert redactor(near) == near
    assert redactor("a \\n plain \\\\ line") == "a \\n plain \\\\ line"
