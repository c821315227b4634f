"""``adw`` commands for the queue and the service: run, enqueue, status, tasks, task (show, log), retry,
cancel, usage."""

from __future__ import annotations

import datetime as dt
import os
import socket
import sys
from pathlib import Path
from typing import NoReturn

import click

from adw_modules.config.schema import Config, ConfigError
from adw_modules.queue.store import Store
from adw_modules.queue.tasks import PRIORITY_RANK, TaskState
from adws import queue_views
from adws.cli import EXIT_CONFIG, config_error_exit, context_for, emit, read_options
from adws.stores import open_store


def _store(config_path: str | None) -> tuple[Store, Config]:
    config = context_for(config_path).config()
    try:
        return open_store(config), config
    except ConfigError as exc:
        config_error_exit(exc)


@click.command("run")
@click.option("--once", "mode", flag_value="once", help="One poll + dispatch cycle, then wait for it and exit.")
@click.option("--until-idle", "mode", flag_value="until_idle", help="Run until nothing is queued or running.")
@click.option(
    "--idle-wait",
    type=float,
    default=30.0,
    show_default=True,
    help="With --until-idle: also wait for retries due within this many seconds.",
)
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None)
def run_cmd(mode: str | None, idle_wait: float, log_format: str, config_path: str | None) -> None:
    """Run the coordinator (foreground service).  SIGTERM drains, SIGHUP reloads config."""
    from adw_modules.ops.logs import setup_logging
    from adws.service import Service  # the coordinator, APScheduler, the GitHub source: only here

    setup_logging(log_format)
    config = context_for(config_path).config()
    try:
        service = Service(config)
    except ConfigError as exc:
        config_error_exit(exc)
    service.install_signal_handlers()
    service.protect_environment()
    try:
        sys.exit(service.run(mode or "forever", idle_wait_s=idle_wait))  # type: ignore[arg-type]
    except ConfigError as exc:  # found at start: e.g. [github.webhook]'s port taken or secret unset
        service.store.close()
        config_error_exit(exc)


@click.command("enqueue")
@click.argument("title")
@click.option("--body", default=None)
@click.option("--body-file", type=click.Path(exists=True, dir_okay=False), default=None)
@click.option(
    "--encoding",
    default="utf-8",
    show_default=True,
    help="How --body-file is encoded.  A byte that does not decode is an error (exit 2, with its offset).",
)
@click.option(
    "--replace-invalid",
    is_flag=True,
    help="With --body-file: replace bytes that do not decode with U+FFFD instead of failing.",
)
@click.option("--priority", type=click.Choice(list(PRIORITY_RANK)), default="normal", show_default=True)
@click.option("--label", "labels", multiple=True, help="Repeatable.")
@click.option("--repo", default=None, help="owner/name")
@click.option("--id", "external_id", default=None, help="Idempotency key: enqueueing it again updates, not duplicates.")
@read_options
def enqueue_cmd(
    title: str,
    body: str | None,
    body_file: str | None,
    encoding: str,
    replace_invalid: bool,
    priority: str,
    labels: tuple[str, ...],
    repo: str | None,
    external_id: str | None,
    config_path: str | None,
    as_json: bool,
) -> None:
    """Add a task to the local queue; prints its id."""
    from adw_modules.sources.local import enqueue_local

    if body is not None and body_file is not None:
        raise click.UsageError("give --body or --body-file, not both")
    text = _read_body_file(Path(body_file), encoding, replace_invalid) if body_file else (body or "")
    store, _ = _store(config_path)
    try:
        task = enqueue_local(store, title, text, priority=priority, labels=labels, repo=repo, external_id=external_id)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    finally:
        store.close()
    emit(as_json, {"id": task.id, "state": str(task.state)}, lambda d: str(d["id"]))


def _read_body_file(path: Path, encoding: str, replace_invalid: bool) -> str:
    """The file's text, newlines made ``\\n``; exit 2 with one line saying where it does not decode."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        usage_exit(f"{path}: cannot read: {exc.strerror or exc}")
    try:
        text = data.decode(encoding, "replace" if replace_invalid else "strict")
    except LookupError:
        usage_exit(f"--encoding {encoding}: unknown encoding")
    except UnicodeDecodeError as exc:
        bad = data[exc.start : min(exc.end, exc.start + 4)].hex(" ")
        usage_exit(
            f"{path}: not valid {encoding} at byte offset {exc.start} (0x{bad}): {exc.reason}; "
            "pass --encoding if the file is in another one, or --replace-invalid"
        )
    return text.replace("\r\n", "\n").replace("\r", "\n")  # what reading it as text did


def usage_exit(message: str) -> NoReturn:
    """One line on stderr, exit 2: the command line asked for something that cannot be done."""
    click.echo(f"error: {message}", err=True)
    sys.exit(EXIT_CONFIG)


@click.command("status")
@read_options
def status_cmd(config_path: str | None, as_json: bool) -> None:
    """Queue depth, running attempts, provider health and spend."""
    store, config = _store(config_path)
    try:
        data = queue_views.status_data(config, store)
    finally:
        store.close()
    emit(as_json, data, queue_views.status_text)


@click.command("tasks")
@click.option("--state", type=click.Choice([str(s) for s in TaskState]), default=None)
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@read_options
def tasks_cmd(state: str | None, limit: int, config_path: str | None, as_json: bool) -> None:
    """Tasks, newest first."""
    store, _ = _store(config_path)
    try:
        tasks = store.list_tasks(TaskState(state) if state else None, limit=limit)
    finally:
        store.close()
    emit(as_json, queue_views.tasks_data(tasks), queue_views.tasks_text)


@click.group("task")
def task_group() -> None:
    """One task."""


@task_group.command("show")
@click.argument("task_id", type=int)
@read_options
def task_show(task_id: int, config_path: str | None, as_json: bool) -> None:
    """Every attempt with its routing decision, outcome, tokens and cost, and the task's events."""
    store, _ = _store(config_path)
    try:
        data = queue_views.task_data(store, task_id)
        if data is None:
            raise click.BadParameter(f"no task {task_id}", param_hint="TASK_ID")
    finally:
        store.close()
    emit(as_json, data, queue_views.task_text)


@task_group.command("log")
@click.argument("task_id", type=int)
@click.option("--attempt", "number", type=int, default=None, help="Attempt number (default: the latest).")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new lines until the attempt ends.")
@click.option("--raw", is_flag=True, help="The stored lines as they are, but with every secret known now masked.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None)
def task_log(task_id: int, number: int | None, follow: bool, raw: bool, config_path: str | None) -> None:
    """An attempt's transcript: what the agent said and did, its tool calls, the result.

    Every secret the config references is masked again as it is shown, in every JSON-escaped
    spelling too: a transcript stored before a key was known, or rotated, is masked like a new one.
    """
    from adw_modules.ops.secrets import secrets_of
    from adw_modules.workers import transcripts

    store, config = _store(config_path)
    redact = secrets_of(config, os.environ)
    try:
        attempts = store.attempts_for(task_id)
        if not attempts:
            raise click.BadParameter(f"task {task_id} has no attempts (or does not exist)", param_hint="TASK_ID")
        chosen = attempts[-1] if number is None else next((a for a in attempts if a.number == number), None)
        if chosen is None:
            raise click.BadParameter(f"task {task_id} has no attempt {number}", param_hint="--attempt")
        path = transcripts.transcript_path(config.service.coordinator.state_dir, chosen)
        if chosen.host != socket.gethostname():
            raise click.ClickException(f"attempt {chosen.number} ran on {chosen.host}: its transcript is {path} there")
        if chosen.state == "finished" and not path.exists():
            for shown in transcripts.ending(chosen):
                click.echo(redact(shown))
            raise click.ClickException(f"attempt {chosen.number}'s transcript is gone ({path}): pruned by retention?")
        provider = config.providers.get(chosen.provider)
        fmt = provider.output_format if provider is not None else "claude-stream-json"
        attempt_id = chosen.id

        def still_running() -> bool:
            return follow and any(a.id == attempt_id for a in store.running_attempts())

        renderer = transcripts.Renderer(fmt)
        for line in transcripts.follow(path, still_running):
            masked = redact(line)  # escaped spellings, before rendering decodes them; then the decoded text
            for shown in [masked.rstrip("\n")] if raw else renderer.lines(masked):
                click.echo(redact(shown))
        ended = next((a for a in store.attempts_for(task_id) if a.id == attempt_id), chosen)
        for shown in transcripts.ending(ended):
            click.echo(redact(shown), err=raw)  # --raw keeps stdout the stored lines alone
    finally:
        store.close()


@click.command("retry")
@click.argument("task_id", type=int)
@click.option("--reset", is_flag=True, help="Also reset retry_count to 0 (routing sees a first try).")
@read_options
def retry_cmd(task_id: int, reset: bool, config_path: str | None, as_json: bool) -> None:
    """Queue a finished (or waiting) task again."""
    store, _ = _store(config_path)
    try:
        ok = store.requeue_task(task_id, dt.datetime.now(dt.UTC), reset_retries=reset)
        task = store.get_task(task_id)
    finally:
        store.close()
    if task is None:
        raise click.BadParameter(f"no task {task_id}", param_hint="TASK_ID")
    if not ok:
        click.echo(f"task {task_id} is {task.state}: not requeued", err=True)
        sys.exit(1)
    emit(as_json, {"id": task_id, "state": str(task.state)}, lambda d: f"task {d['id']}: {d['state']}")


@click.command("cancel")
@click.argument("task_id", type=int)
@read_options
def cancel_cmd(task_id: int, config_path: str | None, as_json: bool) -> None:
    """Cancel a task; a running worker is killed by the coordinator that owns it."""
    store, _ = _store(config_path)
    try:
        state = store.request_cancel(task_id, dt.datetime.now(dt.UTC), reason="adw cancel")
    finally:
        store.close()
    if state is None:
        raise click.BadParameter(f"no task {task_id}", param_hint="TASK_ID")
    note = {
        TaskState.CANCELLED: "cancelled",
        TaskState.RUNNING: "cancel requested: its coordinator kills the worker at its next heartbeat",
    }.get(state, f"already {state}: nothing to cancel")
    emit(as_json, {"id": task_id, "state": str(state), "note": note}, lambda d: f"task {d['id']}: {d['note']}")


@click.command("usage")
@click.option(
    "--by",
    type=click.Choice(["provider", "model", "day", "task", "label"]),
    default="provider",
    show_default=True,
)
@click.option("--days", type=click.IntRange(min=1), default=None, help="Only the last N days.")
@read_options
def usage_cmd(by: str, days: int | None, config_path: str | None, as_json: bool) -> None:
    """Tokens and cost, grouped."""
    store, _ = _store(config_path)
    try:
        data = queue_views.usage_data(store, by, days)
    finally:
        store.close()
    emit(as_json, data, queue_views.usage_text)


@click.command("demo")
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False),
    default=".adw/demo",
    show_default=True,
    help="Where the demo's config, store and attempt logs go (recreated on every run).",
)
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True)
def demo_cmd(directory: str, log_format: str) -> None:
    """Enqueue a realistic mix of tasks and run them on the local dry-run agent, with a rate limit to fail over."""
    from adws.demo import run_demo

    sys.exit(run_demo(Path(directory), log_format=log_format))


@click.group("workspace")
def workspace_group() -> None:
    """Per-task git worktrees."""


@workspace_group.command("gc")
@read_options
def workspace_gc(config_path: str | None, as_json: bool) -> None:
    """Remove worktrees of tasks finished more than keep_days ago, and the oldest first above max_disk_mb."""
    from adw_modules.queue.tasks import TERMINAL_STATES
    from adw_modules.workspace.worktrees import Workspaces

    store, config = _store(config_path)
    ws_cfg = config.workspace
    if ws_cfg is None:
        store.close()
        raise click.UsageError("the config has no [workspace] section")

    def finished_at(task_id: int) -> dt.datetime | None:
        task = store.get_task(task_id)
        if task is None:
            return dt.datetime.min.replace(tzinfo=dt.UTC)  # its task is gone: nothing will resume it
        return task.updated_at if task.state in TERMINAL_STATES else None

    try:
        report = Workspaces(ws_cfg, os.environ).gc(dt.datetime.now(dt.UTC), finished_at)
    finally:
        store.close()
    data = {
        "removed": [
            {"task_id": r.task_id, "repo": r.repo, "path": str(r.path), "reason": r.reason, "bytes": r.bytes}
            for r in report.removed
        ],
        "bytes_freed": report.bytes_freed,
        "bytes_after": report.bytes_after,
        "over_limit": report.over_limit,
    }
    emit(
        as_json,
        data,
        lambda d: "\n".join(
            [f"removed task-{r['task_id']} ({r['reason']}, {r['bytes'] / 1e6:.1f} MB)" for r in d["removed"]]
            + [
                f"freed {d['bytes_freed'] / 1e6:.1f} MB; {d['bytes_after'] / 1e6:.1f} MB left"
                + ("; still over max_disk_mb (only unfinished tasks left)" if d["over_limit"] else "")
            ]
        ),
    )
