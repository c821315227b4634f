"""One streamed chat completion from OpenRouter or any OpenAI-compatible server, told as Claude stream-JSON.

This is the library behind ``tools/openrouter-cli.py``.  The process contract:

- stdout (and ``--output-file``, truncated first) get NDJSON, one object per line, flushed per
  line, in Claude Code's ``--output-format stream-json`` shapes: one ``system``/``init`` line,
  ``assistant`` lines whose text blocks, concatenated, are the reply (deltas are coalesced),
  and exactly one ``result`` line.  With ``--output-format json`` only the result object is
  written.  On an API failure an ``assistant`` line with ``model: "<synthetic>"`` and an
  ``error`` name precedes the result, as Claude does.
- The result follows Claude: API failures are ``subtype: "success"`` with ``is_error: true``,
  ``api_error_status`` (HTTP status, or the numeric ``error.code`` of an error sent inside a
  200; a non-numeric code goes to ``api_error_code``), ``retry_after_s``/``resets_at`` when the
  server said when to come back.  ``usage.input_tokens`` excludes cache reads and writes.
  ``total_cost_usd`` is the cost the server reported (OpenRouter ``usage.cost``, plus the
  upstream cost under BYOK) and null when it reported none: it is never estimated here.
- Exit 0 iff the result has ``is_error: false``; 1 for any failed attempt (a result line is
  still written); 2 when the invocation itself is wrong (message on stderr, nothing sent);
  143 after SIGTERM (a result with ``error: "cancelled"`` is still written).
- No retries (``max_retries=0``): the coordinator owns retries and failover.
- ``--no-api-key`` (a local server: LM Studio, Ollama) reads no variable and sends a placeholder.
- The API key is read from the environment variable named by ``--api-key-env``; its value is
  never written anywhere, and any echo of it in server text is replaced by ``[REDACTED]``.

The library is three modules: this one (the request, the command line, ``main``),
``openrouter_stream`` (the translation to Claude stream-JSON) and ``openrouter_errors`` (usage,
cost and error normalisation).

Known limit: the openai SDK raises on an in-stream ``{"error": ...}`` chunk without handing
over the rest of that chunk, so usage riding on a mid-stream error chunk is not reported.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO, Any
from urllib.parse import urlsplit

from openai import (
    APIConnectionError,
    APIError,
    APIResponse,
    APIStatusError,
    OpenAI,
    Stream,
    omit,
)
from openai.types.chat import ChatCompletionMessageParam

from adw_modules.workers.openrouter_errors import ApiFailure, failure_from_error_body, transport_failure
from adw_modules.workers.openrouter_stream import (
    Completion,
    Transcript,
    consume_chunk,
    consume_document,
    result_event,
)

DEFAULT_BASE_URL = "https://openrouter.ai/api/v1"
DEFAULT_API_KEY_ENV = "OPENROUTER_API_KEY"
BASE_URL_ENV = "OPENROUTER_BASE_URL"
DEFAULT_TIMEOUT_S = 600.0
# What a keyless local server is sent (the SDK needs some key; LM Studio and Ollama ignore it).
NO_KEY = "no-key"

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_TERMINATED = 143


class InvocationError(Exception):
    """The command line or its input files are unusable; nothing was sent."""


class Terminated(BaseException):
    """SIGTERM arrived.  A BaseException so the SDK's ``except Exception`` cannot swallow it."""


TERMINATING = threading.Event()


@dataclass
class CompletionRequest:
    model: str
    prompt: str
    system: str | None = None
    base_url: str = DEFAULT_BASE_URL
    api_key_env: str = DEFAULT_API_KEY_ENV
    max_tokens: int | None = None
    temperature: float | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S
    usage_accounting: bool | None = None  # None: ask for it only from openrouter.ai
    key_required: bool = True  # False: a local server (LM Studio, Ollama) that wants no key

    def wants_usage_accounting(self) -> bool:
        if self.usage_accounting is not None:
            return self.usage_accounting
        host = urlsplit(self.base_url).hostname or ""
        return host == "openrouter.ai" or host.endswith(".openrouter.ai")


def stream_completion(request: CompletionRequest, api_key: str | None, transcript: Transcript) -> dict[str, Any]:
    """Run one streamed completion and return Claude's ``result`` event (also written to the transcript)."""
    started = time.monotonic()
    state = Completion(requested_model=request.model)
    api_started: float | None = None
    api_ended: float | None = None
    if not api_key:
        failure: ApiFailure | None = ApiFailure(
            f"Not logged in · environment variable {request.api_key_env} is not set or empty",
            error="authentication_failed",
            from_api=False,
        )
    else:
        failure, api_started, api_ended = _call_api(request, api_key, state, transcript)
    if TERMINATING.is_set():
        raise Terminated  # whatever the SDK made of the interrupted request, it was a cancellation
    if failure is not None:
        transcript.api_error(failure)
    event = result_event(
        state,
        failure,
        duration_ms=int((time.monotonic() - started) * 1000),
        duration_api_ms=int(((api_ended or 0.0) - (api_started or 0.0)) * 1000),
    )
    transcript.result(event)
    return event


def _call_api(
    request: CompletionRequest, api_key: str, state: Completion, transcript: Transcript
) -> tuple[ApiFailure | None, float, float]:
    """Send the request and translate its answer into ``state`` and the transcript: the failure
    (None when the model finished), and when the API call started and ended."""
    client = OpenAI(
        api_key=api_key,
        base_url=request.base_url,
        max_retries=0,
        timeout=request.timeout_s,
    )
    api_started = time.monotonic()
    try:
        failure = _send(client, request, state, transcript)
    except APIStatusError as err:
        failure = failure_from_error_body(
            err.body, status=err.status_code, headers=err.response.headers, fallback=err.message
        )
    except APIConnectionError as err:
        failure = transport_failure(err)
    except APIError as err:  # an {"error": ...} event inside the 200 stream
        failure = failure_from_error_body(err.body, fallback=err.message)
    finally:
        api_ended = time.monotonic()
        client.close()
    if failure is None:
        failure = _unfinished(state)
    return failure, api_started, api_ended


def _messages(request: CompletionRequest) -> list[ChatCompletionMessageParam]:
    messages: list[ChatCompletionMessageParam] = []
    if request.system:
        messages.append({"role": "system", "content": request.system})
    messages.append({"role": "user", "content": request.prompt})
    return messages


def _send(client: OpenAI, request: CompletionRequest, state: Completion, transcript: Transcript) -> ApiFailure | None:
    """One streamed request; an event stream is consumed chunk by chunk, any other 200 as one document."""
    with client.chat.completions.with_streaming_response.create(
        model=request.model,
        messages=_messages(request),
        stream=True,
        stream_options={"include_usage": True},
        max_tokens=omit if request.max_tokens is None else request.max_tokens,
        temperature=omit if request.temperature is None else request.temperature,
        extra_body={"usage": {"include": True}} if request.wants_usage_accounting() else None,
    ) as response:
        header_id = response.headers.get("x-generation-id")
        if header_id:
            state.generation_id = header_id
            transcript.start(header_id)
        if "text/event-stream" not in response.headers.get("content-type", ""):
            return _read_document(response, state, transcript)
        stream = response.parse()
        if isinstance(stream, Stream):
            for chunk in stream:
                consume_chunk(chunk, state, transcript)
        return None


def _read_document(response: APIResponse[Any], state: Completion, transcript: Transcript) -> ApiFailure | None:
    try:
        document = json.loads(response.read())
    except ValueError:
        return ApiFailure("the server answered 200 with a body that is not JSON")
    return consume_document(document, state, transcript)


def _unfinished(state: Completion) -> ApiFailure | None:
    """A stream that ended without error can still have ended too early."""
    if state.finish_reason is None:
        return ApiFailure("the stream ended before the model finished (no finish_reason)")
    if state.finish_reason == "error":
        return ApiFailure("the model stream ended with finish_reason 'error'", error="server_error")
    return None


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be a positive integer")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError("must be a positive number")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="openrouter-cli.py",
        description="Stream one chat completion from OpenRouter or an OpenAI-compatible server "
        "and print Claude Code compatible stream-JSON.",
    )
    parser.add_argument("--version", action="version", version="openrouter-cli 1.0 (adw)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("-p", "--prompt", metavar="FILE", help="prompt file; '-' or absent: read stdin")
    source.add_argument("--prompt-text", metavar="TEXT", help="the prompt itself")
    parser.add_argument("--model", required=True, help="model id, e.g. anthropic/claude-3.5-haiku")
    parser.add_argument("--output-file", metavar="FILE", help="also write the output stream here")
    parser.add_argument("--output-format", choices=["stream-json", "json"], default="stream-json")
    parser.add_argument(
        "--base-url",
        default=os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL,
        help=f"OpenAI-compatible base URL (default ${BASE_URL_ENV} or {DEFAULT_BASE_URL})",
    )
    parser.add_argument(
        "--api-key-env",
        default=DEFAULT_API_KEY_ENV,
        metavar="NAME",
        help="name of the environment variable holding the API key",
    )
    parser.add_argument(
        "--no-api-key",
        action="store_true",
        help=f"the server needs no key (LM Studio, Ollama): read none, send {NO_KEY!r}",
    )
    parser.add_argument("--system-file", metavar="FILE", help="system prompt file")
    parser.add_argument("--max-tokens", type=_positive_int)
    parser.add_argument("--temperature", type=float)
    parser.add_argument(
        "--timeout",
        type=_positive_float,
        default=DEFAULT_TIMEOUT_S,
        help="seconds of silence before giving up",
    )
    parser.add_argument(
        "--usage-accounting",
        choices=["auto", "on", "off"],
        default="auto",
        help="send OpenRouter's usage:{include:true} (auto: only to openrouter.ai)",
    )
    parser.add_argument("--verbose", action="store_true", help="accepted for claude compatibility")
    return parser


def _read_text(path: str | None, what: str, stdin: IO[bytes]) -> str:
    try:
        data = stdin.read() if path in (None, "-") else Path(str(path)).read_bytes()
    except OSError as err:
        raise InvocationError(f"cannot read {what} {path}: {err.strerror or err}") from err
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        source = "stdin" if path in (None, "-") else path
        raise InvocationError(f"{what} {source} is not UTF-8 (bad byte at offset {err.start})") from err


def request_from_args(args: argparse.Namespace, stdin: IO[bytes]) -> CompletionRequest:
    """Validate the parsed arguments and read the prompt; raises InvocationError."""
    if args.system_file == "-" and args.prompt in (None, "-") and args.prompt_text is None:
        raise InvocationError("the prompt and the system file cannot both come from stdin")
    if args.prompt_text is not None:
        prompt = args.prompt_text
    else:
        prompt = _read_text(args.prompt, "prompt", stdin)
    if not prompt.strip():
        raise InvocationError("the prompt is empty")
    system = _read_text(args.system_file, "system file", stdin) if args.system_file else None
    parts = urlsplit(args.base_url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise InvocationError(f"--base-url must be an http(s) URL, got {args.base_url!r}")
    if not args.model.strip():
        raise InvocationError("--model is empty")
    accounting = {"auto": None, "on": True, "off": False}[args.usage_accounting]
    return CompletionRequest(
        model=args.model,
        prompt=prompt,
        system=system,
        base_url=args.base_url,
        api_key_env=args.api_key_env,
        max_tokens=args.max_tokens,
        temperature=args.temperature,
        timeout_s=args.timeout,
        usage_accounting=accounting,
        key_required=not args.no_api_key,
    )


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    # The flag survives code that wraps the exception (pydantic turns it into a SchemaError
    # when it lands mid schema build), so the ending is still reported as a cancellation.
    if TERMINATING.is_set():
        return  # already winding down: a second signal must not break the final result line
    TERMINATING.set()
    raise Terminated


def main(
    argv: Sequence[str] | None = None,
    *,
    stdin: IO[bytes] | None = None,
    stdout: IO[bytes] | None = None,
    stderr: IO[str] | None = None,
) -> int:
    """The CLI entry point; returns the exit code (0 success, 1 failed attempt, 2 bad invocation)."""
    stdin = stdin if stdin is not None else sys.stdin.buffer
    stdout = stdout if stdout is not None else sys.stdout.buffer
    stderr = stderr if stderr is not None else sys.stderr
    args = build_parser().parse_args(argv)
    try:
        request = request_from_args(args, stdin)
        output = _open_output(args.output_file)
    except InvocationError as err:
        print(f"openrouter-cli: error: {err}", file=stderr)
        return EXIT_USAGE
    try:
        return _run(request, args.output_format, [stdout] if output is None else [stdout, output])
    finally:
        if output is not None:
            output.close()


def _open_output(path: str | None) -> IO[bytes] | None:
    """The ``--output-file`` sink, truncated; the caller closes it."""
    if not path:
        return None
    try:
        return open(path, "wb")
    except OSError as err:
        raise InvocationError(f"cannot write --output-file {path}: {err.strerror}") from err


def _run(request: CompletionRequest, output_format: str, sinks: list[IO[bytes]]) -> int:
    """Run the completion with SIGTERM turned into a cancellation (a result line is still written)."""
    # --no-api-key reads no variable at all: a local server is never sent a real key.
    api_key = (os.environ.get(request.api_key_env) or None) if request.key_required else None
    transcript = Transcript(
        sinks,
        model=request.model,
        secret=api_key,
        events=output_format == "stream-json",
        api_key_env=request.api_key_env,
    )
    # Only the main thread may install handlers (main() also runs in-process, e.g. in tests).
    in_main_thread = threading.current_thread() is threading.main_thread()
    TERMINATING.clear()
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if in_main_thread else None
    try:
        return _complete(request, api_key or (None if request.key_required else NO_KEY), transcript)
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)


def _complete(request: CompletionRequest, api_key: str | None, transcript: Transcript) -> int:
    """The exit code of one completion; whatever goes wrong, the stream ends with a result line."""
    started = time.monotonic()
    try:
        event = stream_completion(request, api_key, transcript)
        return EXIT_FAILED if event["is_error"] else EXIT_OK
    except Exception as err:
        if not TERMINATING.is_set():
            return _crashed(request, transcript, started, err)
        return _cancelled(request, transcript, started)
    except (Terminated, KeyboardInterrupt):
        return _cancelled(request, transcript, started)


def _crashed(request: CompletionRequest, transcript: Transcript, started: float, err: Exception) -> int:
    # A bug here must still end the stream with a result line.
    failure = ApiFailure(f"{type(err).__name__}: {err}", error="unknown")
    elapsed = int((time.monotonic() - started) * 1000)
    event = result_event(Completion(request.model), failure, duration_ms=elapsed, duration_api_ms=0)
    event["subtype"] = "error_during_execution"
    transcript.result(event)
    return EXIT_FAILED


def _cancelled(request: CompletionRequest, transcript: Transcript, started: float) -> int:
    failure = ApiFailure("Request cancelled (terminated).", error="cancelled", from_api=False)
    elapsed = int((time.monotonic() - started) * 1000)
    transcript.api_error(failure)
    event = result_event(Completion(request.model), failure, duration_ms=elapsed, duration_api_ms=0)
    transcript.result(event)
    return EXIT_TERMINATED
