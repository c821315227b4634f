"""Per-model accounting and the endings that older or odder CLI builds write."""

from __future__ import annotations

import json

from adw_modules.config.schema import Target
from adw_modules.outcomes import StreamSummary, Usage
from adw_modules.routing.pricing import Price
from adw_modules.workers.attempt import cost_of
from adw_modules.workers.classify import classify
from adw_modules.workers.streams import parser_for


def _parse(fmt: str, *objs: dict) -> StreamSummary:
    p = parser_for(fmt)
    for obj in objs:
        p.feed(json.dumps(obj))
    return p.finish()


def test_gemini_cached_split_from_the_totals_when_models_lack_it() -> None:
    stats = {
        "total_tokens": 10100,
        "input_tokens": 10000,
        "output_tokens": 100,
        "cached": 8000,
        "input": 2000,
        "models": {"gemini-2.5-pro": {"total_tokens": 10100, "input_tokens": 10000, "output_tokens": 100}},
    }
    s = _parse(
        "gemini-stream-json", {"type": "init", "model": "auto"}, {"type": "result", "status": "success", "stats": stats}
    )
    assert s.per_model == {"gemini-2.5-pro": Usage(2000, 100, 8000, 0)}
    assert (s.usage.input_tokens, s.usage.cache_read_tokens) == (2000, 8000)
    price = Price(input_per_mtok=1.25, output_per_mtok=10.0, cache_read_per_mtok=0.31)
    cost, source = cost_of(s, Target("gemini", "gemini-2.5-pro"), lambda _p, _m: price)
    # 2000 fresh input + 8000 cache reads + 100 output, not 10000 fresh input (which would be $0.0135).
    assert source == "estimated from config" and cost == round((2000 * 1.25 + 8000 * 0.31 + 100 * 10.0) / 1e6, 6)


def _two_flash_models(**totals: int) -> StreamSummary:
    """A Gemini result over two models (4000 in, 30 out), with ``totals`` added to its stats."""
    stats = {
        "input_tokens": 4000,
        "output_tokens": 30,
        **totals,
        "models": {
            "gemini-2.5-flash": {"input_tokens": 3000, "output_tokens": 20},
            "gemini-2.5-flash-lite": {"input_tokens": 1000, "output_tokens": 10},
        },
    }
    return _parse("gemini-stream-json", {"type": "result", "status": "success", "stats": stats})


def test_gemini_cached_split_over_several_models_adds_up() -> None:
    s = _two_flash_models(cached=1000)
    assert sum(u.cache_read_tokens for u in s.per_model.values()) == 1000
    assert sum(u.input_tokens for u in s.per_model.values()) == 3000
    assert s.main_model == "gemini-2.5-flash"  # most output


def test_an_estimate_over_several_models_names_each_price_source() -> None:
    s = _two_flash_models()
    prices = {
        "gemini-2.5-flash": Price(input_per_mtok=1.0, output_per_mtok=2.0, source="genai-prices"),
        "gemini-2.5-flash-lite": Price(input_per_mtok=1.0, output_per_mtok=2.0),  # config
    }
    _, source = cost_of(s, Target("gemini", "gemini-2.5-flash"), lambda _p, m: prices[m])
    assert source == "estimated from config, genai-prices"
    # One model without a price: no estimate at all (never a partial sum).
    del prices["gemini-2.5-flash-lite"]
    assert cost_of(s, Target("gemini", "gemini-2.5-flash"), lambda _p, m: prices.get(m)) == (None, None)


def _step(reason: str | None) -> dict:
    part: dict = {
        "type": "step-finish",
        "tokens": {"input": 10, "output": 5, "cache": {"read": 0, "write": 0}},
        "cost": 0.001,
    }
    if reason is not None:
        part["reason"] = reason
    return {"type": "step_finish", "sessionID": "ses_1", "part": part}


def test_opencode_without_step_reasons_ends_with_its_last_step() -> None:
    s = _parse("opencode-json", {"type": "step_start", "part": {}}, _step(None), _step(None))
    assert s.terminal and classify(s, 0).ok
    assert s.usage.input_tokens == 20 and s.cost_usd == 0.002


def test_opencode_without_step_reasons_that_exits_non_zero_crashed() -> None:
    s = _parse("opencode-json", _step(None))
    assert classify(s, 1).name == "crashed"


def test_opencode_error_after_a_reasonless_step_is_not_success() -> None:
    err = {
        "type": "error",
        "error": {"name": "APIError", "data": {"message": "Rate limit exceeded", "statusCode": 429}},
    }
    s = _parse("opencode-json", _step(None), err)
    assert not classify(s, 0).ok


def test_opencode_tool_call_step_is_still_not_an_ending() -> None:
    s = _parse("opencode-json", _step("tool-calls"))
    assert not s.terminal


def test_claude_is_error_that_is_not_a_bool_is_a_failure() -> None:
    for value in ("yes", "true", 1):
        s = _parse(
            "claude-stream-json",
            {"type": "result", "subtype": "success", "is_error": value, "result": "API Error: 500"},
        )
        assert not classify(s, 0).ok, value
    s = _parse("claude-stream-json", {"type": "result", "subtype": "success", "is_error": False, "result": "done"})
    assert classify(s, 0).ok


def test_claude_main_model_is_the_init_model_not_the_last_listed() -> None:
    init = {"type": "system", "subtype": "init", "model": "claude-sonnet-4-5"}
    result = {
        "type": "result",
        "subtype": "success",
        "is_error": False,
        "total_cost_usd": 0.02,
        "usage": {"input_tokens": 3, "output_tokens": 50},
        "modelUsage": {
            "claude-sonnet-4-5": {"inputTokens": 3, "outputTokens": 50, "costUSD": 0.019},
            "claude-haiku-4-5": {"inputTokens": 400, "outputTokens": 60, "costUSD": 0.001},
        },
    }
    s = _parse("claude-stream-json", init, result)
    assert s.main_model == "claude-sonnet-4-5"
    assert (s.usage.input_tokens, s.usage.output_tokens) == (403, 110)
    assert s.usage.cost_usd == 0.02 and s.cost_usd == 0.02
