"""Every read command, in text mode, against a store holding every kind of task and event:
none may end in a traceback (only --json used to be tested)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from adws.cli import cli
from tests.adws import scene

TASK_IDS = range(1, 8)
READ_COMMANDS: list[list[str]] = [
    ["status"],
    ["tasks"],
    *[["tasks", "--state", s] for s in ("queued", "running", "retry_wait", "succeeded", "failed", "cancelled")],
    *[["task", "show", str(i)] for i in TASK_IDS],
    *[["task", "log", str(i)] for i in TASK_IDS],
    *[["usage", "--by", by] for by in ("provider", "model", "day", "task", "label")],
    ["usage", "--days", "1"],
    ["providers"],
    ["routing"],
    ["route", "--priority", "critical", "--label", "security"],
    ["route", "--priority", "low", "--label", "docs", "--retry-count", "1", "--hour", "3"],
    ["models"],
    ["models", "--capability", "code", "--tier", "fast"],
    ["config", "validate"],
    ["top", "--once"],
]


@pytest.fixture(scope="module")
def demo_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("scene")
    config, store = scene.build(tmp)
    store.close()
    return config.path


@pytest.mark.parametrize("args", READ_COMMANDS, ids=lambda a: " ".join(a))
def test_read_command_in_text_mode_never_crashes(demo_config: Path, args: list[str]) -> None:
    result = CliRunner().invoke(cli, ["--config", str(demo_config), *args])
    shown = result.output
    assert "Traceback" not in shown
    if result.exception is not None:
        assert isinstance(result.exception, SystemExit), repr(result.exception)
    # 1 or 2: a clear "Error: …" (a transcript that is not on this host, a task with no attempts).
    assert result.exit_code in (0, 1, 2), shown
    assert shown.strip(), "printed nothing"
    if result.exit_code:
        assert shown.startswith("Error: ") or "\nError: " in shown, shown
