"""Semantic config errors name the line: LineIndex maps a table path back to the text."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from adw_modules.config.lines import LineIndex, parse_where
from adw_modules.config.schema import ConfigError, load_config

TEXT = textwrap.dedent(
    '''\
    # a comment [not.a.table]
    [providers.alpha]
    command_template = [
      "./agent",
      "[not = a key]",
    ]
    env = { A = "1" }
    description = """
    x = 1
    [not.a.header]
    """
    limits.rpm = 5

    [providers."dotted.name".models.m1]
    tier = "fast"

    [[routing.rules]]
    name = "first"

    [[routing.rules]]  # the second
    name = "second"
    conditions = { labels = ["a"] }
    '''
)


@pytest.mark.parametrize(
    ("where", "message", "line"),
    [
        ("providers.alpha", "", 2),
        ("providers.alpha", "command_template must not be empty", 3),
        ("providers.alpha", "env: A is a secret", 7),
        ("providers.alpha", "max_concurrency must be greater than 0", 2),  # not written: the table
        ("providers.alpha.limits", "rpm must be positive", 12),  # a dotted key
        ('providers."dotted.name".models.m1', 'tier "x" is unknown', 15),
        ('routing.rules[1] "second".conditions', "unknown condition", 22),
        ('routing.rules[1] "second"', "needs a model", 20),
        ('routing.rules[0] "first"', "name must be unique", 18),
        ("coordinator", "max_concurrency must be positive", None),  # no such table at all
    ],
)
def test_line_of(where: str, message: str, line: int | None) -> None:
    assert LineIndex(TEXT).line_of(where, message) == line


def test_multi_line_values_hide_what_looks_like_keys_and_headers() -> None:
    index = LineIndex(TEXT)
    assert ("not", "a", "header") not in index.lines and ("providers", "alpha", "x") not in index.lines
    assert ("providers", "alpha", "[not") not in index.lines


def test_parse_where() -> None:
    assert parse_where('routing.rules[1] "docs-haiku".conditions') == ("routing", "rules", "1", "conditions")
    assert parse_where('providers.alpha.models."a-small"') == ("providers", "alpha", "models", "a-small")


def test_errors_from_load_config_carry_the_line(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(
        textwrap.dedent(
            """\
            [providers.alpha]
            command_template = ["./agent", "{model}"]
            max_concurrency = -1

            [routing]
            default_provider = "alpha"
            default_model = "m"

            [[routing.rules]]
            name = "docs"
            priority = 1
            conditions = { labelz = ["docs"] }
            provider = "alpah"
            model = "m"
            """
        )
    )
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert sorted(exc.value.issues) == sorted(
        [
            f"{path}:3: providers.alpha: max_concurrency must be greater than 0, not -1",
            f'{path}:12: routing.rules[0] "docs".conditions: unknown condition "labelz" (did you mean "labels"?)',
            f'{path}:13: routing.rules[0] "docs": provider "alpah" is not defined (defined: alpha); did you mean "alpha"?',
        ]
    )


def test_a_typod_key_is_reported_at_its_own_line_not_its_tables(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    filler = "".join(f"# line {i}\n" for i in range(3, 39))
    path.write_text(
        '[routing]\ndefault_provider = "a"\ndefault_model = "m"\n\n[providers.a]\n'
        'command_template = ["true"]\n' + filler + "timout = 60\n",
        encoding="utf-8",
    )
    typo_line = path.read_text(encoding="utf-8").splitlines().index("timout = 60") + 1
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    (issue,) = [i for i in caught.value.issues if "timout" in i]
    assert issue.startswith(f'{path}:{typo_line}: providers.a: unknown key "timout"')


def test_an_unknown_table_key_points_at_the_key_in_a_nested_table(tmp_path: Path) -> None:
    index = LineIndex(
        '[providers.a]\ncommand_template = ["x"]\n\n[providers.a.models.m]\ntier = "fast"\ncapabilitys = []\n'
    )
    assert index.line_of("providers.a.models.m", 'unknown key "capabilitys" (did you mean "capabilities"?)') == 6
    assert index.line_of("providers.a", 'unknown key "nope"') == 1  # not written anywhere: the table's header
