"""Every text view as people see it, against golden files (times fixed, UTC).

Regenerate after an intended change with ``ADW_UPDATE_GOLDEN=1 pytest tests/adws`` and read
the diff before committing it.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from adw_modules.config.schema import Config
from adw_modules.queue.store import Store
from adw_modules.workers import transcripts
from adws import queue_views
from tests.adws import scene

GOLDEN = Path(__file__).with_name("golden")
UTC = dt.UTC


def check(name: str, text: str, tmp_path: Path) -> None:
    text = text.replace(str(tmp_path), "<tmp>") + "\n"
    path = GOLDEN / f"{name}.txt"
    if os.environ.get("ADW_UPDATE_GOLDEN"):
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"no golden file {path}: run with ADW_UPDATE_GOLDEN=1 and read it"
    assert text == path.read_text(encoding="utf-8")


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[Config, Store]]:
    config, store = scene.build(tmp_path)
    yield config, store
    store.close()


def test_status(world: tuple[Config, Store], tmp_path: Path) -> None:
    config, store = world
    data = queue_views.status_data(config, store, now=scene.NOW)
    check("status", queue_views.status_text(data, now=scene.NOW, tz=UTC), tmp_path)


def test_tasks(world: tuple[Config, Store], tmp_path: Path) -> None:
    _, store = world
    data = {"tasks": [t.to_dict() for t in sorted(store.list_tasks(), key=lambda t: t.id)]}
    check("tasks", queue_views.tasks_text(data), tmp_path)


@pytest.mark.parametrize("task_id", [1, 2, 3, 4, 5, 6, 7])
def test_task_show(world: tuple[Config, Store], tmp_path: Path, task_id: int) -> None:
    _, store = world
    task = store.get_task(task_id)
    assert task is not None
    data = {
        "task": task.to_dict(),
        "attempts": [a.to_dict() for a in store.attempts_for(task_id)],
        "events": store.events(task_id=task_id, limit=200),
    }
    check(f"task_show_{task_id}", queue_views.task_text(data, now=scene.NOW, tz=UTC), tmp_path)


@pytest.mark.parametrize("by", ["provider", "model", "label"])
def test_usage(world: tuple[Config, Store], tmp_path: Path, by: str) -> None:
    _, store = world
    check(f"usage_{by}", queue_views.usage_text({"by": by, "rows": store.usage(by)}), tmp_path)


@pytest.mark.parametrize(("task_id", "name"), [(1, "rate_limited"), (3, "crashed"), (5, "auth_failed")])
def test_task_log_ending(world: tuple[Config, Store], tmp_path: Path, task_id: int, name: str) -> None:
    _, store = world
    first = store.attempts_for(task_id)[0]
    check(f"task_log_ending_{name}", "\n".join(transcripts.ending(first)), tmp_path)


CLI_VIEWS = {
    "providers": ["providers"],
    "routing": ["routing"],
    "route_critical": ["route", "--priority", "critical", "--label", "security", "--hour", "14"],
    "route_retry": ["route", "--priority", "normal", "--label", "bug", "--retry-count", "1", "--hour", "3"],
    "models": ["models"],
    "models_fast_code": ["models", "--capability", "code", "--tier", "fast"],
}


@pytest.mark.parametrize("name", list(CLI_VIEWS))
def test_config_views(world: tuple[Config, Store], tmp_path: Path, name: str) -> None:
    from click.testing import CliRunner

    from adws.cli import cli
    from tests.paths import REPO

    config, _ = world
    result = CliRunner().invoke(cli, ["--config", str(config.path), *CLI_VIEWS[name]])
    assert result.exit_code == 0, result.output
    check(f"cli_{name}", result.output.rstrip("\n").replace(str(REPO), "<repo>"), tmp_path)


def test_doctor(world: tuple[Config, Store], tmp_path: Path) -> None:
    import sys

    from adw_modules.ops.doctor import DiskUsage, Probes, run_doctor
    from adws.cli_ops import doctor_text
    from tests.paths import REPO

    config, _ = world
    gib = 1024**3
    probes = Probes(
        environ={"PATH": str(tmp_path / "empty-bin"), "TZ": "UTC"},  # no timedatectl: the same answer everywhere
        disk_usage=lambda _p: DiskUsage(100 * gib, 60 * gib, 40 * gib),
        now=lambda: scene.NOW,
    )
    text = doctor_text(run_doctor(config.path, probes))
    text = text.replace(str(REPO), "<repo>").replace(sys.executable, "<python>")
    check("doctor", text, tmp_path)


@pytest.mark.parametrize(
    ("name", "recorded", "task_id", "outcome"),
    [
        ("success", "success.jsonl", 1, None),
        ("rate_limited", "rate_limit_429.jsonl", 1, None),
        ("timed_out", "dropped_connection.jsonl", 3, "timeout"),
        ("running", "success.jsonl", 4, None),
    ],
)
def test_task_log(
    world: tuple[Config, Store], tmp_path: Path, name: str, recorded: str, task_id: int, outcome: str | None
) -> None:
    """What ``adw task log`` prints: the transcript rendered, then how the attempt ended."""
    import dataclasses

    from tests.paths import FIXTURES

    _, store = world
    attempts = store.attempts_for(task_id)
    attempt = attempts[-1] if name == "success" else attempts[0]
    if outcome is not None:
        attempt = dataclasses.replace(
            attempt,
            outcome=outcome,
            error_kind=outcome,
            error_message="timed out after 1800 s",
            exit_code=-15,
            stderr_tail="",
        )
    renderer = transcripts.Renderer("claude-stream-json", now=scene.NOW)
    lines = (FIXTURES / "recorded" / "claude-cli" / recorded).read_text(encoding="utf-8").splitlines(keepends=True)
    shown = [out for line in lines for out in renderer.lines(line)] + transcripts.ending(attempt)
    check(f"task_log_{name}", "\n".join(shown), tmp_path)
