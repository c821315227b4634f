#!/usr/bin/env python3
"""dry-run-agent: a stand-in for ``claude -p`` that calls no model and costs nothing.

It answers in Claude Code's ``--output-format stream-json --verbose`` shape (line shapes copied
from real CLI transcripts), so the coordinator's Claude parser, failover and accounting can be
demonstrated and tested offline.  Standard library only, so it starts fast; it never reads API
keys.

Failure injection: ``--fail KIND`` or ``ADW_DRY_RUN_FAIL=KIND``, KIND one of
rate_limit, overloaded, auth, quota, max_turns, budget, hang, stall, crash, slow, fork
(``stall`` answers one assistant message with its usage, then goes silent like ``hang``).
``KIND@N`` fails only the first N calls, counted in the file named by ``ADW_DRY_RUN_STATE``.

Exit codes follow the real CLI: 0 success, 1 a result with is_error true or a usage error,
143 on SIGTERM; ``crash`` exits 2 with a stack trace on stderr and no result.
"""

from __future__ import annotations

import argparse
import datetime as dt
import fcntl
import hashlib
import json
import math
import os
import signal
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any, NoReturn

VERSION = "2.1.200"
KINDS = ("rate_limit", "overloaded", "auth", "quota", "max_turns", "budget", "hang", "stall", "crash", "slow", "fork")
TOOLS = ["Task", "Bash", "Glob", "Grep", "Read", "Edit", "Write", "WebFetch", "TodoWrite", "WebSearch"]
RATE_LIMIT_TEXT = (
    "API Error: Request rejected (429) · This request would exceed your account's rate limit. Please try again later."
)
OVERLOADED_TEXT = "API Error: 529 Overloaded. This is a server-side issue, usually temporary."
AUTH_TEXT = "Invalid API key · Please run /login"
API_ERROR_TYPES = {401: "authentication_error", 429: "rate_limit_error", 529: "overloaded_error"}
NO_INPUT = "Input must be provided either through stdin or as a prompt argument when using --print"


class UsageError(Exception):
    """Bad flags or input: reported like the real CLI (``error: ...`` on stderr, exit 1)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="dry-run-agent", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # claude spells it `-p/--print` with the prompt positional; `-p PROMPT` works for both.
    p.add_argument("--version", action="version", version="dry-run-agent 1.0 (adw; calls no model)")
    p.add_argument("-p", "--print", dest="print_prompt", nargs="?", const="", default=None, metavar="PROMPT")
    p.add_argument("prompt", nargs="?", default=None)
    p.add_argument("--prompt-file")
    p.add_argument("--model", default="dry-run-model")
    p.add_argument("--output-format", choices=("text", "json", "stream-json"), default="text")
    p.add_argument("--verbose", action="store_true")
    p.add_argument("--output-file")
    p.add_argument("--max-turns", type=int)
    p.add_argument("--max-budget-usd", type=float)
    p.add_argument("--report-cost", type=float, metavar="USD", help="report this total_cost_usd")
    p.add_argument("--fail", help="inject a failure: " + ", ".join(KINDS) + " (or KIND@N)")
    p.add_argument("--retry-after", type=float, help="seconds (rate_limit, overloaded, quota)")
    p.add_argument("--retry-delay-ms", type=int, default=200, help="real pause between api_retry lines")
    p.add_argument("--retries", type=int, default=3, help="api_retry lines before giving up")
    p.add_argument("--slow-interval", type=float, default=0.5)
    p.add_argument("--slow-lines", type=int, default=5)
    p.add_argument("--pid-file", help="fork: where the grandchild writes its pid")
    # Accepted and ignored, so a provider template written for claude runs unchanged.
    p.add_argument("--dangerously-skip-permissions", action="store_true")
    p.add_argument("--include-partial-messages", action="store_true")
    p.add_argument("--no-session-persistence", action="store_true")
    for flag in (
        "--permission-mode",
        "--allowedTools",
        "--disallowedTools",
        "--append-system-prompt",
        "--system-prompt",
        "--session-id",
        "--fallback-model",
        "--add-dir",
        "--input-format",
    ):
        p.add_argument(flag)
    return p


def _dumps(obj: object) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))  # compact, like the real CLI


def _timestamp() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _uuid() -> str:
    return str(uuid.uuid4())


def _tokens(text: str) -> int:
    return max(1, math.ceil(len(text) / 4))


def _cache_creation() -> dict[str, int]:
    return {"ephemeral_1h_input_tokens": 0, "ephemeral_5m_input_tokens": 0}


def _usage(input_tokens: int, output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": output_tokens,
        "server_tool_use": {"web_search_requests": 0, "web_fetch_requests": 0},
        "service_tier": "standard",
        "cache_creation": _cache_creation(),
    }


class Session:
    """One invocation: emits messages in the chosen output format."""

    def __init__(self, args: argparse.Namespace, prompt: str) -> None:
        self.args = args
        self.prompt = prompt
        self.model: str = args.model
        self.session_id = _uuid()
        self.started = time.monotonic()
        self.messages: list[dict[str, Any]] = []
        self.copy = open(args.output_file, "w", encoding="utf-8") if args.output_file else None

    def emit(self, message: dict[str, Any]) -> None:
        self.messages.append(message)
        if self.args.output_format != "stream-json":
            return
        line = _dumps(message) + "\n"
        sys.stdout.write(line)
        sys.stdout.flush()
        if self.copy is not None:
            self.copy.write(line)
            self.copy.flush()

    def finish(self, result: dict[str, Any]) -> int:
        """Emit the result (and json/text forms), return the CLI's exit code."""
        self.emit(result)
        fmt = self.args.output_format
        if fmt == "json":
            out = _dumps(self.messages if self.args.verbose else result) + "\n"
        elif fmt == "text":
            text = result.get("result")
            out = (text if text is not None else "; ".join(result.get("errors", []))) + "\n"
        else:
            out = ""
        if out:
            sys.stdout.write(out)
            sys.stdout.flush()
            if self.copy is not None:
                self.copy.write(out)
        if self.copy is not None:
            self.copy.close()
        return 1 if result["is_error"] else 0

    def elapsed_ms(self) -> int:
        return int((time.monotonic() - self.started) * 1000)

    # -- message shapes, copied from real Claude Code transcripts

    def init(self) -> None:
        permission = "bypassPermissions" if self.args.dangerously_skip_permissions else None
        self.emit(
            {
                "type": "system",
                "subtype": "init",
                "cwd": os.getcwd(),
                "session_id": self.session_id,
                "tools": TOOLS,
                "mcp_servers": [],
                "model": self.model,
                "permissionMode": permission or self.args.permission_mode or "default",
                "slash_commands": ["compact", "context", "cost", "init", "review"],
                "apiKeySource": "none",
                "claude_code_version": VERSION,
                "output_style": "default",
                "agents": ["general-purpose"],
                "skills": [],
                "plugins": [],
                "uuid": _uuid(),
                "fast_mode_state": "off",
            }
        )

    def rate_limit_event(self, status: str, resets_at: int, kind: str = "five_hour") -> None:
        info: dict[str, Any] = {"status": status, "resetsAt": resets_at, "rateLimitType": kind}
        if status == "allowed":
            info.update(overageStatus="rejected", overageDisabledReason="org_level_disabled")
        info["isUsingOverage"] = False
        self.emit(
            {
                "type": "rate_limit_event",
                "rate_limit_info": info,
                "uuid": _uuid(),
                "session_id": self.session_id,
            }
        )

    def api_retry(self, attempt: int, max_retries: int, delay_ms: float, status: int, error: str) -> None:
        self.emit(
            {
                "type": "system",
                "subtype": "api_retry",
                "attempt": attempt,
                "max_retries": max_retries,
                "retry_delay_ms": delay_ms,
                "error_status": status,
                "error": error,
                "session_id": self.session_id,
                "uuid": _uuid(),
            }
        )

    def assistant(self, text: str, usage: dict[str, Any], model: str | None = None, **extra: Any) -> None:
        message = {
            "model": model or self.model,
            "id": "msg_dryrun" + uuid.uuid4().hex[:20],
            "type": "message",
            "role": "assistant",
            "content": [{"type": "text", "text": text}],
            "stop_reason": None if model is None else "stop_sequence",
            "stop_sequence": None if model is None else "",
            "usage": usage,
            "context_management": None,
        }
        self.emit(
            {
                "type": "assistant",
                "message": message,
                "parent_tool_use_id": None,
                "session_id": self.session_id,
                "uuid": _uuid(),
                "timestamp": _timestamp(),
                "request_id": "req_dryrun" + uuid.uuid4().hex[:16],
                **extra,
            }
        )

    def synthetic_error(self, text: str, error: str, status: int) -> None:
        """The assistant line the real CLI invents for an API error (model "<synthetic>")."""
        self.assistant(
            text,
            _usage(0, 0) | {"service_tier": None},
            model="<synthetic>",
            error=error,
            is_api_error_message=True,
            api_error_status=status,
            api_error_type=API_ERROR_TYPES[status],
        )

    def result(
        self,
        subtype: str,
        is_error: bool,
        *,
        text: str | None,
        terminal_reason: str,
        stop_reason: str,
        num_turns: int = 1,
        input_tokens: int = 0,
        output_tokens: int = 0,
        api_error_status: int | None = None,
        errors: list[str] | None = None,
    ) -> dict[str, Any]:
        cost: float | None = self.args.report_cost
        res: dict[str, Any] = {"type": "result", "subtype": subtype, "is_error": is_error}
        res["api_error_status"] = api_error_status
        if api_error_status is not None:
            res["api_error_type"] = API_ERROR_TYPES[api_error_status]
        res["duration_ms"] = self.elapsed_ms()
        res["duration_api_ms"] = 0 if api_error_status else self.elapsed_ms()
        res["num_turns"] = num_turns
        if not subtype.startswith("error_"):  # error_* subtypes carry no "result" key
            res["result"] = text
        res["stop_reason"] = stop_reason
        res["session_id"] = self.session_id
        if cost is not None:
            res["total_cost_usd"] = cost
        res["usage"] = _usage(input_tokens, output_tokens) | {
            "inference_geo": "not_available",
            "iterations": [],
        }
        model_usage: dict[str, Any] = {}
        if input_tokens or output_tokens:
            per_model: dict[str, Any] = {
                "inputTokens": input_tokens,
                "outputTokens": output_tokens,
                "cacheReadInputTokens": 0,
                "cacheCreationInputTokens": 0,
                "webSearchRequests": 0,
            }
            if cost is not None:
                per_model["costUSD"] = cost
            per_model.update(contextWindow=200000, maxOutputTokens=32000)
            model_usage[self.model] = per_model
        res["modelUsage"] = model_usage
        res["permission_denials"] = []
        res["terminal_reason"] = terminal_reason
        res["fast_mode_state"] = "off"
        res["uuid"] = _uuid()
        if errors is not None:
            res["errors"] = errors
        return res


def answer_for(prompt: str) -> str:
    digest = hashlib.sha256(prompt.encode("utf-8", "replace")).hexdigest()[:12]
    first = next((line.strip() for line in prompt.splitlines() if line.strip()), "")
    if len(first) > 80:
        first = first[:77] + "..."
    return (
        f"Dry run: no model was called and nothing was changed. Received a prompt of {len(prompt)} "
        f"characters (sha256 {digest}) starting with: {first}"
    )


def _api_failure(s: Session, status: int, error: str, text: str, retry_after: float | None, pause_s: float) -> int:
    for attempt in range(1, s.args.retries + 1):
        # The real CLI honours Retry-After in its backoff and reports the delay it will wait.
        delay_ms = retry_after * 1000 if retry_after is not None else float(min(500 * 2 ** (attempt - 1), 32000))
        s.api_retry(attempt, s.args.retries, delay_ms, status, error)
        time.sleep(pause_s)
    return _api_error(s, text, error, status)


def _api_error(s: Session, text: str, error: str, status: int) -> int:
    """Claude's ending after an API error: the synthetic assistant line, then an error result."""
    s.synthetic_error(text, error, status)
    return s.finish(
        s.result(
            "success",
            True,
            text=text,
            terminal_reason="api_error",
            stop_reason="stop_sequence",
            api_error_status=status,
        )
    )


def _reset_text(resets_at: int) -> str:
    when = dt.datetime.fromtimestamp(resets_at, tz=dt.UTC)
    hour = when.hour % 12 or 12
    minute = "" if when.minute == 0 else f":{when.minute:02d}"
    return f"{hour}{minute}{'am' if when.hour < 12 else 'pm'} (UTC)"


def _success(s: Session) -> int:
    answer = answer_for(s.prompt)
    in_tok, out_tok = _tokens(s.prompt), _tokens(answer)
    s.rate_limit_event("allowed", int(time.time()) + 5 * 3600)
    s.assistant(answer, _usage(in_tok, out_tok))
    return s.finish(
        s.result(
            "success",
            False,
            text=answer,
            terminal_reason="completed",
            stop_reason="end_turn",
            input_tokens=in_tok,
            output_tokens=out_tok,
        )
    )


def _hang() -> NoReturn:
    while True:
        signal.pause()


def run_mode(s: Session, kind: str | None) -> int:
    args = s.args
    retry_after = args.retry_after
    if retry_after is None and os.environ.get("ADW_DRY_RUN_RETRY_AFTER"):
        retry_after = float(os.environ["ADW_DRY_RUN_RETRY_AFTER"])
    pause_s = args.retry_delay_ms / 1000
    if kind == "fork":
        _fork_sleeper(args.pid_file)  # before init: whoever sees a line can rely on the pid file
    s.init()
    if kind is None:
        return _success(s)
    if kind == "rate_limit":
        return _api_failure(s, 429, "rate_limit", RATE_LIMIT_TEXT, retry_after, pause_s)
    if kind == "overloaded":
        return _api_failure(s, 529, "overloaded", OVERLOADED_TEXT, retry_after, pause_s)
    if kind == "auth":
        return _api_error(s, AUTH_TEXT, "authentication_failed", 401)
    if kind == "quota":
        return _quota(s, retry_after)
    if kind in ("max_turns", "budget"):
        return _stopped_early(s, kind)
    if kind == "hang":
        _hang()
    if kind == "stall":
        s.assistant("Working on it.", _usage(_tokens(s.prompt), 4))
        _hang()
    if kind == "crash":
        return _crash()
    if kind == "slow":
        return _slow(s)
    if kind == "fork":
        _hang()
    raise AssertionError(kind)


def _quota(s: Session, retry_after: float | None) -> int:
    """A subscription's usage limit: a rejected rate_limit_event, then the limit message."""
    resets_at = int(time.time() + (retry_after if retry_after is not None else 3600))
    s.rate_limit_event("rejected", resets_at)
    return _api_error(s, f"You've hit your limit · resets {_reset_text(resets_at)}", "rate_limit", 429)


def _stopped_early(s: Session, kind: str) -> int:
    """One turn of work, then the max-turns or max-budget error result."""
    args = s.args
    in_tok = _tokens(s.prompt)
    s.assistant("Working on it.", _usage(in_tok, 4))
    if kind == "max_turns":
        limit = args.max_turns if args.max_turns is not None else 1
        subtype, reason, turns = "error_max_turns", "max_turns", limit + 1
        errors = [f"Reached maximum number of turns ({limit})"]
    else:
        budget = args.max_budget_usd if args.max_budget_usd is not None else 0.0
        subtype, reason, turns = "error_max_budget_usd", "budget_exhausted", 1
        errors = [f"Reached maximum budget (${budget:.2f})"]
    return s.finish(
        s.result(
            subtype,
            True,
            text=None,
            terminal_reason=reason,
            stop_reason="tool_use",
            num_turns=turns,
            input_tokens=in_tok,
            output_tokens=4,
            errors=errors,
        )
    )


def _crash() -> int:
    """Node's uncaught-exception trace on stderr and exit 2, as the real CLI dies."""
    sys.stderr.write(
        "file:///usr/lib/node_modules/@anthropic-ai/claude-code/cli.js:4821\n"
        "TypeError: Cannot read properties of undefined (reading 'content')\n"
        "    at processResponse (file:///usr/lib/node_modules/@anthropic-ai/claude-code/cli.js:4821:17)\n"
        "    at async runTurn (file:///usr/lib/node_modules/@anthropic-ai/claude-code/cli.js:5102:9)\n"
        "    at async main (file:///usr/lib/node_modules/@anthropic-ai/claude-code/cli.js:6010:5)\n"
    )
    sys.stderr.flush()
    return 2


def _slow(s: Session) -> int:
    """Text deltas one by one, ``--slow-interval`` apart, then success."""
    args = s.args
    for i in range(args.slow_lines):
        time.sleep(args.slow_interval)
        s.emit(
            {
                "type": "stream_event",
                "event": {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": f"[{i + 1}/{args.slow_lines}] "},
                },
                "session_id": s.session_id,
                "parent_tool_use_id": None,
                "uuid": _uuid(),
            }
        )
    return _success(s)


def _fork_sleeper(pid_file: str | None) -> None:
    """Fork a grandchild that sleeps forever; return once it has written ``pid_file``."""
    ready_r, ready_w = os.pipe()
    if os.fork() == 0:
        os.close(ready_r)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if pid_file:
            tmp = f"{pid_file}.{os.getpid()}.tmp"
            with open(tmp, "w") as fh:
                fh.write(f"{os.getpid()}\n")
            os.replace(tmp, pid_file)  # readers never see a half-written pid
        os.close(ready_w)
        _hang()
    os.close(ready_w)
    os.read(ready_r, 1)  # EOF once the grandchild closed its end, i.e. after the pid file
    os.close(ready_r)


def resolve_fail(spec: str | None) -> str | None:
    """``KIND`` or ``KIND@N`` -> the kind to inject on this call, or None for success."""
    if not spec:
        return None
    kind, _, count = spec.partition("@")
    if kind not in KINDS:
        raise UsageError(f"unknown failure kind {kind!r} (expected one of {', '.join(KINDS)})")
    if not count:
        return kind
    try:
        limit = int(count)
    except ValueError:
        raise UsageError(f"bad failure count in {spec!r}: expected KIND@N with N an integer") from None
    state = os.environ.get("ADW_DRY_RUN_STATE")
    if not state:
        raise UsageError(f"{spec!r} needs ADW_DRY_RUN_STATE naming a counter file")
    fd = os.open(state, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # parallel calls must not both take the last failure
        raw = os.read(fd, 64).decode().strip()
        calls = int(raw) if raw.isdigit() else 0
        os.lseek(fd, 0, os.SEEK_SET)
        os.ftruncate(fd, 0)
        os.write(fd, f"{calls + 1}\n".encode())
    finally:
        os.close(fd)
    return kind if calls < limit else None


def read_prompt(args: argparse.Namespace, stdin_reader: Callable[[], bytes]) -> str:
    given = [x for x in (args.print_prompt or None, args.prompt) if x is not None]
    if args.prompt_file is not None:
        try:
            with open(args.prompt_file, encoding="utf-8", errors="replace") as fh:
                given.append(fh.read())
        except OSError as exc:
            raise UsageError(f"cannot read --prompt-file {args.prompt_file}: {exc.strerror}") from None
    if len(given) > 1:
        raise UsageError("give the prompt once: -p PROMPT, a positional PROMPT, --prompt-file or stdin")
    if given:
        return given[0]
    if sys.stdin is None or sys.stdin.isatty():
        raise UsageError(NO_INPUT)
    prompt = stdin_reader().decode("utf-8", "replace")
    if not prompt.strip():
        raise UsageError(NO_INPUT)
    return prompt


def main(argv: list[str] | None = None) -> int:
    # Like the real CLI in print mode: SIGTERM ends the process with code 143.
    signal.signal(signal.SIGTERM, lambda *_: os._exit(143))
    try:
        args = build_parser().parse_args(argv)
        if args.output_format == "stream-json" and not args.verbose:
            raise UsageError("When using --print, --output-format=stream-json requires --verbose")
        kind = resolve_fail(args.fail or os.environ.get("ADW_DRY_RUN_FAIL"))
        prompt = read_prompt(args, sys.stdin.buffer.read)
        session = Session(args, prompt)
    except UsageError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 1
    except (OSError, ValueError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 1
    try:
        return run_mode(session, kind)
    except BrokenPipeError:
        # The reader went away (the supervisor aborted us): nothing left to say to anyone.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
