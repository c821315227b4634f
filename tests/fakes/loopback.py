"""The loopback HTTP server the fakes in ``tests.fakes`` are built on.

``LoopbackServer`` is a stdlib ``ThreadingHTTPServer`` on ``127.0.0.1`` with an ephemeral port,
serving from a daemon thread.  It owns the lifecycle: ``start()``/``close()``, the context-manager
protocol (``with FakeX() as fake`` gives the fake itself), ``port`` and ``url(path)``.  A fake
passes its ``BaseHTTPRequestHandler`` subclass to ``__init__``; ``start()`` binds a subclass of it
whose ``fake`` attribute is the fake, so the handler reaches the fake's state as ``self.fake``.

How ``close()`` ends open connections is chosen by the class attribute ``drain_on_close``:

- ``False`` (the default, for keep-alive fakes): handler threads are daemons, the socket sets
  ``SO_REUSEADDR``, and ``close()`` sets ``_stopping`` (hanging responses wait on it), stops
  accepting, shuts down (``SHUT_RDWR``) every open connection — an idle keep-alive connection
  would otherwise park its handler thread in ``readline()`` — joins the handler threads, closes
  the socket and joins the serving thread.
- ``True`` (for fakes that close the connection after every response): the stdlib defaults, and
  ``close()`` sets ``_stopping``, stops accepting and waits for every request in flight to finish
  (non-daemon handler threads joined by ``server_close``): no request outlives the fake.

``ScriptedServer`` adds what the scripted model-API fakes share: a FIFO queue of behaviours
(``enqueue``/``script``; when it is empty the handler gets ``default``, or ``None``, meaning "the
queue ran dry", with ``strict_queue=True`` or no default) and a log of recorded requests
(``requests``), both guarded by one ``threading.Condition`` so tests can wait for requests
without sleeping.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, ClassVar, Generic, Self, TypeVar

R = TypeVar("R")  # a recorded request
B = TypeVar("B")  # a scripted behaviour


class LoopbackServer:
    """An HTTP server on ``127.0.0.1:<ephemeral>`` for one fake; see the module docstring."""

    drain_on_close: ClassVar[bool] = False
    # serve_forever's poll interval: how long close() may wait for the serving loop to notice.
    poll_interval: ClassVar[float] = 0.05
    thread_name: ClassVar[str | None] = None  # of the serving thread; None: Python's default

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self._handler = handler
        self._cond = threading.Condition()
        self._stopping = threading.Event()
        self._conns: set[socket.socket] = set()
        self._handler_threads: set[threading.Thread] = set()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Self:
        fake = self
        handler = type(self._handler.__name__, (self._handler,), {"fake": self})

        class Server(ThreadingHTTPServer):
            daemon_threads = not fake.drain_on_close
            allow_reuse_address = not fake.drain_on_close

            def process_request(self, request: Any, client_address: Any) -> None:
                with fake._cond:
                    fake._conns.add(request)
                super().process_request(request, client_address)

            def process_request_thread(self, request: Any, client_address: Any) -> None:
                with fake._cond:
                    fake._handler_threads.add(threading.current_thread())
                try:
                    super().process_request_thread(request, client_address)
                finally:
                    with fake._cond:
                        fake._handler_threads.discard(threading.current_thread())

            def shutdown_request(self, request: Any) -> None:
                with fake._cond:
                    fake._conns.discard(request)
                super().shutdown_request(request)

        self._server = Server(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": self.poll_interval},
            name=self.thread_name,
            daemon=True,
        )
        self._thread.start()
        return self

    def close(self) -> None:
        if self._server is None:
            return
        self._stopping.set()
        self._server.shutdown()
        if not self.drain_on_close:
            # Idle keep-alive connections would otherwise park their handler threads in readline().
            with self._cond:
                conns = list(self._conns)
                threads = list(self._handler_threads)
            for conn in conns:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            for t in threads:
                t.join(timeout=5)
        self._server.server_close()  # with drain_on_close: joins the handler threads
        assert self._thread is not None
        self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError(f"{type(self).__name__} is not running")
        return int(self._server.server_address[1])

    def url(self, path: str = "") -> str:
        """``http://127.0.0.1:<port>`` followed by ``path``."""
        return f"http://127.0.0.1:{self.port}{path}"


class ScriptedServer(LoopbackServer, Generic[R, B]):
    """A ``LoopbackServer`` with a FIFO behaviour queue and a request log; see the module docstring."""

    def __init__(
        self,
        handler: type[BaseHTTPRequestHandler],
        default: B | None = None,
        *,
        strict_queue: bool = False,
    ) -> None:
        super().__init__(handler)
        # strict_queue: an empty queue answers "ran dry" instead of using the default, so a test
        # that triggers more requests than it scripted sees it.
        self.default = default
        self.strict_queue = strict_queue
        self._queue: deque[B] = deque()
        self._requests: list[R] = []

    def enqueue(self, *behaviours: B) -> None:
        with self._cond:
            self._queue.extend(behaviours)

    script = enqueue

    @property
    def requests(self) -> list[R]:
        with self._cond:
            return list(self._requests)

    # internals used by the handler and the fakes -----------------------------------------------

    def _record(self, req: R) -> None:
        with self._cond:
            self._requests.append(req)
            self._cond.notify_all()

    def _next_behaviour(self) -> B | None:
        """The next scripted behaviour; None means the queue ran dry."""
        with self._cond:
            if self._queue:
                return self._queue.popleft()
        return None if self.strict_queue else self.default

    def _wait_for(self, predicate: Callable[[R], bool], n: int, timeout: float) -> list[R]:
        """The recorded requests matching ``predicate`` once there are ``n`` (or at ``timeout``)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                got = [r for r in self._requests if predicate(r)]
                left = deadline - time.monotonic()
                if len(got) >= n or left <= 0:
                    return got
                self._cond.wait(left)


class StreamingHandler(BaseHTTPRequestHandler):
    """What the keep-alive model-API fakes' handlers share: HTTP/1.1, silence, every usual method
    routed to ``_dispatch``, chunked bodies, and cutting a connection (FIN or RST) mid-answer."""

    protocol_version = "HTTP/1.1"
    sys_version = ""

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:  # the client (or close()) already dropped the connection
            pass

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _dispatch(self) -> None:
        raise NotImplementedError

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def _write_chunk(self, payload: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(payload), payload))
        self.wfile.flush()

    def _end_chunks(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _drop(self, *, reset: bool) -> None:
        """End the connection mid-answer: a TCP reset (``reset``) or an orderly FIN."""
        self.close_connection = True
        sock = self.connection
        try:
            if reset:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.close()
            else:
                sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
