"""A fake of OpenRouter's public models list, ``GET /api/v1/models``, on loopback.

The shape is the real one: ``{"data": [model, ...]}`` where a model carries ``id``,
``canonical_slug``, ``hugging_face_id``, ``name``, ``created``, ``description``,
``context_length``, ``architecture`` {modality, input_modalities, output_modalities, tokenizer,
instruct_type}, ``pricing`` {prompt, completion, request, image, web_search, internal_reasoning,
input_cache_read, input_cache_write} as decimal strings in USD per token (keys absent when a
model has no such price), ``top_provider`` {context_length, max_completion_tokens,
is_moderated}, ``per_request_limits`` (null) and ``supported_parameters``.

Where the shape and the values come from: OpenRouter's "Models" documentation
(https://openrouter.ai/docs/overview/models, "API Response Schema"), the TypeScript types that
public clients keep of this answer (raycast/extensions
extensions/openrouter-model-search/src/types.ts; nuwa-protocol/xnuwa.app
src/features/cap-studio/types/openrouter-model.ts), and a saved answer of the endpoint in a
public repository (entries for anthropic/claude-sonnet-4.6, qwen/qwen3-coder-next,
minimax/minimax-m2.5: their slugs, context lengths, prices and parameters are copied from it,
descriptions shortened).  OpenRouter's auto router really is listed with ``"-1"`` prices
("varies"), and ``:free`` variants with ``"0"``.

``FakeOpenRouterCatalog.answer`` is what the next GET gets: ``Answer(status, body, headers)``;
``real_answer()`` is the default.  Hostile answers for tests are built with ``Answer.raw``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.fakes.loopback import LoopbackServer

_COMMON_PARAMS = ["max_tokens", "response_format", "stop", "structured_outputs", "temperature", "tool_choice", "tools"]


def model_entry(
    model_id: str,
    slug: str,
    name: str,
    context: int,
    max_out: int | None,
    pricing: dict[str, str],
    params: list[str],
    inputs: tuple[str, ...] = ("text",),
    tokenizer: str = "Other",
    created: int = 1771342990,
    description: str = "",
) -> dict[str, Any]:
    """One entry of ``data`` in the real shape."""
    modality = "+".join(inputs) + "->text"
    return {
        "id": model_id,
        "canonical_slug": slug,
        "hugging_face_id": None,
        "name": name,
        "created": created,
        "description": description or f"{name}.",
        "context_length": context,
        "architecture": {
            "modality": modality,
            "input_modalities": list(inputs),
            "output_modalities": ["text"],
            "tokenizer": tokenizer,
            "instruct_type": None,
        },
        "pricing": pricing,
        "top_provider": {"context_length": context, "max_completion_tokens": max_out, "is_moderated": False},
        "per_request_limits": None,
        "supported_parameters": params,
        "default_parameters": {"temperature": None, "top_p": None, "frequency_penalty": None},
        "expiration_date": None,
    }


def real_models() -> list[dict[str, Any]]:
    """Five entries as the real endpoint lists them."""
    return [
        model_entry(
            "anthropic/claude-sonnet-4.6",
            "anthropic/claude-4.6-sonnet-20260217",
            "Anthropic: Claude Sonnet 4.6",
            1000000,
            128000,
            {
                "prompt": "0.000003",
                "completion": "0.000015",
                "web_search": "0.01",
                "input_cache_read": "0.0000003",
                "input_cache_write": "0.00000375",
            },
            ["include_reasoning", "reasoning", *_COMMON_PARAMS, "top_k", "top_p", "verbosity"],
            inputs=("text", "image"),
            tokenizer="Claude",
            description="Sonnet 4.6 is Anthropic's most capable Sonnet-class model yet.",
        ),
        model_entry(
            "qwen/qwen3-coder-next",
            "qwen/qwen3-coder-next-2025-02-03",
            "Qwen: Qwen3 Coder Next",
            262144,
            65536,
            {"prompt": "0.00000012", "completion": "0.00000075", "input_cache_read": "0.00000006"},
            ["frequency_penalty", "logit_bias", *_COMMON_PARAMS, "seed", "top_k", "top_p"],
            tokenizer="Qwen",
            description="Qwen3-Coder-Next is an open-weight model optimized for coding agents.",
        ),
        model_entry(
            "minimax/minimax-m2.5",
            "minimax/minimax-m2.5-20260211",
            "MiniMax: MiniMax M2.5",
            196608,
            196608,
            {"prompt": "0.000000295", "completion": "0.0000012", "input_cache_read": "0.00000003"},
            ["include_reasoning", "reasoning", *_COMMON_PARAMS, "top_p"],
        ),
        model_entry(
            "qwen/qwen3-coder:free",
            "qwen/qwen3-coder-480b-a35b-07-25",
            "Qwen: Qwen3 Coder 480B A35B (free)",
            262000,
            None,
            {
                "prompt": "0",
                "completion": "0",
                "request": "0",
                "image": "0",
                "web_search": "0",
                "internal_reasoning": "0",
            },
            ["max_tokens", "temperature", "tool_choice", "tools"],
            tokenizer="Qwen3",
        ),
        model_entry(
            "openrouter/auto",
            "openrouter/auto",
            "Auto Router",
            2000000,
            None,
            {"prompt": "-1", "completion": "-1"},
            [],
            inputs=("text", "image"),
            tokenizer="Router",
        ),
    ]


@dataclass
class Answer:
    status: int = 200
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=lambda: [("content-type", "application/json")])
    trickle_s: float = 0.0  # > 0: the body goes out a byte at a time, this long apart (a stalling server)

    @classmethod
    def json(cls, doc: Any, status: int = 200) -> Answer:
        return cls(status, json.dumps(doc).encode())

    @classmethod
    def raw(cls, body: bytes, status: int = 200, content_type: str = "application/json") -> Answer:
        return cls(status, body, [("content-type", content_type)])


def real_answer(models: list[dict[str, Any]] | None = None) -> Answer:
    return Answer.json({"data": real_models() if models is None else models})


class _Handler(BaseHTTPRequestHandler):
    fake: FakeOpenRouterCatalog
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.fake.paths.append(self.path)
        if self.path.split("?")[0] != "/api/v1/models":
            self._send(Answer.json({"error": {"message": "Not Found", "code": 404}}, 404))
            return
        self._send(self.fake.answer)

    def _send(self, answer: Answer) -> None:
        self.send_response(answer.status)
        for k, v in answer.headers:
            self.send_header(k, v)
        self.send_header("content-length", str(len(answer.body)))
        self.end_headers()
        if not answer.trickle_s:
            self.wfile.write(answer.body)
            return
        for i in range(len(answer.body)):
            if self.fake._stopping.wait(answer.trickle_s):
                return
            try:
                self.wfile.write(answer.body[i : i + 1])
                self.wfile.flush()
            except OSError:  # the client gave up
                return


class FakeOpenRouterCatalog(LoopbackServer):
    drain_on_close = True

    def __init__(self) -> None:
        super().__init__(_Handler)
        self.answer = real_answer()
        self.paths: list[str] = []

    @property
    def base_url(self) -> str:
        """What ``[catalog] openrouter_url`` is set to (the real one: https://openrouter.ai/api/v1)."""
        return self.url("/api/v1")
