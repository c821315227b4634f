"""Plan, quota and rate-limit texts as the CLIs print them (tests/fixtures/real/limit_texts.md
says where each was found).  A spent plan must fail over (quota_exhausted); a rate limit
backs off (rate_limited).  Free text is read for its words only: paths and file names in it
never decide the kind."""

from __future__ import annotations

import pytest

from adw_modules.outcomes import ErrorKind
from adw_modules.workers.streams import signals

QUOTA = ErrorKind.QUOTA_EXHAUSTED
RATE = ErrorKind.RATE_LIMITED

TEXTS: list[tuple[str, ErrorKind | None]] = [
    # Claude Code
    ("Weekly limit reached ∙ resets 5am", QUOTA),
    ("5-hour limit reached ∙ resets 2am", QUOTA),
    ("Claude Opus limit reached, now using Sonnet 4.5", QUOTA),
    ("You've hit your limit · resets 4:50am (Europe/Rome)", QUOTA),
    ("You've hit your limit - resets Feb 7, 11am (Asia/Seoul)/login to switch to an API usage-billed account.", QUOTA),
    ("You've hit your session limit · resets 12:50am (America/Los_Angeles)", QUOTA),
    ("You've reached your Opus limit. Run /usage-credits to continue or switch models with /model.", QUOTA),
    ("Claude AI usage limit reached|1755615600", QUOTA),
    (
        "API Error: Usage credits required for 1M context · run /usage-credits to turn them on, or /model to switch to standard context",
        QUOTA,
    ),
    ("Credit balance too low · Add funds: https://platform.claude.com/settings/billing", QUOTA),
    (
        "Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or purchase credits.",
        QUOTA,
    ),
    ("This request would exceed your account's rate limit. Please try again later.", RATE),
    (
        'API Error: 529 {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}',
        ErrorKind.OVERLOADED,
    ),
    # Codex
    (
        "You've hit your usage limit. To get more access now, send a request to your admin or try again at 12:16 PM.",
        QUOTA,
    ),
    (
        "You’ve hit your usage limit. Upgrade to Pro (https://openai.com/chatgpt/pricing) or try again in 2 days 17 hours 14 minutes.",
        QUOTA,
    ),
    ("You've hit your usage limit. Upgrade your plan or add credits to continue, or try again", QUOTA),
    ('{"type":"error","error":{"type":"usage_limit_reached","message":"The usage limit has been reached"}}', QUOTA),
    ("ERROR: Quota exceeded. Check your plan and billing details.", QUOTA),
    ("exceeded retry limit, last status: 401 Unauthorized, request id: 99cdd73d79b8fba1-AMS", ErrorKind.AUTH_FAILED),
    # Gemini CLI
    (
        "Quota exceeded for quota metric 'Gemini 2.5 Pro Requests' and limit 'Gemini 2.5 Pro Requests per day per user per tier'",
        QUOTA,
    ),
    ("[API Error: You have exhausted your daily quota on this model.]", QUOTA),
    ("TerminalQuotaError: You have exhausted your daily quota on this model.", QUOTA),
    ("⚡ You have reached your daily quota limit.", QUOTA),
    # Google's generic RESOURCE_EXHAUSTED: a per-minute limit as often as not; the 429 decides.
    ("Resource has been exhausted (e.g. check quota).", None),
    # OpenCode
    ("Rate limit exceeded", RATE),
    ("API rate limit exceeded", RATE),
]


@pytest.mark.parametrize(("text", "kind"), TEXTS, ids=[t[:50] for t, _ in TEXTS])
def test_limit_text(text: str, kind: ErrorKind | None) -> None:
    assert signals.kind_from_text(text) == kind


@pytest.mark.parametrize(("text", "kind"), [t for t in TEXTS if t[1] is QUOTA], ids=lambda t: str(t)[:50])
def test_a_plan_limit_on_a_429_is_a_spent_plan_not_a_backoff(text: str, kind: ErrorKind) -> None:
    assert signals.kind_from_status(429, text) is QUOTA


@pytest.mark.parametrize(
    "text",
    [
        "[Errno 2] No such file or directory: '.adw/demo/rate-limit.count'",
        "cannot open /var/lib/adw/quota_exhausted/state: permission denied",
        "wrote rate_limit.json",
        r"C:\Users\me\overloaded\out.txt not found",
    ],
)
def test_paths_and_file_names_never_decide_the_kind(text: str) -> None:
    assert signals.kind_from_text(text) is None


def test_googles_generic_resource_exhausted_on_a_429_backs_off() -> None:
    assert signals.kind_from_status(429, "Resource has been exhausted (e.g. check quota).") is RATE


def test_cli_commands_in_a_message_still_count() -> None:
    assert signals.kind_from_text("Invalid API key · Please run /login") is ErrorKind.AUTH_FAILED
