from __future__ import annotations

from pathlib import Path

import pytest

from adw_modules.config.schema import ConfigError, Target, load_config
from tests.paths import REPO


def errors_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    return exc.value.issues


def test_example_config_is_valid() -> None:
    config = load_config(REPO / "config.toml")
    assert "claude-cli" in config.providers
    assert [r.priority for r in config.routing.rules] == sorted(
        (r.priority for r in config.routing.rules), reverse=True
    )
    assert config.routing.scenarios


def test_syntax_error_names_file_line_and_column(make_config) -> None:
    path = make_config('[routing]\nenabled = true\nrules = [ "unterminated\n')
    (issue,) = errors_of(path)
    assert issue.startswith(f"{path}:3:")
    assert "TOML syntax error" in issue


def test_undefined_provider_in_rule_names_rule_and_known_providers(make_config) -> None:
    path = make_config(
        """
        [[routing.rules]]
        name = "docs-haiku"
        priority = 60
        conditions = { labels = ["docs"] }
        provider = "alpah"
        model = "x"
        """,
        base=True,
    )
    (issue,) = errors_of(path)
    assert 'routing.rules[0] "docs-haiku": provider "alpah" is not defined (defined: alpha, beta)' in issue
    assert 'did you mean "alpha"' in issue


def test_every_problem_is_reported_at_once(make_config) -> None:
    path = make_config(
        """
        [providers.gamma]
        command_template = ["x"]
        enabld = true
        [[routing.rules]]
        name = "r1"
        priority = 1
        conditions = { prioritty = "high" }
        model = "m"
        [[routing.rules]]
        name = "r2"
        priority = "high"
        conditions = { retry_count = { gtee = 1 } }
        model = "m"
        """,
        base=True,
    )
    issues = errors_of(path)
    text = "\n".join(issues)
    assert 'providers.gamma: unknown key "enabld" (did you mean "enabled"?)' in text
    assert 'routing.rules[0] "r1".conditions: unknown condition "prioritty" (did you mean "priority"?)' in text
    assert 'routing.rules[1] "r2": priority must be an integer, not a string' in text
    assert 'retry_count: unknown operator "gtee" (did you mean "gte"?)' in text
    assert len(issues) == 4


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        ("hour_range = [22]", "hour_range must be [start, end] with whole hours"),
        ("hour_range = [5, 5]", "hour_range [5, 5] is empty"),
        ("hour_range = [0, 25]", "start must be 0-23 and end 0-24"),
        ('hour_range = ["1", "2"]', "hour_range must be [start, end]"),
        ('priority = "urgent"', 'priority "urgent" is unknown (known: critical, high, normal, low)'),
        ("labels = []", "labels must not be empty"),
        ("labels = 3", "labels must be a string or an array of strings"),
        ('retry_count = "1"', "retry_count must be an integer or a table of comparisons"),
        ('retry_count = { gte = "1" }', "retry_count.gte must be a number"),
        ('weekdays = ["monday"]', 'weekdays "monday" is unknown'),
        ("prompt_tokens = { between = 3 }", 'prompt_tokens: unknown operator "between"'),
    ],
)
def test_condition_errors(make_config, snippet: str, expected: str) -> None:
    path = make_config(
        f"""
        [[routing.rules]]
        name = "r"
        priority = 1
        conditions = {{ {snippet} }}
        model = "m"
        """,
        base=True,
    )
    issues = errors_of(path)
    assert any(expected in i and 'routing.rules[0] "r".conditions' in i for i in issues), issues


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '[providers.p]\nenabled = true\n[routing]\ndefault_provider = "p"\ndefault_model = "m"',
            "command_template is required",
        ),
        (
            '[providers.p]\ncommand_template = []\n[routing]\ndefault_model = "m"',
            "command_template must not be empty",
        ),
        (
            '[providers.p]\ncommand_template = ["x", "{max_turn}"]\n[routing]\ndefault_model = "m"',
            "command_template[1] uses {max_turn}, which has no value",
        ),
        (
            '[providers.p]\ncommand_template = ["x", "{oops"]\n[routing]\ndefault_model = "m"',
            "command_template[1]",
        ),
        (
            '[providers.p]\ncommand_template = ["x"]\nrequires_api_key = true\n[routing]\ndefault_model = "m"',
            "requires_api_key = true needs api_key_env",
        ),
        (
            '[providers.p]\ncommand_template = ["x"]\nenv = { OPENAI_API_KEY = "sk-live" }\n[routing]\ndefault_model = "m"',
            "OPENAI_API_KEY looks like a secret",
        ),
        (
            '[providers.p]\ncommand_template = ["x"]\nmax_concurrency = 0\n[routing]\ndefault_model = "m"',
            "max_concurrency must be greater than 0",
        ),
        (
            '[providers.p]\ncommand_template = ["x"]\noutput_format = "xml"\n[routing]\ndefault_model = "m"',
            'output_format "xml" is unknown',
        ),
        (
            '[providers.p]\ncommand_template = ["x"]\n[routing]\ntimezone = "Mars/Base"\ndefault_model = "m"',
            "timezone",
        ),
        ('[providers.p]\ncommand_template = ["x"]\n[routing]\nenabled = true', "default_model is not set"),
        ('[providers."a:b"]\ncommand_template = ["x"]', 'cannot contain ":"'),
        ("[routing]\nenabled = true", "no providers are defined"),
        (
            '[providers.p]\ncommand_template = ["x"]\n[routing]\ndefault_model = "m"\n[coordinator]\nx = 1',
            'coordinator: unknown key "x"',
        ),
        (
            '[providers.p]\ncommand_template = ["x"]\n[routing]\ndefault_model = "m"\n[github]\nx = 1',
            'github: unknown key "x"',
        ),
        (
            '[providers.p]\ncommand_template = ["x"]\n[routing]\ndefault_model = "m"\n[github]\nrepositories = ["nope"]',
            'repository "nope" is not "owner/name"',
        ),
        (
            '[providers.p]\ncommand_template = ["x"]\n[routing]\ndefault_model = "m"\n[github]\nrepositories = ["a/b"]\npriority_labels = { "p:1" = "urgent" }',
            '"p:1" maps to "urgent", not a priority',
        ),
        (
            '[providers.p]\ncommand_template = ["x"]\n[routing]\ndefault_model = "m"\n[github]\nrepositories = ["a/b"]\nprompt_template = "{title} {secret}"',
            "prompt_template uses {secret}",
        ),
        (
            '[providers.p]\ncommand_template = ["x"]\n[routing]\ndefault_model = "m"\n[github]\nrepositories = ["a/b"]\nlabels = { started = "x" }',
            'unknown lifecycle state "started"',
        ),
        (
            '[providers.p]\ncommand_template = ["x"]\n[routing]\ndefault_model = "m"\n[store]\nurl = "postgresql+psycopg://u:pw@h/db"',
            "url contains a password",
        ),
        (
            '[providers.p]\ncommand_template = ["x"]\n[routing]\ndefault_model = "m"\n[store]\nurl = "mysql://h/db"',
            'url must start with "sqlite:///"',
        ),
        (
            '[providers.p]\ncommand_template = ["x"]\n[routing]\ndefault_model = "m"\n[coordinator]\nheartbeat_s = 90',
            "heartbeat_s (90) must be shorter than lease_s (60)",
        ),
        (
            '[providers.p]\ncommand_template = ["x"]\n[routing]\ndefault_model = "m"\n[coordinator]\nretry_jitter = 2',
            "retry_jitter must be between 0 and 1",
        ),
        (
            '[providers.p]\ncommand_template = ["x"]\n[routing]\ndefault_model = "m"\n[health]\nfailure_threshold = 0',
            "failure_threshold must be greater than 0",
        ),
        (
            '[providers.p]\ncommand_template = ["x"]\n[routing]\ndefault_model = "m"\n[extra]\nx = 1',
            'unknown top-level table "extra"',
        ),
        (
            '[providers.p]\ncommand_template = ["x"]\n[providers.p.models.m]\ncapabilities = ["code", "a b"]\n[routing]\ndefault_model = "m"',
            'capability "a b" is not a plain word',
        ),
        (
            '[providers.p]\ncommand_template = ["x"]\n[providers.p.models."m\\u001b[2J"]\n[routing]\ndefault_model = "m"',
            'model name "m\\u001b[2J" holds control characters',
        ),
        (
            '[providers.p]\ncommand_template = ["x"]\n[providers.p.models.m]\ntier = "huge"\n[routing]\ndefault_model = "m"',
            'tier "huge" is unknown',
        ),
        (
            '[providers.p]\ncommand_template = ["x"]\n[providers.p.models.m]\nprice = { input_per_mtok = 1 }\n'
            '[routing]\ndefault_model = "m"',
            "input_per_mtok and output_per_mtok are both required",
        ),
    ],
)
def test_provider_and_routing_errors(make_config, text: str, expected: str) -> None:
    issues = errors_of(make_config(text))
    assert any(expected in i for i in issues), issues


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        (
            'name = "a"\npriority = 1\nmodel = "m"\n[[routing.rules]]\nname = "a"\npriority = 2\nmodel = "m"',
            "duplicate rule name",
        ),
        ('priority = 1\nmodel = "m"', "name is required"),
        ('name = "a"\nmodel = "m"', "priority is required"),
        ('name = "a"\npriority = 1', "needs a model, a model_select or a chain"),
        ('name = "a"\npriority = 1\nchain = "nope"', 'chain "nope" is not defined'),
        ('name = "a"\npriority = 1\nmodel = "m"\nfallback = ["alpha"]', 'write "provider:model"'),
        ('name = "a"\npriority = 1\nmodel = "m"\nfallback = ["gamma:x"]', 'provider "gamma" is not defined'),
        (
            'name = "a"\npriority = 1\nmodel = "m"\ninject = "missing.md"',
            'inject file "missing.md" does not exist',
        ),
        (
            'name = "a"\npriority = 1\nmodel = "m"\nmodel_select = { tier = "fast" }',
            "either model or model_select",
        ),
        ('name = "a"\npriority = 1\nmodel_select = { pick = "random" }', 'pick "random" is unknown'),
        ('name = "a"\npriority = 1\nmodel = "m"\nwhen = { priority = "low" }', 'unknown key "when"'),
    ],
)
def test_rule_errors(make_config, rule: str, expected: str) -> None:
    issues = errors_of(make_config(f"[[routing.rules]]\n{rule}\n", base=True))
    assert any(expected in i for i in issues), issues


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    (issue,) = errors_of(tmp_path / "nope.toml")
    assert "file not found" in issue


def test_chains_short_and_table_forms(make_config) -> None:
    path = make_config(
        """
        [routing.chains]
        fast = ["alpha:a-small", "beta:b-mid"]
        [routing.chains.slow]
        targets = ["beta:b-mid"]
        """,
        base=True,
    )
    config = load_config(path)
    assert config.routing.chains["fast"].targets == (Target("alpha", "a-small"), Target("beta", "b-mid"))
    assert config.routing.chains["slow"].targets == (Target("beta", "b-mid"),)


def test_target_parse_keeps_colons_in_model_names() -> None:
    assert Target.parse("ollama:qwen2.5-coder:7b") == Target("ollama", "qwen2.5-coder:7b")
    with pytest.raises(ValueError):
        Target.parse("no-colon")


def test_fingerprint_changes_with_content(make_config) -> None:
    a = load_config(make_config("", base=True))
    b = load_config(make_config("[params]\nmax_turns = 3\n", base=True))
    assert a.fingerprint != b.fingerprint and len(a.fingerprint) == 16
