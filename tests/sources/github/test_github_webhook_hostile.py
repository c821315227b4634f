"""Hostile deliveries against the receiver alone: each is answered, nothing is recorded or acted on.

The receiver here records into a list and acts into another (no store or source: what is under
test is the HTTP boundary).  Bodies with a valid signature stand for a leaked secret or a GitHub
bug: the receiver must still answer, never crash a handler thread or hang.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
from collections.abc import Iterator

import pytest

from adw_modules.sources.github import webhook
from adw_modules.sources.github.webhook import MAX_BODY, WebhookReceiver, signature
from tests.sources.github.conftest import wait_for

SECRET = b"whsec-hostile"
PATH = "/github/webhook"


class Recording:
    def __init__(self) -> None:
        self.recorded: list[tuple[str, str]] = []
        self.acted: list[str] = []
        self.act = threading.Semaphore(0)
        self.receiver = WebhookReceiver(("127.0.0.1", 0), PATH, lambda: SECRET.decode(), self.record, self.on_event)
        self.receiver.start()

    def on_event(self, event: str, payload: dict[str, object]) -> None:
        self.acted.append(event)
        self.act.release()

    def record(self, delivery: str, event: str) -> bool:
        self.recorded.append((delivery, event))
        return True

    def raw(self, head: bytes, body: bytes = b"") -> int:
        """Send ``head`` (request line and headers, CRLF-separated, no blank line) and ``body``; the status."""
        with socket.create_connection(self.receiver.address, timeout=30) as sock:
            try:
                sock.sendall(head + b"\r\n\r\n" + body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # answered and closed before the rest was sent
            return _status(sock)


def _status(sock: socket.socket) -> int:
    answer = b""
    while b"\r\n" not in answer:
        chunk = sock.recv(4096)
        if not chunk:
            break
        answer += chunk
    return int(answer.split(b" ", 2)[1]) if answer else -1


@pytest.fixture(scope="module")
def hook() -> Iterator[Recording]:
    r = Recording()
    yield r
    r.receiver.stop()


def _head(body: bytes, sig: str | None, delivery: str = "0b1c2d3e-aaaa-bbbb-cccc-000000000001", **extra: str) -> bytes:
    headers = {
        "Host": "adw",
        "Content-Type": "application/json",
        "X-GitHub-Event": "issues",
        "X-GitHub-Delivery": delivery,
        "Content-Length": str(len(body)),
        **({"X-Hub-Signature-256": sig} if sig is not None else {}),
        **extra,
    }
    lines = [f"POST {PATH} HTTP/1.1"] + [f"{k}: {v}" for k, v in headers.items() if v != ""]
    return "\r\n".join(lines).encode("latin-1")


BODY = json.dumps({"action": "labeled", "issue": {"number": 1}, "repository": {"full_name": "acme/app"}}).encode()


def test_signatures_that_are_not_githubs_are_refused(hook: Recording) -> None:
    sha1 = "sha1=" + hmac.new(SECRET, BODY, hashlib.sha1).hexdigest()
    upper = "sha256=" + hmac.new(SECRET, BODY, hashlib.sha256).hexdigest().upper()
    bare = hmac.new(SECRET, BODY, hashlib.sha256).hexdigest()
    for sig in (sha1, upper, bare, "sha256=", "sha256=" + "0" * 64, signature(SECRET, BODY) + " x", "é"):
        assert hook.raw(_head(BODY, sig), BODY) == 401, sig
    assert hook.recorded == [] and hook.acted == []


@pytest.mark.parametrize(
    "body",
    [
        b'{"action": "labeled\x00"}',  # a raw NUL: not JSON
        b'{"action": "\xff\xfe labeled"}',  # invalid UTF-8
        b"[" * 100_000 + b"]" * 100_000,  # nested past the parser's recursion limit
        b'"just a string"',
        b"",
    ],
    ids=["nul", "invalid-utf8", "deeply-nested", "not-an-object", "empty"],
)
def test_signed_bodies_that_are_not_a_payload_get_400(hook: Recording, body: bytes) -> None:
    assert hook.raw(_head(body, signature(SECRET, body)), body) == 400
    assert hook.recorded == [] and hook.acted == []


@pytest.mark.parametrize(
    "delivery",
    ["d" * 10_240, "abc\x01def", "abc\x7fdef", "../../etc", "a b"],
    ids=["10KB", "ctl", "del", "path", "space"],
)
def test_a_delivery_id_that_is_not_a_guid_is_refused(hook: Recording, delivery: str) -> None:
    assert hook.raw(_head(BODY, signature(SECRET, BODY), delivery=delivery), BODY) == 400
    assert hook.recorded == [] and hook.acted == []


def test_a_chunked_body_without_content_length_is_refused_unread(hook: Recording) -> None:
    """25 MB + 1 announced chunk by chunk, no Content-Length: 411 at once, nothing read."""
    head = _head(b"", signature(SECRET, b""), **{"Content-Length": "", "Transfer-Encoding": "chunked"})
    with socket.create_connection(hook.receiver.address, timeout=30) as sock:
        sock.sendall(head + b"\r\n\r\n" + f"{MAX_BODY + 1:x}\r\n".encode() + b"x" * 65536)
        assert _status(sock) == 411
    assert hook.recorded == []


def test_a_trickled_body_is_cut_off_at_the_deadline(hook: Recording, monkeypatch: pytest.MonkeyPatch) -> None:
    """A byte every 0.1 s never trips a per-read timeout; the whole-body deadline answers 408."""
    monkeypatch.setattr(webhook, "READ_TIMEOUT_S", 0.5)
    body = b"x" * 1000
    stop = threading.Event()
    with socket.create_connection(hook.receiver.address, timeout=30) as sock:
        sock.sendall(_head(body, signature(SECRET, body)) + b"\r\n\r\n")

        def trickle() -> None:
            for byte in body:
                if stop.wait(0.1):  # the pace of the attack, not a wait for an event
                    return
                try:
                    sock.sendall(bytes([byte]))
                except OSError:
                    return

        sender = threading.Thread(target=trickle, daemon=True)
        sender.start()
        try:
            assert _status(sock) == 408
        finally:
            stop.set()
            sender.join(5)
    assert hook.recorded == []


def test_a_good_delivery_still_goes_through(hook: Recording) -> None:
    assert hook.raw(_head(BODY, signature(SECRET, BODY)), BODY) == 202
    assert hook.recorded == [("0b1c2d3e-aaaa-bbbb-cccc-000000000001", "issues")]
    assert hook.act.acquire(timeout=30)
    assert hook.acted == ["issues"]
    hook.recorded.clear()
    hook.acted.clear()


def test_connections_past_the_cap_are_closed_and_deliveries_go_on_after(hook: Recording) -> None:
    """Senders that open connections and send nothing (or trickle their headers) hold at most
    ``MAX_CONNECTIONS`` threads; one more is closed at once; once they go, deliveries are served."""
    idle = [socket.create_connection(hook.receiver.address, timeout=30) for _ in range(webhook.MAX_CONNECTIONS)]
    try:
        # Connections are taken in order, each idle one holding its thread: this one is past the cap.
        with socket.create_connection(hook.receiver.address, timeout=30) as extra:
            assert extra.recv(1) == b"", "the connection past the cap was closed unanswered"
    finally:
        for sock in idle:
            sock.close()
    wait_for(lambda: hook.receiver.open_connections == 0, "the idle connections' threads to end")
    assert hook.raw(_head(BODY, signature(SECRET, BODY), delivery="0b1c2d3e-aaaa-bbbb-cccc-000000000002"), BODY) == 202
    assert hook.act.acquire(timeout=30)
    hook.recorded.clear()
    hook.acted.clear()
