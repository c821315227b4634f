"""GitHub's official OpenAPI description (npm ``@octokit/openapi``, pinned) and a response validator.

``ensure_github_openapi()`` installs the pinned package into the git-ignored
``<repo>/.cache/node/github-openapi`` (its own npm prefix, so it never re-resolves the Claude Code
tree next to it) and returns the path of ``generated/api.github.com.json``.  CI may run
``python tests/github_openapi.py`` once before pytest; otherwise the first test that needs the
description installs it (about 3 s, 13 MB on disk for the file we read).  If it cannot be
installed the tests that need it FAIL with npm's reason (``CliInstallError``): a missing
description is a broken setup, not a reason to skip.

Version choice: **@octokit/openapi 23.0.2** (``latest`` when this was written).  It is GitHub's
own ``api.github.com`` description (``github/rest-api-description``) republished with Octokit
extensions; its ``info.version`` equals the package version.

Which file: ``api.github.com.json`` (OpenAPI 3.0.3, 13 MB, loads in ~0.2 s) with its internal
``$ref``s kept, resolved on demand by ``referencing``.  The ``.deref.json`` variant (73 MB) would
take longer to load and gains nothing, since every ``$ref`` in the file is document-local.

Validation: ``openapi-schema-validator`` (``OAS30Validator``) on top of ``jsonschema``: it speaks
OpenAPI 3.0's dialect (``nullable``, ``discriminator``, draft-4 ``exclusiveMinimum``...), which
plain ``jsonschema`` does not.  Its format checker knows only the OpenAPI numeric formats, so we
add ``date-time`` (RFC 3339), ``uri`` (absolute, with a scheme) and ``email``: a fake that
served ``"created_at": "yesterday"`` must fail.

``ResponseValidator.validate(method, path, status, body)`` maps a concrete path to the
description's templated path (literal segments win over ``{params}``, as OpenAPI requires), picks
the response for ``status`` (exact, then ``4XX``/``5XX``, then ``default``; an undocumented error
status falls back to GitHub's generic ``basic-error`` body, which every REST error uses) and
raises ``OpenAPIValidationError`` naming the operation, the JSON pointer of the failing field and
what the schema expected there.
"""

from __future__ import annotations

import functools
import json
import re
import sys
import threading
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jsonschema import FormatChecker, validators
from jsonschema import _keywords as jsonschema_keywords
from jsonschema.exceptions import ValidationError, best_match
from openapi_schema_validator import OAS30Validator, oas30_format_checker
from referencing import Registry
from referencing.jsonschema import DRAFT4
from rfc3339_validator import validate_rfc3339

if __package__ in (None, ""):  # run as `python tests/github_openapi.py` (CI's pre-install step)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.node_tools import NODE_PREFIX, CliInstallError, ensure_npm_package

OPENAPI_PACKAGE = "@octokit/openapi"
OPENAPI_VERSION = "23.0.2"
OPENAPI_PREFIX = NODE_PREFIX / "github-openapi"
SPEC_FILE = "generated/api.github.com.json"
SPEC_URI = "urn:github:api.github.com.json"  # base URI the description's "#/..." refs resolve against

HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")

__all__ = [
    "OPENAPI_PACKAGE",
    "OPENAPI_VERSION",
    "CliInstallError",
    "OpenAPIValidationError",
    "Operation",
    "ResponseValidator",
    "default_validator",
    "ensure_github_openapi",
    "load_spec",
]


# Event lists and the component each ``event`` value is documented by (GitHub's docs, "Issue event types").
_EVENT_LISTS = frozenset({"#/components/schemas/issue-event-for-issue", "#/components/schemas/timeline-issue-events"})
_EVENT_SCHEMAS = {
    "labeled": "labeled-issue-event",
    "unlabeled": "unlabeled-issue-event",
    "closed": "state-change-issue-event",
    "reopened": "state-change-issue-event",
    "renamed": "renamed-issue-event",
    "locked": "locked-issue-event",
    "milestoned": "milestoned-issue-event",
    "demilestoned": "demilestoned-issue-event",
    "commented": "timeline-comment-event",
}


def _nullable_enum(validator: Any, enums: Any, instance: Any, schema: dict[str, Any]) -> Any:
    """``nullable: true`` admits ``null`` even when ``enum`` does not list it.

    OpenAPI 3.0.3 leaves this open; GitHub's description relies on it (``issue.state_reason`` is
    ``nullable`` with ``enum: [completed, reopened, ...]`` and is ``null`` on every open issue) and
    Octokit's generated types read it this way, so the validator does too.
    """
    if instance is None and schema.get("nullable") is True:
        return
    yield from jsonschema_keywords.enum(validator, enums, instance, schema)


_Validator = validators.extend(OAS30Validator, {"enum": _nullable_enum})


class OpenAPIValidationError(AssertionError):
    """A response body (or a method/path/status) does not match GitHub's OpenAPI description."""


@dataclass(frozen=True)
class Operation:
    method: str  # upper case
    template: str  # e.g. /repos/{owner}/{repo}/issues/{issue_number}
    operation_id: str
    params: dict[str, str]  # the concrete path's values for the template's {params}


def ensure_github_openapi(prefix: Path = OPENAPI_PREFIX) -> Path:
    """Install the pinned ``@octokit/openapi`` if needed; return the path of the api.github.com description."""
    package_dir = ensure_npm_package(OPENAPI_PACKAGE, OPENAPI_VERSION, prefix)
    spec = package_dir / SPEC_FILE
    if not spec.is_file():
        raise CliInstallError(f"{OPENAPI_PACKAGE}@{OPENAPI_VERSION} is installed in {prefix} but has no {SPEC_FILE}")
    return spec


@functools.cache
def load_spec(path: Path | None = None) -> dict[str, Any]:
    """The parsed description (cached for the process: it is 13 MB of JSON)."""
    spec_path = path if path is not None else ensure_github_openapi()
    with open(spec_path, encoding="utf-8") as f:
        spec: dict[str, Any] = json.load(f)
    return spec


@functools.cache
def default_validator() -> ResponseValidator:
    """One validator per process over the pinned description; raises ``CliInstallError`` if unavailable."""
    return ResponseValidator(load_spec())


def _is_uri(value: object) -> bool:
    if not isinstance(value, str):
        return True
    parts = urllib.parse.urlsplit(value)
    return bool(parts.scheme) and (bool(parts.netloc) or parts.scheme in ("mailto", "urn")) and " " not in value


def _is_email(value: object) -> bool:
    return not isinstance(value, str) or re.fullmatch(r"[^@\s]+@[^@\s]+", value) is not None


def _is_date_time(value: object) -> bool:
    return not isinstance(value, str) or validate_rfc3339(value)


def _format_checker() -> FormatChecker:
    checker = FormatChecker(formats=())
    checker.checkers = dict(oas30_format_checker.checkers)
    checker.checks("date-time")(_is_date_time)
    checker.checks("uri")(_is_uri)
    checker.checks("email")(_is_email)
    return checker


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def _json_pointer(path: Iterable[object]) -> str:
    return "".join(f"/{_escape(str(p))}" for p in path) or "/"


def _short(value: Any, limit: int = 300) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class ResponseValidator:
    """Validates response bodies against the operations of one OpenAPI (3.0) description."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.version = str(spec.get("info", {}).get("version", "?"))
        self._registry: Registry[Any] = Registry().with_resource(SPEC_URI, DRAFT4.create_resource(spec))
        self._format_checker = _format_checker()
        self._validators: dict[str, Any] = {}
        self._lock = threading.Lock()  # jsonschema validators are not documented as thread-safe
        # Templates grouped by segment count; literal segments first (OpenAPI: concrete paths win).
        self._templates: dict[int, list[tuple[int, str, tuple[str, ...]]]] = {}
        for template in spec["paths"]:
            segments = tuple(template.strip("/").split("/"))
            literals = sum(1 for s in segments if not (s.startswith("{") and s.endswith("}")))
            self._templates.setdefault(len(segments), []).append((literals, template, segments))
        for group in self._templates.values():
            group.sort(key=lambda item: -item[0])

    # -- lookup -------------------------------------------------------------------------------
    def find_operation(self, method: str, path: str) -> Operation:
        """The operation for a concrete request path (query string ignored)."""
        concrete = urllib.parse.urlsplit(path).path
        segments = concrete.strip("/").split("/")
        candidates = self._templates.get(len(segments), [])
        method_l = method.lower()
        path_matched = False
        for _, template, tsegments in candidates:
            params: dict[str, str] = {}
            for tseg, seg in zip(tsegments, segments, strict=True):
                if tseg.startswith("{") and tseg.endswith("}"):
                    if not seg:
                        break
                    params[tseg[1:-1]] = urllib.parse.unquote(seg)
                elif tseg != seg:
                    break
            else:
                path_matched = True
                operation = self.spec["paths"][template].get(method_l)
                if operation is not None:
                    return Operation(method.upper(), template, str(operation.get("operationId", "")), params)
        if path_matched:
            raise OpenAPIValidationError(f"{method.upper()} {concrete}: the path exists but has no {method.upper()}")
        raise OpenAPIValidationError(f"{method.upper()} {concrete}: no such path in GitHub's OpenAPI description")

    def response_schema_pointer(self, operation: Operation, status: int) -> str | None:
        """JSON pointer (into the description) of the JSON schema for ``status``; None: documented without body."""
        op_pointer = f"/paths/{_escape(operation.template)}/{operation.method.lower()}"
        responses: dict[str, Any] = self.spec["paths"][operation.template][operation.method.lower()]["responses"]
        for key in (str(status), f"{status // 100}XX", "default"):
            if key in responses:
                response = responses[key]
                pointer = f"{op_pointer}/responses/{key}"
                if "$ref" in response:
                    pointer = response["$ref"][1:]
                    response = self._resolve(pointer)
                content = response.get("content") or {}
                for ctype in ("application/json", "application/scim+json"):
                    if ctype in content and "schema" in content[ctype]:
                        return f"{pointer}/content/{_escape(ctype)}/schema"
                return None
        if status >= 400:
            return "/components/schemas/basic-error"
        documented = ", ".join(responses)
        raise OpenAPIValidationError(
            f"{operation.method} {operation.template} ({operation.operation_id}): status {status} is not "
            f"documented (documented: {documented})"
        )

    def _resolve(self, pointer: str) -> Any:
        node: Any = self.spec
        for token in pointer.strip("/").split("/"):
            node = node[token.replace("~1", "/").replace("~0", "~")]
        return node

    # -- validation ---------------------------------------------------------------------------
    def validate(self, method: str, path: str, status: int, body: Any) -> None:
        """Raise ``OpenAPIValidationError`` unless ``body`` is what the description promises for this answer."""
        operation = self.find_operation(method, path)
        pointer = self.response_schema_pointer(operation, status)
        where = f"{operation.method} {urllib.parse.urlsplit(path).path} -> {status} ({operation.operation_id})"
        if pointer is None:
            if body is not None:
                raise OpenAPIValidationError(f"{where}: the description documents no body, got {_short(body)}")
            return
        self._check(where, pointer, body)
        self._check_event_types(where, pointer, body)

    def _check_event_types(self, where: str, pointer: str, body: Any) -> None:
        """Issue events are an ``anyOf`` whose project-card branches accept any object, so a labeled
        event without its ``label`` would pass; check each event against the schema its ``event`` names."""
        schema = self._resolve(pointer)
        items_ref = schema.get("items", {}).get("$ref", "") if schema.get("type") == "array" else ""
        if items_ref not in _EVENT_LISTS or not isinstance(body, list):
            return
        for index, item in enumerate(body):
            name = _EVENT_SCHEMAS.get(str(item.get("event"))) if isinstance(item, dict) else None
            if name is not None:
                self._check(f"{where} [{index}] event {item['event']!r}", f"/components/schemas/{name}", item)

    def validate_error(self, status: int, body: Any, *, where: str = "") -> None:
        """For answers outside any operation (e.g. 404 for an unknown path): GitHub's ``basic-error`` shape."""
        self._check(f"{where or 'error'} -> {status}", "/components/schemas/basic-error", body)

    def validate_schema(self, schema_name: str, instance: Any) -> None:
        """Validate against ``#/components/schemas/<schema_name>`` (for tests of templates)."""
        self._check(f"components/schemas/{schema_name}", f"/components/schemas/{_escape(schema_name)}", instance)

    def _validator(self, pointer: str) -> Any:
        validator = self._validators.get(pointer)
        if validator is None:
            validator = _Validator(
                {"$ref": f"{SPEC_URI}#{pointer}"},
                registry=self._registry,
                format_checker=self._format_checker,
            )
            self._validators[pointer] = validator
        return validator

    def _check(self, where: str, pointer: str, body: Any) -> None:
        with self._lock:
            errors = list(self._validator(pointer).iter_errors(body))
        if not errors:
            return
        error = best_match(errors)
        assert error is not None
        raise OpenAPIValidationError(self._describe(where, pointer, error, len(errors)))

    def _describe(self, where: str, pointer: str, error: ValidationError, count: int) -> str:
        deepest = error
        # best_match already descends into anyOf/oneOf contexts; report the most specific leaf.
        while deepest.context:
            nested = best_match(deepest.context)
            if nested is None:
                break
            deepest = nested
        field = _json_pointer(deepest.absolute_path)
        expected = f"{deepest.validator}: {_short(deepest.validator_value, 200)}"
        lines = [
            f"{where}: response body does not match GitHub's OpenAPI description "
            f"({OPENAPI_PACKAGE}@{self.version}, schema #{pointer})",
            f"  at {field}: {deepest.message}",
            f"  schema expects {expected} (schema path {_json_pointer(deepest.absolute_schema_path)})",
        ]
        if deepest is not error:
            lines.append(f"  (inside {error.validator} at {_json_pointer(error.absolute_path)}: {error.message[:200]})")
        if count > 1:
            lines.append(f"  ({count - 1} more error(s) at the top level)")
        return "\n".join(lines)


def main() -> int:
    try:
        path = ensure_github_openapi()
    except CliInstallError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    spec = load_spec(path)
    print(
        f"{path}\nOpenAPI {spec['openapi']}, {spec['info']['title']} {spec['info']['version']}, {len(spec['paths'])} paths"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
