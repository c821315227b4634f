"""The GitHub webhook receiver ``adw run`` serves when ``[github.webhook]`` is configured.

GitHub POSTs each delivery (``X-GitHub-Event``, ``X-GitHub-Delivery``, ``X-Hub-Signature-256``)
and waits at most 10 s for an answer.  The receiver, in this order:

0. holds at most ``MAX_CONNECTIONS`` (32) connections at a time; one more is closed at once;
1. answers 404 for another path, 405 for another method, 411 without ``Content-Length``,
   413 for a body over ``MAX_BODY`` (25 MB, GitHub's own cap) without reading it;
2. reads exactly ``Content-Length`` bytes within 10 s in all (a slow or trickling sender
   cannot hold a thread; 408) and verifies ``X-Hub-Signature-256``, the HMAC-SHA256 of those raw bytes with the
   secret, with ``hmac.compare_digest``, before anything parses them: missing or wrong -> 401,
   nothing recorded, nothing logged but the fact;
3. ``ping`` -> 200; an event or action adw does not act on -> 200 "ignored";
4. records ``X-GitHub-Delivery`` in the store: only the first coordinator to record an id acts
   on it, so a redelivery, a replay of a captured request (the signature stays valid) or the
   same delivery reaching two coordinators behind a load balancer is acted on once;
5. answers 202 and hands the event to one worker thread, which acts on it after the answer.

Sources: "Validating webhook deliveries" and "Webhook events and payloads" in GitHub's docs
(docs.github.com/en/webhooks); the payload schemas are ``webhook-*`` in GitHub's OpenAPI description.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import queue
import re
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger("adw.github.webhook")

MAX_BODY = 25 * 1024 * 1024
READ_TIMEOUT_S = 10.0  # for the whole body, not per read
MAX_CONNECTIONS = 32  # open at once; GitHub sends a few at a time
# GitHub's delivery ids are GUIDs; anything else (control characters, kilobytes) is refused
# before it reaches the store or a log line.
DELIVERY_ID = re.compile(r"[A-Za-z0-9-]{1,64}")
# The events and actions adw acts on (README "Set up GitHub" lists them for the hook's settings).
ACTIONS: dict[str, frozenset[str] | None] = {
    "issues": frozenset({"opened", "labeled", "unlabeled", "assigned", "unassigned", "closed", "reopened"}),
    "issue_comment": frozenset({"created"}),
    "pull_request_review": frozenset({"submitted"}),
    "pull_request_review_comment": frozenset({"created"}),
}


def signature(secret: bytes, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` value GitHub sends for ``body``."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def signature_ok(secret: bytes, body: bytes, header: str | None) -> bool:
    if not header:
        return False
    expected = signature(secret, body).encode()
    return hmac.compare_digest(expected, header.strip().encode("utf-8", "replace"))


class WebhookReceiver:
    """The HTTP server and its one worker; ``on_event(event, payload)`` runs on the worker."""

    def __init__(
        self,
        listen: tuple[str, int],
        path: str,
        secret: Callable[[], str],
        record: Callable[[str, str], bool],
        on_event: Callable[[str, dict[str, Any]], None],
    ) -> None:
        self.path = path
        self.secret = secret  # asked per delivery: a rotated secret (secret_command) applies at once
        self.record = record  # (delivery id, event) -> True for the first to record it
        self.on_event = on_event
        self.work: queue.Queue[tuple[str, dict[str, Any]] | None] = queue.Queue()
        self.counts: dict[int, int] = {}  # status -> answers, for tests and logs
        self._counting = threading.Lock()
        handler = type("_BoundHandler", (_Handler,), {"receiver": self})
        self.httpd = _BoundedServer(listen, handler)
        self._threads: list[threading.Thread] = []

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.httpd.server_address[:2]
        return str(host), int(port)

    @property
    def open_connections(self) -> int:
        return self.httpd.open_connections

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://{host}:{port}{self.path}"

    def start(self) -> WebhookReceiver:
        for target, name in ((self._serve, "adw-webhook-http"), (self._work, "adw-webhook-work")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.work.put(None)
        for thread in self._threads:
            thread.join(timeout=30)

    def _serve(self) -> None:
        self.httpd.serve_forever(poll_interval=0.1)

    def _work(self) -> None:
        while (item := self.work.get()) is not None:
            event, payload = item
            try:
                self.on_event(event, payload)
            except Exception:  # one bad delivery must not stop the others; polling reconciles
                log.exception(f"acting on a GitHub {event} delivery failed")
            finally:
                self.work.task_done()

    def counted(self, status: int) -> None:
        with self._counting:
            self.counts[status] = self.counts.get(status, 0) + 1


class _BoundedServer(ThreadingHTTPServer):
    """At most ``MAX_CONNECTIONS`` connections at a time, each on its own thread: more (a flood, or
    senders trickling their headers) are closed at once rather than given a thread each.  GitHub does
    not redeliver on its own, but the safety-net poll picks up what a refused delivery carried."""

    daemon_threads = True
    request_queue_size = 64  # the listen backlog (socketserver's default, 5, stalls a burst of connects)

    def __init__(self, listen: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(listen, handler)
        self.open_connections = 0
        self._slots = threading.Lock()

    def _release(self) -> None:
        with self._slots:
            self.open_connections -= 1

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._slots:
            full = self.open_connections >= MAX_CONNECTIONS
            if not full:
                self.open_connections += 1
        if full:
            log.warning(f"webhook connection from {client_address[0]} refused: {MAX_CONNECTIONS} already open")
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._release()


class _Handler(BaseHTTPRequestHandler):
    receiver: WebhookReceiver
    timeout = READ_TIMEOUT_S
    server_version = "adw-webhook"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the access log would show every probe; outcomes are logged below

    def _answer(self, status: int, message: str) -> None:
        body = json.dumps({"message": message}).encode()
        self.receiver.counted(status)  # before the answer: whoever reads it may look at the counts
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if status >= 400:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] != self.receiver.path:
            return self._answer(404, "not found")
        self._answer(405, "GitHub delivers webhooks with POST")

    do_PUT = do_DELETE = do_PATCH = do_HEAD = do_GET

    def do_POST(self) -> None:
        r = self.receiver
        if self.path.split("?", 1)[0] != r.path:
            return self._answer(404, "not found")
        raw_length = self.headers.get("Content-Length")
        if raw_length is None or not raw_length.strip().isdigit():
            return self._answer(411, "Content-Length is required")
        length = int(raw_length)
        if length > MAX_BODY:
            log.warning(f"webhook delivery from {self.client_address[0]} refused: {length} bytes is over {MAX_BODY}")
            return self._answer(413, f"payloads over {MAX_BODY} bytes are refused")
        body = self._read_body(length)
        if body is None:  # a sender too slow to send what it announced (or a trickle of it)
            return self._answer(408, "request body not received in time")
        if len(body) != length:
            return self._answer(400, "body shorter than Content-Length")
        try:
            secret = r.secret().encode()
        except Exception:  # the secret cannot be had: refuse rather than accept unverified bytes
            log.exception("webhook secret unavailable; delivery refused")
            return self._answer(503, "webhook secret unavailable")
        if not signature_ok(secret, body, self.headers.get("X-Hub-Signature-256")):
            log.warning(f"webhook delivery from {self.client_address[0]} refused: missing or wrong X-Hub-Signature-256")
            return self._answer(401, "bad signature")
        self._verified(body)

    def _read_body(self, length: int) -> bytes | None:
        """``length`` bytes within ``READ_TIMEOUT_S`` in all (a per-read timeout alone would let
        a sender trickling a byte every few seconds hold the thread for hours); None if late."""
        deadline = time.monotonic() + READ_TIMEOUT_S
        chunks: list[bytes] = []
        left = length
        try:
            while left > 0:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self.connection.settimeout(remaining)
                chunk = self.rfile.read1(min(left, 1 << 16))
                if not chunk:
                    break  # the sender closed early: shorter than announced
                chunks.append(chunk)
                left -= len(chunk)
        except OSError:  # the socket timeout
            return None
        finally:
            self.connection.settimeout(READ_TIMEOUT_S)
        return b"".join(chunks)

    def _verified(self, body: bytes) -> None:
        r = self.receiver
        event = (self.headers.get("X-GitHub-Event") or "").strip()
        delivery = (self.headers.get("X-GitHub-Delivery") or "").strip()
        if event == "ping":
            return self._answer(200, "pong")
        if not DELIVERY_ID.fullmatch(delivery):
            return self._answer(400, "X-GitHub-Delivery must be GitHub's delivery GUID")
        if "json" not in (self.headers.get("Content-Type") or ""):
            return self._answer(415, "set the webhook's content type to application/json")
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: nested too deep
            return self._answer(400, "the body is not JSON")
        if not isinstance(payload, dict):
            return self._answer(400, "the body is not a JSON object")
        actions = ACTIONS.get(event)
        if event not in ACTIONS or (actions is not None and payload.get("action") not in actions):
            return self._answer(200, "ignored: adw does not act on this event")
        try:
            first = r.record(delivery, event)
        except Exception:
            log.exception("recording a webhook delivery failed")
            return self._answer(503, "could not record the delivery; redeliver it")
        if not first:
            log.info(f"webhook delivery {delivery} ({event}) already taken: not acted on again")
            return self._answer(200, "already received")
        self._answer(202, "accepted")
        r.work.put((event, payload))
