"""Who may start an agent run, and what of their text reaches the prompt.

An agent with write access to a repository must not be startable by strangers: the
trigger label counts only if the user who applied it (the latest ``labeled`` event for
it) has write, maintain or admin on the repository, or is on ``allowed_users``; when
``restrict_to_users`` is set nobody else counts; bots and the coordinator's own account
never do.  Issue text is sanitised (HTML comments, zero-width and bidi control characters
removed; our prompt fences neutralised) before it reaches a prompt.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from adw_modules.config.github import GitHubConfig
from adw_modules.sources.github.client import LabelEvent

WRITE_ROLES = frozenset({"admin", "maintain", "write"})
_HTML_COMMENT = re.compile(r"<!--.*?(-->|\Z)", re.DOTALL)
# Zero-width and bidirectional-control characters hide or reorder text a reviewer reads.
_INVISIBLE = re.compile("[\u200b\u200c\u200d\u2060\ufeff\u00ad\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]")
_FENCE = re.compile(r"<(/?)(untrusted-issue)", re.IGNORECASE)


def sanitize(text: str | None) -> str:
    text = _HTML_COMMENT.sub("", text or "")
    text = _INVISIBLE.sub("", text)
    # Text must not be able to close the untrusted block it is placed in.
    return _FENCE.sub(r"‹\1\2", text).strip()


@dataclass(frozen=True)
class TriggerDecision:
    allowed: bool
    reason: str
    event: LabelEvent | None = None


def is_bot(event: LabelEvent) -> bool:
    return event.actor_type == "Bot" or event.actor.endswith("[bot]")


def decide(
    cfg: GitHubConfig, event: LabelEvent | None, own_login: str, permission: Callable[[str], str]
) -> TriggerDecision:
    """``permission(login)`` is only called when the answer depends on it."""
    if event is None:
        return TriggerDecision(False, f'no "labeled" event for "{cfg.trigger_label}" was found')
    who = f"@{event.actor}"
    if event.actor == own_login:
        return TriggerDecision(False, f"{who} is this coordinator's own account", event)
    if is_bot(event):
        return TriggerDecision(False, f"{who} is a bot", event)
    if cfg.restrict_to_users and event.actor not in cfg.restrict_to_users:
        return TriggerDecision(False, f"{who} is not on this coordinator's list of users who may start runs", event)
    if event.actor in cfg.allowed_users:
        return TriggerDecision(True, f"{who} is on the allowed_users list", event)
    role = permission(event.actor)
    if role in WRITE_ROLES:
        return TriggerDecision(True, f"{who} has {role} permission", event)
    return TriggerDecision(False, f"{who} has {role} permission on this repository; write is needed", event)


def find_mention(body: str, mention: str) -> str | None:
    """The text after the first whole-word ``mention`` (e.g. "@adw-bot") in ``body``, or None.

    "@adw-bot please fix the footer" -> "please fix the footer"; "@adw-botty" and "x@adw-bot" are
    not mentions (GitHub would not link them either).  A mention inside code (a fenced block or
    a `span`, where GitHub does not link it either) or on a quoted line ("> @adw-bot ...", a
    reply quoting an earlier request, maybe a stranger's) does not count: whoever writes the
    comment must address the bot in their own words.  After a real mention the instruction is
    the rest of the text, quotes and code included ("@adw-bot fix this:" then a quoted error)."""
    text = _HTML_COMMENT.sub("", body)
    pattern = re.compile(r"(?<![\w@/.-])" + re.escape(mention) + r"(?![\w-])", re.IGNORECASE)
    match = pattern.search(_masked(text))
    if match is None:
        return None
    return text[match.end() :].strip(" \t\r\n:,")


_FENCED = re.compile(r"^ {0,3}(`{3,}|~{3,})[^\n]*\n.*?(?:^ {0,3}\1[ \t]*$|\Z)", re.MULTILINE | re.DOTALL)
_CODE_SPAN = re.compile(r"(`+)[^`].*?\1", re.DOTALL)
_QUOTED = re.compile(r"^[ \t]{0,3}>.*$", re.MULTILINE)


def _masked(text: str) -> str:
    """``text`` with code and quoted lines blanked out, every other character where it was."""

    def blank(m: re.Match[str]) -> str:
        return re.sub(r"[^\n]", " ", m.group(0))

    for pattern in (_FENCED, _CODE_SPAN, _QUOTED):
        text = pattern.sub(blank, text)
    return text
