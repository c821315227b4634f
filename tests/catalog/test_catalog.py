"""The discovered model pool: OpenRouter's models list from a loopback fake with the real shape,
the cache (refresh time, count, kept on a bad answer), ``adw models`` / ``discover`` /
``promote``, discovered prices as the fallback for estimates, and the refresh timer of ``adw run``."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from adw_modules.catalog import cache
from adw_modules.catalog.openrouter import CatalogError, parse
from adw_modules.config.schema import ConfigError, load_config
from adw_modules.routing.providers import ProviderRegistry
from adws.cli import cli
from tests.adws.test_golden_views import check
from tests.fakes.openrouter_catalog import Answer, FakeOpenRouterCatalog, model_entry, real_answer, real_models

T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
# genai-prices knows every real entry of the fake: this one (real shape, made-up model) it does not.
NEW_MODEL = model_entry(
    "acme/coder-2027",
    "acme/coder-2027-0101",
    "Acme: Coder 2027",
    131072,
    32768,
    {"prompt": "0.0000004", "completion": "0.0000016", "input_cache_read": "0.0000001"},
    ["max_tokens", "tools", "tool_choice"],
)


def pool() -> Answer:
    return real_answer([*real_models(), NEW_MODEL])


CONFIG = """\
# the operator's own words, kept by promote
[providers.openrouter]
command_template = ["/bin/true", "{{model}}"]   # the wrapper, in real life
price_provider = "openrouter"

[providers.openrouter.models."qwen/qwen3-coder-next"]
display_name = "Qwen3 Coder Next"   # priced by genai-prices
tier = "fast"
capabilities = ["code"]

[providers.openrouter.models."acme/coder-2027"]
display_name = "Acme Coder"   # not in genai-prices: priced from the pool
tier = "fast"
capabilities = ["code"]

[providers.openrouter.models."minimax/minimax-m2.5"]
tier = "standard"
capabilities = ["code"]
price = {{ input_per_mtok = 0.5, output_per_mtok = 2.0 }}   # an operator's override wins

[providers.openrouter.models."no/such-model"]
tier = "fast"
capabilities = ["code"]

[routing]
default_provider = "openrouter"
default_model = "qwen/qwen3-coder-next"

[coordinator]
state_dir = "state"

[catalog]
openrouter_url = "{url}"
"""


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenRouterCatalog]:
    with FakeOpenRouterCatalog() as server:
        yield server


@pytest.fixture
def config_path(tmp_path: Path, fake: FakeOpenRouterCatalog) -> Iterator[Path]:
    fake.answer = pool()
    path = tmp_path / "config.toml"
    path.write_text(CONFIG.format(url=fake.base_url))
    yield path


def adw(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def refreshed(path: Path, when: dt.datetime = T0) -> cache.Catalog:
    return cache.refresh(load_config(path).catalog, now=lambda: when)


def test_the_real_shape_is_read_with_prices_per_million_and_capabilities(config_path: Path) -> None:
    catalog = refreshed(config_path)
    assert catalog.count == 6 and catalog.fetched_at == T0
    sonnet = catalog.get("anthropic/claude-sonnet-4.6")
    assert sonnet is not None
    assert (sonnet.input_per_mtok, sonnet.output_per_mtok) == (3.0, 15.0)
    assert (sonnet.cache_read_per_mtok, sonnet.cache_write_per_mtok) == (0.3, 3.75)
    assert (sonnet.context_length, sonnet.max_completion_tokens) == (1000000, 128000)
    assert {"tools", "reasoning", "vision"} <= set(sonnet.capabilities)
    # "-1" is OpenRouter's "varies" (its auto router): unknown, never free.
    auto = catalog.get("openrouter/auto")
    assert auto is not None and auto.input_per_mtok is None and catalog.unknown_prices == 1
    free = catalog.get("qwen/qwen3-coder:free")
    assert free is not None and free.input_per_mtok == 0.0
    # The cache file holds the refresh time, the source and the count, and reads back the same.
    on_disk = json.loads((config_path.parent / "state" / "catalog" / "openrouter.json").read_text())
    assert on_disk["fetched_at"] == T0.isoformat() and on_disk["count"] == 6
    assert on_disk["source"].endswith("/api/v1/models")
    assert cache.load(load_config(config_path).catalog).models == catalog.models


HOSTILE: dict[str, tuple[Answer, str]] = {
    "not json": (Answer.raw(b"<html>502 Bad Gateway</html>", content_type="text/html"), "is not JSON"),
    "http error": (Answer.json({"error": {"message": "Internal", "code": 500}}, status=500), "HTTP 500"),
    "wrong shape": (Answer.json({"models": []}), 'not {"data": [...]}'),
    "empty list": (Answer.json({"data": []}), "no usable model"),
    "only junk entries": (Answer.json({"data": [1, {"name": "no id"}, {"id": "a\u0000b"}]}), "no usable model"),
    "not utf-8": (Answer.raw(b'{"data": ["\xff\xfe"]}'), "not UTF-8"),
    "NaN constant": (Answer.raw(b'{"data": [{"id": "a/b", "context_length": NaN}]}'), "is not JSON"),
    "huge": (Answer.raw(b'{"data": [' + b" " * (2 * 1024 * 1024) + b"]}"), "larger than 1 MB"),
    "deeply nested": (Answer.raw(b"[" * 100_000 + b"]" * 100_000), "is not JSON"),
    "redirect off http": (Answer(302, b"", [("location", "ftp://127.0.0.1/models")]), "non-http(s) URL"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_a_hostile_answer_is_a_clear_error_and_the_old_cache_stays(
    config_path: Path, fake: FakeOpenRouterCatalog, case: str
) -> None:
    config_path.write_text(config_path.read_text() + "max_mb = 1\n")
    before = refreshed(config_path)
    cache_file = config_path.parent / "state" / "catalog" / "openrouter.json"
    kept = cache_file.read_bytes()
    fake.answer, message = HOSTILE[case]
    result = adw("--config", str(config_path), "models", "discover", "--refresh")
    assert result.exit_code == 1
    assert "✗ refresh failed:" in result.output and message in result.output
    assert "the cache was not changed" in result.output
    assert cache_file.read_bytes() == kept  # byte for byte
    assert "6 models from" in result.output  # what is still cached is shown
    assert cache.load(load_config(config_path).catalog).models == before.models


def test_an_unreachable_list_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(CONFIG.format(url="http://127.0.0.1:9/api/v1"))  # discard: nothing listens
    result = adw("--config", str(path), "models", "discover", "--refresh")
    assert result.exit_code == 1
    assert "✗ refresh failed: http://127.0.0.1:9/api/v1/models: cannot fetch:" in result.output
    assert "Discovered pool: not fetched yet" in result.output


def test_a_server_trickling_its_answer_is_given_up_on(tmp_path: Path, fake: FakeOpenRouterCatalog) -> None:
    """Each read gets a byte within timeout_s, so only a deadline for the whole answer ends it."""
    fake.answer = dataclasses.replace(real_answer(), trickle_s=0.02)
    path = tmp_path / "config.toml"
    path.write_text(CONFIG.format(url=fake.base_url) + "timeout_s = 0.2\n")
    result = adw("--config", str(path), "models", "discover", "--refresh")
    assert result.exit_code == 1, result.output
    assert "the answer did not arrive within 0.6 s (3 × [catalog] timeout_s); not read" in result.output
    assert "Discovered pool: not fetched yet" in result.output


def test_bad_entries_are_skipped_counted_and_cleaned(config_path: Path, fake: FakeOpenRouterCatalog) -> None:
    models: list[Any] = real_models()
    models[0]["name"] = "Evil\u0000 name\u202e\x1b[31m" + "x" * 500
    models[1]["pricing"] = {"prompt": "lots", "completion": "1e400"}
    models[2]["pricing"] = {"prompt": "NaN", "completion": "-0.5"}
    models[3]["context_length"] = "big"
    models += [{"id": ""}, {"id": "../../etc/passwd\n"}, "string", {"id": models[4]["id"]}]
    fake.answer = real_answer(models)
    catalog = refreshed(config_path)
    assert catalog.count == 5
    assert catalog.skipped == {
        "entries without an id": 1,
        "entries whose id is not a plain model id": 1,
        "entries not an object": 1,
        "duplicate id": 1,
    }
    sonnet = catalog.get("anthropic/claude-sonnet-4.6")
    assert sonnet is not None and "\x00" not in sonnet.name and "\x1b" not in sonnet.name and len(sonnet.name) <= 120
    for model_id in ("qwen/qwen3-coder-next", "minimax/minimax-m2.5"):
        m = catalog.get(model_id)
        assert m is not None and m.input_per_mtok is None and m.output_per_mtok is None
    free = catalog.get("qwen/qwen3-coder:free")
    assert free is not None and free.context_length == 262000  # top_provider's, the entry's being unreadable


def test_a_damaged_cache_file_is_an_empty_pool_with_a_reason(config_path: Path) -> None:
    cfg = load_config(config_path).catalog
    cfg.cache_path.parent.mkdir(parents=True)
    cfg.cache_path.write_bytes(b"\x00\xff not json")
    catalog = cache.load(cfg)
    assert catalog.count == 0 and catalog.problem is not None and "--refresh" in catalog.problem
    result = adw("--config", str(config_path), "models")
    assert result.exit_code == 0 and "Discovered pool:" in result.output and "unreadable" in result.output


def test_parse_refuses_what_is_not_a_list_of_models() -> None:
    with pytest.raises(CatalogError, match="got list"):
        parse(b"[]")


def test_discovered_prices_fill_in_when_genai_prices_lacks_the_model(config_path: Path) -> None:
    registry = ProviderRegistry(load_config(config_path))
    assert registry.price_for("openrouter", "acme/coder-2027") is None  # no pool yet
    refreshed(config_path)
    price = registry.price_for("openrouter", "acme/coder-2027")
    assert price is not None and price.source == "openrouter-catalog"
    assert (price.input_per_mtok, price.output_per_mtok, price.cache_read_per_mtok) == (0.4, 1.6, 0.1)
    library = registry.price_for("openrouter", "qwen/qwen3-coder-next")
    assert library is not None and library.source == "genai-prices"  # the library first, when it knows
    override = registry.price_for("openrouter", "minimax/minimax-m2.5")
    assert override is not None and override.source == "config" and override.input_per_mtok == 0.5
    assert registry.price_for("openrouter", "no/such-model") is None
    (info,) = [m for m in registry.list_models() if m.name == "acme/coder-2027"]
    assert info.estimated_cost(3000, 1000) == pytest.approx((3000 * 0.4 + 1000 * 1.6) / 1e6)


def test_models_views(config_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The golden views: curated + discovered; --discovered with filters; discover's summary."""
    refreshed(config_path)
    monkeypatch.setattr("adws.cli_models._now", lambda: T0 + dt.timedelta(hours=3))
    base = ["--config", str(config_path), "models"]
    views = {
        "catalog_models": base,
        "catalog_models_discovered_tools": [*base, "--discovered", "--capability", "tools", "--max-cost", "0.001"],
        "catalog_models_text": [*base, "--text", "QWEN", "--min-context", "200000"],
        "catalog_discover": [*base, "discover"],
        "catalog_discover_refresh": [*base, "discover", "--refresh"],  # refreshed "now": T0 + 3 h
    }
    for name, argv in views.items():
        result = adw(*argv)
        assert result.exit_code == 0, result.output
        text = result.output.rstrip("\n").replace(str(config_path.parent / "state"), "<state>")
        text = _port_free(text)
        check(name, text, tmp_path)


def _port_free(text: str) -> str:
    import re

    return re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", text)


def test_a_failed_refresh_view(
    config_path: Path, fake: FakeOpenRouterCatalog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.answer = real_answer([*real_models(), {"id": ""}, {"id": "a b"}])
    refreshed(config_path)  # two skipped entries, kept in the summary
    monkeypatch.setattr("adws.cli_models._now", lambda: T0 + dt.timedelta(days=2))
    fake.answer = Answer.raw(b"upstream timeout", status=504, content_type="text/plain")
    result = adw("--config", str(config_path), "models", "discover", "--refresh")
    assert result.exit_code == 1
    check("catalog_discover_failed", _port_free(result.output.rstrip("\n")), tmp_path)


def test_models_json_has_both_sections_and_filters_apply(config_path: Path) -> None:
    refreshed(config_path)
    out = json.loads(adw("--config", str(config_path), "models", "--json", "--capability", "vision").output)
    assert out["models"] == []  # no curated model declares "vision"
    assert [m["id"] for m in out["discovered"]["models"]] == ["anthropic/claude-sonnet-4.6", "openrouter/auto"]
    assert out["discovered"]["catalog"]["count"] == 6
    priced = json.loads(adw("--config", str(config_path), "models", "--json", "--max-cost", "0.0002").output)
    assert [m["id"] for m in priced["discovered"]["models"]] == ["qwen/qwen3-coder:free", "qwen/qwen3-coder-next"]
    assert all(m["price_source"] == "openrouter-catalog" for m in priced["discovered"]["models"])
    assert [(m["model"], m["price_source"]) for m in priced["models"]] == [("qwen/qwen3-coder-next", "genai-prices")]
    tiered = json.loads(adw("--config", str(config_path), "models", "--json", "--tier", "fast").output)
    assert tiered["discovered"]["models"] == []  # a discovered model has no tier until promoted


def test_discover_json_and_refresh(config_path: Path, fake: FakeOpenRouterCatalog) -> None:
    before = json.loads(adw("--config", str(config_path), "models", "discover", "--json").output)
    assert before["catalog"]["fetched_at"] is None and before["refreshed"] is False
    paths = len(fake.paths)
    after = json.loads(adw("--config", str(config_path), "models", "discover", "--refresh", "--json").output)
    assert after["refreshed"] is True and after["error"] is None and after["catalog"]["count"] == 6
    assert fake.paths[paths:] == ["/api/v1/models"]


def test_promote_writes_the_model_keeping_comments_and_validates(config_path: Path) -> None:
    refreshed(config_path)
    original = config_path.read_text()
    result = adw(
        "--config", str(config_path), "models", "promote", "anthropic/claude-sonnet-4.6",
        "--tier", "advanced", "--capability", "code", "--capability", "review",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.output == f"{config_path}: added providers.openrouter.models.'anthropic/claude-sonnet-4.6'\n"
    text = config_path.read_text()
    assert text.startswith(original.split("[routing]")[0].rstrip("\n"))  # everything above, comments too
    assert "# an operator's override wins" in text and "# the operator's own words, kept by promote" in text
    assert '[providers.openrouter.models."anthropic/claude-sonnet-4.6"]' in text
    spec = load_config(config_path).providers["openrouter"].models["anthropic/claude-sonnet-4.6"]
    assert (spec.display_name, spec.tier, spec.capabilities) == (
        "Anthropic: Claude Sonnet 4.6",
        "advanced",
        ("code", "review"),
    )
    assert spec.context_window == 1000000
    # Its price now comes from genai-prices if it knows the id, else from the pool: never unknown.
    price = ProviderRegistry(load_config(config_path)).price_for("openrouter", "anthropic/claude-sonnet-4.6")
    assert price is not None and price.input_per_mtok == 3.0

    again = adw("--config", str(config_path), "models", "promote", "anthropic/claude-sonnet-4.6")
    declared_at = text.splitlines().index('[providers.openrouter.models."anthropic/claude-sonnet-4.6"]') + 1
    assert again.exit_code == 2
    assert (
        f'{config_path}:{declared_at}: providers.openrouter.models: "anthropic/claude-sonnet-4.6" is already'
        in again.output
    )
    assert "is not in the discovered pool" in adw("--config", str(config_path), "models", "promote", "x/y").output


def test_promote_refuses_an_unknown_provider_and_leaves_the_file_alone(config_path: Path) -> None:
    refreshed(config_path)
    original = config_path.read_bytes()
    result = adw("--config", str(config_path), "models", "promote", "qwen/qwen3-coder:free", "--provider", "nope")
    assert result.exit_code == 2 and 'provider "nope" is not defined (defined: openrouter)' in result.output
    assert config_path.read_bytes() == original


def test_promote_refuses_a_capability_that_is_not_a_word(config_path: Path) -> None:
    """A capability with a quote, a bracket and a newline would stay valid TOML but break every
    view that lists capabilities: the config refuses it, so the file is not touched."""
    refreshed(config_path)
    original = config_path.read_bytes()
    result = adw("--config", str(config_path), "models", "promote", "qwen/qwen3-coder:free", "--capability", 'a"]\nb')
    assert result.exit_code == 2, result.output
    assert f"{config_path}: not changed\n" in result.output
    assert 'capability "a\\"]\\nb" is not a plain word' in result.output
    assert config_path.read_bytes() == original


def test_promote_default_capabilities_come_from_the_pool(config_path: Path) -> None:
    refreshed(config_path)
    assert adw("--config", str(config_path), "models", "promote", "qwen/qwen3-coder:free").exit_code == 0
    spec = load_config(config_path).providers["openrouter"].models["qwen/qwen3-coder:free"]
    assert spec.capabilities == ("tools",) and spec.tier is None


def test_catalog_config_is_validated_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(
        '[providers.a]\ncommand_template = ["x"]\n[catalog]\nopenrouter_url = "ftp://x"\nrefresh = "yes"\nrefesh_interval_h = 2\n'
    )
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    text = "\n".join(exc.value.issues)
    assert f"{path}:4: catalog: openrouter_url" in text and "must be an http(s) URL" in text
    assert "refresh must be true/false" in text or "refresh must be" in text
    assert 'unknown key "refesh_interval_h" (did you mean "refresh_interval_h"?)' in text


def test_a_url_with_control_characters_is_a_config_error_and_never_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[providers.a]\ncommand_template = ["x"]\n[catalog]\nopenrouter_url = "http://h/a\\u001b[2J\\nb"\n')
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert f'{path}:4: catalog: openrouter_url "http://h/a\\u001b[2J\\nb" holds spaces or control' in "\n".join(
        exc.value.issues
    )
    # Had one reached the fetch anyway, http.client's refusal is a CatalogError like any other.
    from adw_modules.catalog.openrouter import fetch
    from adw_modules.config.catalog import CatalogConfig

    with pytest.raises(CatalogError, match="cannot fetch: URL can't contain control characters"):
        fetch(CatalogConfig(openrouter_url="http://127.0.0.1:9/a\x1bb"))


def test_adw_run_refreshes_on_its_timer_and_keeps_the_cache_when_it_fails(
    config_path: Path, fake: FakeOpenRouterCatalog
) -> None:
    from adws.service import Service, config_changes

    config_path.write_text(config_path.read_text() + "refresh = true\nrefresh_interval_h = 6\n")
    service = Service(load_config(config_path), environ={"PATH": os.environ.get("PATH", "")})
    try:
        service._schedule(dispatch=False)
        service.scheduler.start(paused=True)  # jobs scheduled and rescheduled, run here by hand
        job = service.scheduler.get_job("catalog")
        assert job is not None and job.trigger.interval == dt.timedelta(hours=6)
        assert service.refresh_catalog() is True  # no cache yet: due
        assert service.refresh_catalog() is False  # fresh: the timer fired early, nothing fetched
        cfg = service.config.catalog
        stale = cache.refresh(cfg, now=lambda: dt.datetime.now(dt.UTC) - dt.timedelta(hours=6))
        fake.answer = Answer.raw(b"\x00\x00\x00")
        assert service.refresh_catalog() is False  # failed: logged, the old cache stays
        assert cache.load(cfg).fetched_at == stale.fetched_at
        config_path.write_text(config_path.read_text().replace("refresh = true", "refresh = false"))
        assert config_changes(service.config, load_config(config_path)) == ["catalog.refresh True -> False"]
        assert service.reload()
        assert service.scheduler.get_job("catalog") is None
    finally:
        service.scheduler.shutdown(wait=False)
        service.store.close()


def test_an_attempt_without_a_reported_cost_is_estimated_at_the_discovered_price(config_path: Path) -> None:
    from adw_modules.config.schema import Target
    from adw_modules.outcomes import StreamSummary, Usage
    from adw_modules.workers.attempt import cost_of

    refreshed(config_path)
    registry = ProviderRegistry(load_config(config_path))
    summary = StreamSummary(format="claude-stream-json", usage=Usage(input_tokens=10_000, output_tokens=2_000))
    cost, source = cost_of(summary, Target("openrouter", "acme/coder-2027"), registry.price_for)
    assert (cost, source) == (pytest.approx((10_000 * 0.4 + 2_000 * 1.6) / 1e6), "estimated from openrouter-catalog")
