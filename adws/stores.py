"""Opening the store for a command: every reason it cannot be opened is one ``ConfigError`` line.

Imports the store and SQLAlchemy, not the service: ``adw enqueue`` and ``adw status`` open the
store without loading the coordinator, APScheduler, PyGithub or the doctor.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import sqlalchemy as sa

from adw_modules.config.schema import Config, ConfigError
from adw_modules.ops.store_location import store_location_problem
from adw_modules.queue.store import Store
from adw_modules.queue.store.engine import MigrationError


def open_store(config: Config, environ: Mapping[str, str] | None = None) -> Store:
    url = config.service.store_url(dict(os.environ if environ is None else environ))
    if not url:
        raise ConfigError([f"{config.path}: store: url_env {config.service.store.url_env} is not set"])
    problem = store_location_problem(url)
    if problem is not None:
        raise ConfigError([problem])
    try:
        return Store.open(url)
    except (OSError, sa.exc.SQLAlchemyError, MigrationError) as exc:  # what is left: the database said no
        shown = sa.make_url(url).render_as_string(hide_password=True)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConfigError([f"store {shown}: cannot be opened: {first}"]) from None


def open_existing_store(config: Config, environ: Mapping[str, str] | None = None) -> tuple[Store | None, str]:
    """The store if it exists and is at the current revision, opened without creating or
    migrating anything (``adw route`` reads history from it); else None and why not."""
    from adw_modules.queue.store.engine import HEAD_REVISION, make_engine, stored_revisions

    url = config.service.store_url(dict(os.environ if environ is None else environ))
    if not url:
        return None, f"store: url_env {config.service.store.url_env} is not set"
    parsed = sa.make_url(url)
    shown = parsed.render_as_string(hide_password=True)
    if parsed.get_backend_name() == "sqlite" and (
        not parsed.database or not os.path.isfile(os.path.expanduser(parsed.database))
    ):
        return None, f"no store at {shown}"
    try:
        engine = make_engine(url)
    except (OSError, ValueError, sa.exc.SQLAlchemyError) as exc:
        return None, f"store {shown} cannot be opened: {(str(exc).strip().splitlines() or [type(exc).__name__])[0]}"
    try:
        revisions = stored_revisions(engine)
    except (OSError, sa.exc.SQLAlchemyError) as exc:
        engine.dispose()
        return None, f"store {shown} cannot be read: {(str(exc).strip().splitlines() or [type(exc).__name__])[0]}"
    if revisions is None:
        engine.dispose()
        return None, f"store {shown} cannot be read or holds no adw schema yet"
    if revisions != [HEAD_REVISION]:
        engine.dispose()
        return (
            None,
            f"store {shown} is at revision {', '.join(revisions)}, not {HEAD_REVISION} (adw migrates it on start)",
        )
    return Store(engine), shown
