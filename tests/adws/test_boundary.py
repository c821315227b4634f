"""Bad input at the edges of ``adw``: each is one line naming what is wrong and where, exit 2, no traceback."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adw_modules.config.schema import ConfigError, read_document
from adw_modules.ops.doctor import Probes, Status, run_doctor, store_location_problem
from adw_modules.queue.store import Store
from adws.cli import cli

ADW = Path(sys.executable).parent / "adw"
AGENT = Path(__file__).resolve().parents[2] / "tools" / "dry-run-agent.py"


def write_config(directory: Path, store_url: str, extra: str = "") -> Path:
    path = directory / "config.toml"
    path.write_text(
        f"[providers.a]\ncommand_template = {json.dumps([str(AGENT), '--model', '{model}'])}\n"
        '[providers.a.models.m1]\ntier = "fast"\n'
        '[routing]\ndefault_provider = "a"\ndefault_model = "m1"\n'
        f"[store]\nurl = {json.dumps(store_url)}\n{extra}"
    )
    return path


def adw(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def one_error_line(result: Result) -> str:
    """The single line the command wrote, after checking it failed with exit 2 and no traceback."""
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)  # not an exception escaping the command
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert result.stdout == ""
    return lines[0]


# ---------------------------------------------------------------- enqueue --body-file


def test_a_body_file_that_is_not_utf8_is_one_line_with_the_file_and_the_byte_offset(tmp_path: Path) -> None:
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'adw.db'}")
    body = tmp_path / "body.md"
    body.write_bytes("line one\r\nthe price is 5 €, not ".encode() + b"\xff\xfe" + b" pounds\n")
    offset = len("line one\r\nthe price is 5 €, not ".encode())

    line = one_error_line(adw("enqueue", "a title", "--body-file", str(body), "--config", str(config)))
    assert f"{body}: not valid utf-8 at byte offset {offset}" in line
    assert "--encoding" in line and "--replace-invalid" in line  # says how to get past it
    with Store.open(f"sqlite:///{tmp_path / 'adw.db'}") as store:
        assert store.list_tasks() == []  # nothing was enqueued


def test_a_body_file_can_be_read_in_another_encoding_or_with_bad_bytes_replaced(tmp_path: Path) -> None:
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'adw.db'}")
    body = tmp_path / "body.md"
    body.write_bytes(b"caf\xe9\r\nbad \xff end\n")
    latin = adw("enqueue", "latin", "--body-file", str(body), "--encoding", "latin-1", "--config", str(config))
    replaced = adw("enqueue", "replaced", "--body-file", str(body), "--replace-invalid", "--config", str(config))
    assert latin.exit_code == 0 and replaced.exit_code == 0, latin.output + replaced.output
    with Store.open(f"sqlite:///{tmp_path / 'adw.db'}") as store:
        bodies = {t.title: t.body for t in store.list_tasks()}
    assert bodies == {"latin": "café\nbad ÿ end\n", "replaced": "caf\ufffd\nbad \ufffd end\n"}
    unknown = one_error_line(
        adw("enqueue", "x", "--body-file", str(body), "--encoding", "no-such", "--config", str(config))
    )
    assert "--encoding no-such: unknown encoding" in unknown
    helped = adw("enqueue", "--help").output
    assert "--encoding" in helped and "--replace-invalid" in helped


# ---------------------------------------------------------------- config.toml


@pytest.mark.parametrize(
    ("text", "line", "col"),
    [
        ('[providers.a]\ncommand_template = ["x"]\ncommand_template = ["y"]\n', 3, 1),  # KeyAlreadyPresent
        ("[routing]\nenabled = true\n[routing]\nenabled = false\n", 3, 2),  # a table twice
        ("a = 1\na.b = 2\n", 2, 1),  # a dotted key over a value
        ("[routing]\nenabled = = true\n", 2, 11),
        ("x = " + "[" * 200 + "]" * 200 + "\n", 1, None),  # nested too deep
        ("[routing]\nenabled = tru\x00e\n", 2, None),
    ],
)
def test_every_toml_error_is_file_line_col_and_exit_2(tmp_path: Path, text: str, line: int, col: int | None) -> None:
    path = tmp_path / "config.toml"
    path.write_text(text)
    shown = one_error_line(adw("config", "validate", "--config", str(path)))
    assert shown.startswith(f"error: {path}:{line}:" + (f"{col}:" if col is not None else ""))
    status = one_error_line(adw("status", "--config", str(path)))  # every command reads it the same way
    assert status == shown


def test_a_config_that_is_not_utf8_names_the_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(b'[routing]\ndefault_model = "caf\xe9"\n')
    shown = one_error_line(adw("config", "validate", "--config", str(path)))
    assert shown.startswith(f"error: {path}:2:21: not valid UTF-8")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet=st.sampled_from(list("[]{}=.\"'#\n ,abc1-_:tT\x00\\")), max_size=60))
def test_read_document_raises_only_config_errors_with_a_position(text: str) -> None:
    try:
        read_document(text, Path("c.toml"))
    except ConfigError as exc:
        (issue,) = exc.issues
        where = issue.split(": ", 1)[0].split(":")
        assert where[0] == "c.toml" and where[1].isdigit() and where[2].isdigit(), issue


# ---------------------------------------------------------------- an unusable store location


def unusable_stores(tmp_path: Path) -> list[tuple[str, str]]:
    regular = tmp_path / "a-file"
    regular.write_text("x")
    not_sqlite = tmp_path / "notes.txt"
    not_sqlite.write_text("not a database\n")
    return [
        (f"sqlite:///{regular}/sub/adw.db", f"{regular} is a file, not a directory"),
        ("sqlite:////proc/adw/adw.db", "/proc is on a proc filesystem"),
        ("sqlite:////proc/adw.db", "/proc is on a proc filesystem"),
        (f"sqlite:///{not_sqlite}", "exists and is not a SQLite database"),
        (f"sqlite:///{tmp_path}", "is a directory, not a database file"),
    ]


@pytest.mark.parametrize("command", [["status"], ["enqueue", "t"], ["tasks"], ["usage"], ["run", "--once"]])
def test_an_unusable_store_is_one_line_naming_the_path_and_why(tmp_path: Path, command: list[str]) -> None:
    for url, why in unusable_stores(tmp_path):
        config = write_config(tmp_path, url)
        line = one_error_line(adw(*command, "--config", str(config)))
        path = url.removeprefix("sqlite:///")
        assert line == f"error: store {path}: {why}" or (line.startswith(f"error: store {path}: ") and why in line)


def test_a_store_server_that_refuses_is_one_line_too(tmp_path: Path) -> None:
    with socket.socket() as s:  # a loopback port nothing listens on
        s.bind(("127.0.0.1", 0))
        free_port = s.getsockname()[1]
    config = write_config(tmp_path, f"postgresql+psycopg://adw@127.0.0.1:{free_port}/adw")
    line = one_error_line(adw("status", "--config", str(config)))
    assert line.startswith(f"error: store postgresql+psycopg://adw@127.0.0.1:{free_port}/adw: cannot be opened: ")


def test_the_real_binary_prints_no_traceback(tmp_path: Path) -> None:
    config = write_config(tmp_path, "sqlite:////proc/adw/adw.db")
    proc = subprocess.run([str(ADW), "status", "--config", str(config)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "error: store /proc/adw/adw.db: /proc is on a proc filesystem (a kernel interface), which cannot hold a database"
    ]


def test_doctor_says_the_same_and_not_that_adw_run_creates_it(tmp_path: Path) -> None:
    for url, why in unusable_stores(tmp_path):
        config = write_config(tmp_path, url)
        checks = run_doctor(config, Probes(environ={"PATH": "/usr/bin:/bin"}))
        (store,) = [c for c in checks if c.name == "store"]
        assert store.status is Status.FAIL, store
        assert store.detail == store_location_problem(url) and why in store.detail
        assert "creates it" not in (store.fix or "")


def test_a_usable_location_has_no_problem(tmp_path: Path) -> None:
    assert store_location_problem(f"sqlite:///{tmp_path / 'new' / 'dir' / 'adw.db'}") is None
    with Store.open(f"sqlite:///{tmp_path / 'adw.db'}"):
        pass
    assert store_location_problem(f"sqlite:///{tmp_path / 'adw.db'}") is None
    assert store_location_problem("postgresql+psycopg://adw@127.0.0.1/adw") is None  # judged by connecting
