"""Can a SQLite store be created or opened at this path?  Judged by looking, before connecting.

Shared by ``adw doctor`` and every command that opens the store: it imports only SQLAlchemy's
URL parser, so a command that opens the store does not import the doctor.
"""

from __future__ import annotations

import os
from pathlib import Path

import sqlalchemy as sa

# Filesystems that exist only as a kernel interface: nothing can create a database there,
# and root's permission checks (which pass everywhere) do not say so.
PSEUDO_FILESYSTEMS = frozenset(
    {
        "proc",
        "sysfs",
        "devpts",
        "devtmpfs",
        "cgroup",
        "cgroup2",
        "debugfs",
        "tracefs",
        "securityfs",
        "configfs",
        "bpf",
        "pstore",
        "efivarfs",
        "mqueue",
        "hugetlbfs",
        "fusectl",
        "binfmt_misc",
        "autofs",
    }
)
SQLITE_HEADER = b"SQLite format 3\x00"


def store_location_problem(url: str) -> str | None:
    """Why the store at ``url`` cannot be opened, as one line naming the path; None if it can be.

    Only a SQLite file is judged (a server's store is judged by connecting to it), and only
    by looking: nothing is created.  The first existing ancestor of the file decides whether
    the missing directories can be made.
    """
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError:
        return f"store URL {url.split('://')[0]}://…: not a database URL"
    if parsed.get_backend_name() != "sqlite":
        return None
    if parsed.database in (None, "", ":memory:"):
        return "store sqlite:// needs a file (WAL and several connections), not :memory:"
    db = Path(parsed.database).expanduser().absolute()
    return _sqlite_path_problem(db)


def _sqlite_path_problem(db: Path) -> str | None:
    existing = next(p for p in (db, *db.parents) if p.exists() or p.is_symlink())
    fs = _filesystem_type(existing)
    if fs in PSEUDO_FILESYSTEMS:
        return f"store {db}: {existing} is on a {fs} filesystem (a kernel interface), which cannot hold a database"
    user = _user()
    if existing == db:
        return _existing_sqlite_problem(db, user)
    if not existing.is_dir():
        return f"store {db}: {existing} is a file, not a directory"
    if not os.access(existing, os.W_OK | os.X_OK) or _read_only_mount(existing):
        why = "is on a read-only filesystem" if _read_only_mount(existing) else f"is not writable by {user}"
        return f"store {db}: cannot create it: {existing} {why}"
    return None


def _existing_sqlite_problem(db: Path, user: str) -> str | None:
    if db.is_dir():
        return f"store {db}: is a directory, not a database file"
    if not db.is_file():
        return f"store {db}: is not a regular file"
    if not os.access(db, os.R_OK | os.W_OK):
        return f"store {db}: not readable and writable by {user}"
    try:
        with db.open("rb") as fh:
            header = fh.read(len(SQLITE_HEADER))
    except OSError as exc:
        return f"store {db}: cannot read: {exc.strerror or exc}"
    if header and header != SQLITE_HEADER[: len(header)]:
        return f"store {db}: exists and is not a SQLite database"
    parent = db.parent
    if not os.access(parent, os.W_OK | os.X_OK) or _read_only_mount(parent):
        # WAL mode keeps adw.db-wal and adw.db-shm beside the file.
        return f"store {db}: its directory {parent} is not writable by {user} (SQLite's WAL files go there)"
    return None


def _filesystem_type(path: Path) -> str | None:
    """The type of the filesystem ``path`` is on, from /proc/self/mounts (Linux); None elsewhere."""
    try:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return None
    real = str(path.resolve())
    best, fstype = "", None
    for line in mounts:
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        inside = real == point or real.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, fstype = point, fields[2]
    return fstype


def _read_only_mount(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _user() -> str:
    try:
        import pwd

        return pwd.getpwuid(os.geteuid()).pw_name
    except (ImportError, KeyError):
        return f"uid {os.geteuid()}"
