"""Parsers for the machine-readable output of agent CLIs.

``parser_for(format)`` gives a fresh incremental parser (a built-in format, else one a
plugin registers under the ``adw.parsers`` entry-point group, read only when a format is
not built in; see ``ops.plugins``); ``parse_lines`` and
``parse_file`` run one over a whole transcript.  All of them keep constant
memory whatever the transcript size (``claude-json`` excepted: it is a single
document and is buffered until complete).

Owns: ``base`` (the incremental line parser every format shares), one parser per CLI
(``claude``: stream-json and json, ``codex``, ``gemini``, ``opencode``), ``signals`` (the
failure vocabulary the parsers and ``workers.classify`` share), the format registry
(built-ins plus ``adw.parsers`` plugins).

May import: ``outcomes``, ``ops.plugins`` (the entry-point loader, which imports nothing of
adw).  Nothing else: a parser sees only the lines it is fed.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from adw_modules.ops.plugins import PARSERS, GroupLoad, load_group
from adw_modules.outcomes import StreamSummary
from adw_modules.workers.streams.base import StreamParser
from adw_modules.workers.streams.claude import ClaudeJsonParser, ClaudeStreamParser
from adw_modules.workers.streams.codex import CodexParser
from adw_modules.workers.streams.gemini import GeminiParser
from adw_modules.workers.streams.opencode import OpenCodeParser

__all__ = [
    "FORMATS",
    "MAX_LINE_BYTES",
    "StreamParser",
    "known_formats",
    "parse_file",
    "parse_lines",
    "parser_for",
    "plugin_formats",
]

FORMATS: dict[str, type[StreamParser]] = {
    cls.format: cls for cls in (ClaudeStreamParser, ClaudeJsonParser, CodexParser, GeminiParser, OpenCodeParser)
}

# A line longer than this is dropped (counted as skipped) rather than buffered:
# no event any CLI writes needs it, and it bounds parse_file's memory.
MAX_LINE_BYTES = 64 * 1024 * 1024
_CHUNK = 1024 * 1024


def plugin_formats() -> GroupLoad:
    """The ``adw.parsers`` plugins, loaded once: each a ``StreamParser`` subclass by format name."""
    return load_group(PARSERS, _check_parser)


def _check_parser(name: str, obj: Any) -> str | None:
    if name in FORMATS:
        return f'"{name}" is a built-in format: a plugin cannot replace it'
    if not (isinstance(obj, type) and issubclass(obj, StreamParser)):
        return f"{type(obj).__name__} {obj!r:.60} is not a StreamParser subclass"
    if getattr(obj, "format", None) != name:
        return f'its class says format = {getattr(obj, "format", None)!r}, the entry point "{name}"'
    return None


def known_formats() -> list[str]:
    """Every format a provider may name: the built-ins, then the plugins' (this loads them)."""
    return [*FORMATS, *plugin_formats().loaded]


def parser_class(format: str) -> type[StreamParser] | None:
    """The parser class for ``format``; plugins are read only for a format that is not built in."""
    if not isinstance(format, str):
        return None
    if format in FORMATS:
        return FORMATS[format]
    found = plugin_formats().loaded.get(format)
    return None if found is None else found[1]


def parser_for(format: str) -> StreamParser:
    """A new parser for ``format``; ValueError naming the known formats otherwise."""
    cls = parser_class(format)
    if cls is None:
        known = ", ".join(sorted(known_formats()))
        failure = plugin_formats().failure_for(format) if isinstance(format, str) else None
        why = f" (its plugin failed: {failure.error})" if failure is not None else ""
        raise ValueError(f"unknown stream format {format!r}{why}; known formats: {known}")
    return cls()


def parse_lines(format: str, lines: Iterable[str | bytes]) -> StreamSummary:
    """Feed every line to a new parser for ``format`` and return the finished summary."""
    parser = parser_for(format)
    for line in lines:
        parser.feed(line)
    return parser.finish()


def parse_file(path: str | Path, format: str, *, max_line_bytes: int = MAX_LINE_BYTES) -> StreamSummary:
    """Parse a transcript file, reading binary chunks and framing lines on ``\\n`` itself.

    Memory stays bounded by ``max_line_bytes`` plus one chunk: an overlong line is
    discarded as it streams past and counted in ``skipped_lines``.  A last line
    without a newline is still parsed (and skipped if truncated).
    """
    parser = parser_for(format)
    pending: list[bytes] = []  # pieces of the line being framed
    pending_size = 0
    overlong = False
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            start = 0
            while (end := chunk.find(b"\n", start)) != -1:
                piece = chunk[start:end]
                if overlong:
                    overlong = False
                elif pending_size + len(piece) > max_line_bytes:
                    parser.summary.skipped_lines += 1
                elif pending:
                    pending.append(piece)
                    parser.feed(b"".join(pending))
                else:
                    parser.feed(piece)
                pending.clear()
                pending_size = 0
                start = end + 1
            if start < len(chunk) and not overlong:
                pending.append(chunk[start:])
                pending_size += len(chunk) - start
                if pending_size > max_line_bytes:
                    parser.summary.skipped_lines += 1
                    pending.clear()
                    pending_size = 0
                    overlong = True
    if pending and not overlong:
        parser.feed(b"".join(pending))
    return parser.finish()
