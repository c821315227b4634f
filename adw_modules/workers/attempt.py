"""One attempt of one task on one provider/model: build the command, run it, read its stream.

This is where the pieces meet: the provider's template (providers), the supervised
process (runner), the CLI's stream (streams), the single outcome (classify) and the
cost (pricing).  The child gets a small allow-list of this process's environment,
the provider's own ``env`` and, only if this provider needs one, its API key.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adw_modules.config.schema import Config, Target
from adw_modules.ops.secrets import SecretError
from adw_modules.outcomes import ErrorKind, Outcome, StreamEvent, StreamSummary, Usage
from adw_modules.routing.pricing import Price, estimate_cost, library_price
from adw_modules.routing.providers import ProviderRegistry, TemplateError
from adw_modules.routing.router import resolve_params
from adw_modules.workers import classify, runner, streams

# What a child may inherit from the coordinator's own environment; everything else
# (other providers' keys, GITHUB_TOKEN, cloud credentials) stays behind.
ENV_ALLOWLIST = (
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "LANG",
    "LANGUAGE",
    "LC_ALL",
    "LC_CTYPE",
    "LC_MESSAGES",
    "TZ",
    "TMPDIR",
    "TERM",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "NODE_EXTRA_CA_CERTS",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
)

# Abort at once on these: the CLI would otherwise sit through minutes of its own retries
# for something only another provider (or an operator) can fix.
ABORT_AT_ONCE = frozenset({ErrorKind.RATE_LIMITED, ErrorKind.AUTH_FAILED, ErrorKind.QUOTA_EXHAUSTED})
OVERLOAD_RETRIES_BEFORE_ABORT = 3

DEFAULT_TIMEOUT_S = 3600.0
DEFAULT_KILL_GRACE_S = 5.0


@dataclass
class AttemptRequest:
    task_id: str
    prompt: str
    target: Target
    workdir: Path
    attempt_dir: Path  # per-attempt files: prompt.md, stdout.jsonl, output.jsonl
    rule_params: Mapping[str, Any] = field(default_factory=dict)
    inject: Path | None = None
    timeout_s: float | None = None  # overrides the provider's
    idle_timeout_s: float | None = None


@dataclass
class AttemptResult:
    target: Target
    outcome: Outcome
    summary: StreamSummary
    run: runner.RunResult | None
    cost_usd: float | None
    cost_source: str | None
    log_path: Path | None
    aborted_on: StreamEvent | None = None
    model_usage: dict[str, dict[str, Any]] = field(default_factory=dict)  # see model_usage_of

    @property
    def ok(self) -> bool:
        return self.outcome.ok

    @property
    def duration_s(self) -> float | None:
        """The stream's own duration, else the process's."""
        s = self.summary
        return s.duration_s if s.duration_s is not None else (self.run.duration_s if self.run else None)

    def to_dict(self) -> dict[str, Any]:
        """The stable JSON keys of ``adw providers test --json`` and ``adw parse --json``."""
        s = self.summary
        return {
            "outcome": self.outcome.name,
            "error_kind": None if self.outcome.error_kind is None else str(self.outcome.error_kind),
            "error_message": self.outcome.message,
            "exit_code": None if self.run is None else self.run.exit_code,
            "input_tokens": s.usage.input_tokens,
            "output_tokens": s.usage.output_tokens,
            "cache_read_tokens": s.usage.cache_read_tokens,
            "cache_write_tokens": s.usage.cache_write_tokens,
            "cost_usd": self.cost_usd,
            "cost_source": self.cost_source,
            "model": s.main_model or self.target.model,
            "model_usage": self.model_usage,
            "session_id": s.session_id,
            "num_turns": s.num_turns,
            "duration_s": self.duration_s,
            "result_text": s.result_text,
            "retry_after_s": self.outcome.retry_after_s,
            "resets_at": self.outcome.resets_at,
            "provider": self.target.provider,
            "skipped_lines": s.skipped_lines,
            "stderr_tail": None if self.run is None else (self.run.stderr_tail or None),
            "log_path": None if self.log_path is None else str(self.log_path),
        }


def default_abort_policy() -> Callable[[StreamEvent], bool]:
    """Abort on the first rate-limit / auth / quota signal, or after a few overload retries."""
    overloads = 0

    def should_abort(event: StreamEvent) -> bool:
        nonlocal overloads
        if event.signal in ABORT_AT_ONCE:
            return True
        if event.signal is ErrorKind.OVERLOADED:
            overloads += 1
            return overloads >= OVERLOAD_RETRIES_BEFORE_ABORT
        return False

    return should_abort


PriceLookup = Callable[[str, str], Price | None]  # (provider, model) -> price


def model_usage_of(summary: StreamSummary, target: Target, price_for: PriceLookup) -> dict[str, dict[str, Any]]:
    """The attempt's tokens and cost per model: the CLI's breakdown, each model's cost as the CLI
    reported it, else estimated at that model's own price (cache reads and writes at theirs).
    A CLI without a breakdown gives one entry, for the main model, with the attempt's totals."""
    parts = summary.per_model or {summary.main_model or target.model: summary.usage}
    if all(usage.total_tokens == 0 for usage in parts.values()):
        return {}  # nothing was used: no breakdown to keep
    out: dict[str, dict[str, Any]] = {}
    for model, usage in parts.items():
        cost = usage.cost_usd
        if cost is None or (len(parts) == 1 and summary.cost_usd is None):
            cost = estimate_cost(usage, price_for(target.provider, model))
        out[model] = {
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "cache_read_tokens": usage.cache_read_tokens,
            "cache_write_tokens": usage.cache_write_tokens,
            "cost_usd": cost,
        }
    return out


def cost_of(summary: StreamSummary, target: Target, price_for: PriceLookup) -> tuple[float | None, str | None]:
    """The CLI's reported cost if it gave one, else an estimate for the model(s) that actually ran,
    its source naming where the prices came from (``estimated from genai-prices``; ``config``,
    ``openrouter-catalog``: a ``Price.source``)."""
    if summary.cost_usd is not None:
        return summary.cost_usd, summary.cost_source or "reported"
    if summary.per_model:
        parts = list(summary.per_model.items())
    elif summary.usage.total_tokens == 0:
        return None, None
    else:
        parts = [(summary.main_model or target.model, summary.usage)]
    total, sources = 0.0, set()
    for model, usage in parts:
        price = price_for(target.provider, model)
        cost = estimate_cost(usage, price)
        if cost is None or price is None:
            return None, None
        total += cost
        sources.add(price.source)
    return round(total, 6), estimated_from(sources)


def estimated_from(price_sources: set[str]) -> str:
    """An estimate's ``cost_source``: ``estimated from A, B`` (at most 64 characters, the column's)."""
    return f"estimated from {', '.join(sorted(price_sources))}"[:64]


class AttemptRunner:
    def __init__(
        self,
        config: Config,
        registry: ProviderRegistry,
        environ: Mapping[str, str] | None = None,
        kill_grace_s: float = DEFAULT_KILL_GRACE_S,
        redact: Callable[[str], str] | None = None,
    ) -> None:
        self.config = config
        self.registry = registry
        self.environ = dict(os.environ if environ is None else environ)
        self.kill_grace_s = kill_grace_s
        # Transcripts are kept on disk: every secret the coordinator knows is masked in them.
        self.redact = redact or (lambda text: text)

    def child_env(self, provider: str) -> dict[str, str]:
        pc = self.config.providers[provider]
        env = {k: self.environ[k] for k in (*ENV_ALLOWLIST, *pc.env_passthrough) if k in self.environ}
        env.update(pc.env)
        key = self.registry.api_key(provider)  # SecretError propagates: the caller fails over
        if key is not None and pc.key_env_for_child:
            env[pc.key_env_for_child] = key
        return env

    def prompt_text(self, request: AttemptRequest) -> str:
        """The prompt after the preambles: the CLI's own (its provider's ``inject``), then the rule's."""
        cli_inject = self.config.providers[request.target.provider].inject
        parts = [p.read_text(encoding="utf-8").rstrip() for p in (cli_inject, request.inject) if p is not None]
        return "\n\n".join([*parts, request.prompt])

    def prepare(self, request: AttemptRequest) -> tuple[runner.RunSpec, str]:
        """The RunSpec for this attempt and the stream format to parse.  Raises TemplateError/SecretError."""
        pc = self.config.providers[request.target.provider]
        provider = self.registry.get_provider(pc.name)
        request.attempt_dir.mkdir(parents=True, exist_ok=True)
        prompt = self.prompt_text(request)
        prompt_file = request.attempt_dir / "prompt.md"
        prompt_file.write_text(prompt, encoding="utf-8")
        env = self.child_env(pc.name)
        values: dict[str, Any] = {
            **resolve_params(self.config, pc.name, request.rule_params),
            "prompt_file": str(prompt_file),
            "prompt": prompt,
            "model": request.target.model,
            "output_file": str(request.attempt_dir / "output.jsonl"),
            "workdir": str(request.workdir),
            "task_id": request.task_id,
        }
        argv = provider.build_command(values, path_env=env.get("PATH"))
        spec = runner.RunSpec(
            argv=argv,
            cwd=request.workdir,
            env=env,
            stdin_data=prompt.encode() if pc.prompt_stdin else None,
            timeout_s=request.timeout_s or pc.timeout or DEFAULT_TIMEOUT_S,
            idle_timeout_s=request.idle_timeout_s or pc.idle_timeout,
            kill_grace_s=self.kill_grace_s,
            log_path=None,  # RunningAttempt writes the transcript line by line, redacted
        )
        return spec, pc.output_format

    def start(
        self,
        request: AttemptRequest,
        should_abort: Callable[[StreamEvent], bool] | None = None,
        on_event: Callable[[StreamEvent], None] | None = None,
    ) -> RunningAttempt:
        return RunningAttempt(self, request, should_abort or default_abort_policy(), on_event)

    def run(
        self,
        request: AttemptRequest,
        should_abort: Callable[[StreamEvent], bool] | None = None,
        on_event: Callable[[StreamEvent], None] | None = None,
    ) -> AttemptResult:
        return self.start(request, should_abort, on_event).wait()


class RunningAttempt:
    """A started attempt: ``identity`` for orphan recovery, ``cancel()`` from any thread, ``wait()``."""

    def __init__(
        self,
        owner: AttemptRunner,
        request: AttemptRequest,
        should_abort: Callable[[StreamEvent], bool],
        on_event: Callable[[StreamEvent], None] | None,
    ) -> None:
        self.owner = owner
        self.request = request
        self.aborted_on: StreamEvent | None = None
        self.worker: runner.Worker | None = None
        # The reader thread feeds the parser while a heartbeat may ask for the tokens so far.
        self._parsing = threading.Lock()
        self._early_failure: AttemptResult | None = None
        try:
            spec, fmt = owner.prepare(request)
        except (TemplateError, SecretError, OSError) as exc:
            self.parser = streams.parser_for(owner.config.providers[request.target.provider].output_format)
            outcome = Outcome(False, ErrorKind.LAUNCH_FAILED, str(exc))
            self._early_failure = AttemptResult(request.target, outcome, self.parser.finish(), None, None, None, None)
            return
        self.parser = streams.parser_for(fmt)
        self.log_path: Path | None = request.attempt_dir / "stdout.jsonl"
        transcript = self.log_path.open("a", encoding="utf-8")
        os.chmod(self.log_path, 0o600)
        self._transcript = transcript
        redact = owner.redact

        def on_line(line: str) -> str | None:
            transcript.write(redact(line) + "\n")
            transcript.flush()
            with self._parsing:
                event = self.parser.feed(line)
            if event is None:
                return None
            if on_event is not None:
                on_event(event)
            if event.signal is not None and self.aborted_on is None and should_abort(event):
                self.aborted_on = event
                return f"early abort: {event.signal}"
            return None

        self.worker = runner.start(spec, on_line)

    @property
    def identity(self) -> runner.ProcessIdentity | None:
        return None if self.worker is None else self.worker.identity

    def usage_so_far(self) -> Usage:
        """Tokens the CLI has reported so far (safe from any thread)."""
        with self._parsing:
            return self.parser.usage_so_far()

    def cancel(self, reason: str = "cancelled") -> None:
        if self.worker is not None:
            self.worker.cancel(reason)

    def wait(self) -> AttemptResult:
        if self._early_failure is not None:
            return self._early_failure
        assert self.worker is not None
        started = time.monotonic()
        result = self.worker.wait()
        self._transcript.close()
        summary = self.parser.finish()
        summary.skipped_lines += result.skipped_lines  # the runner dropped these for their length
        outcome = classify.classify(
            summary,
            result.exit_code,
            ended_by=result.ended_by,
            abort_signal=self.aborted_on if result.ended_by == "aborted" else None,
            stderr_tail=result.stderr_tail,
            launch_error=result.launch_error,
        )
        cost, source = cost_of(summary, self.request.target, self.owner.registry.price_for)
        if summary.duration_s is None:
            summary.duration_s = result.duration_s or (time.monotonic() - started)
        per_model = model_usage_of(summary, self.request.target, self.owner.registry.price_for)
        return AttemptResult(
            self.request.target, outcome, summary, result, cost, source, self.log_path, self.aborted_on, per_model
        )


def summarize_file(path: Path, fmt: str, price_for: PriceLookup | None = None) -> AttemptResult:
    """``adw parse``: a saved transcript, judged as if its process had exited 0."""
    summary = streams.parse_file(path, fmt)
    outcome = classify.classify(summary, 0 if summary.terminal else None)
    target = Target("transcript", summary.main_model or "unknown")
    lookup = price_for or (lambda _provider, model: library_price(model))
    cost, source = cost_of(summary, target, lookup)
    per_model = model_usage_of(summary, target, lookup)
    return AttemptResult(target, outcome, summary, None, cost, source, path, model_usage=per_model)
