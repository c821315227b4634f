"""The CLI-interface registry: which API each known agent CLI speaks, and whether a proxy can sit in front.

A provider inherits its interface from its program's name (``command_template[0]``, without
its directory and a ``.py``/``.js``/``.exe`` suffix) and may declare any field itself
(``api_format``, ``proxy_compatible``, ``proxy_env``).  A *proxy* is a provider's
``proxy = "http://…"``: the base URL the CLI sends its API calls to instead of the vendor's
(claude-code-router, LiteLLM, OpenRouter's Anthropic endpoint).  adw passes it in the
interface's ``proxy_env`` variable, which is all a CLI needs to honour one; a CLI without
such a setting (``proxy_compatible = false``) cannot use a proxy, and a config giving it
one is refused with the file and line.

Sources for the entries, and what adw's tests exercise: Claude Code reads
``ANTHROPIC_BASE_URL`` (Anthropic's "LLM gateway" docs; tests/workers/claude_cli runs it against
fakes and through claude-code-router that way); Gemini CLI reads ``GOOGLE_GEMINI_BASE_URL``
(through @google/genai; tests/workers/gemini_cli points it at its fake that way); Codex
(pinned 0.169.0) takes its base URL from its config (``-c openai_base_url=…`` or a
``model_providers`` table, which is how tests/workers/codex_cli points it at its fake), not from
the environment: ``OPENAI_BASE_URL`` appears in the binary only in a list of credential patterns,
and a run with only that variable set did not reach the fake.  So adw cannot pass it a proxy
and marks it not proxy-compatible: a proxy set the way adw sets one would be ignored and the
calls would go to the vendor; a template with ``-c openai_base_url=…`` is the way.  OpenCode takes a base URL
only from its ``opencode.json`` provider options, which adw does not write, so it is not
proxy-compatible here; ``tools/openrouter-cli.py`` takes ``--base-url`` (and
``OPENROUTER_BASE_URL``).
``context_file`` is the instructions file each CLI reads from the worktree by itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePath

API_FORMATS = ("anthropic", "openai", "gemini")


@dataclass(frozen=True)
class CliInterface:
    name: str
    api_format: str
    proxy_compatible: bool
    proxy_env: str | None  # the variable that points the CLI at another base URL
    context_file: str | None = None


KNOWN_CLIS: dict[str, CliInterface] = {
    cli.name: cli
    for cli in (
        CliInterface("claude", "anthropic", True, "ANTHROPIC_BASE_URL", "CLAUDE.md"),
        CliInterface("codex", "openai", False, None, "AGENTS.md"),  # base URL by config only: see above
        CliInterface("gemini", "gemini", True, "GOOGLE_GEMINI_BASE_URL", "GEMINI.md"),
        CliInterface("opencode", "openai", False, None, "AGENTS.md"),
        CliInterface("openrouter-cli", "openai", True, "OPENROUTER_BASE_URL", None),
    )
}


def cli_name(program: str) -> str:
    """``/x/tools/openrouter-cli.py`` -> ``openrouter-cli``; ``claude.exe`` -> ``claude``."""
    name = PurePath(program).name
    for suffix in (".py", ".js", ".exe"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def interface_for(program: str) -> CliInterface | None:
    """The registry entry for a template's program, or None for a CLI adw does not know."""
    return KNOWN_CLIS.get(cli_name(program))
