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


@pytest.mark.parametrize("task_id", [1, 3, 4, 5, 6, 7])
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
