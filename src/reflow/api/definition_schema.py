"""The JSON schema of a workflow definition, for the OpenAPI document.

Built from the validator's own limits (``reflow.domain.definitions``) and the registered
block types' specs, so a new block type or a changed limit shows up here by itself.
The schema never refuses what the validator accepts (``tests/api/test_openapi.py``
checks the examples and a set of bad definitions against both). Some rules need more
than a schema can say; the validator alone checks them (``SEMANTIC_RULES``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reflow.domain.configuration import FieldType
from reflow.domain.definitions import (
    BLOCK_ID_PATTERN,
    MAX_BLOCK_TIMEOUT,
    MAX_BLOCKS,
    MAX_CONFIG_FIELDS,
    MAX_ID_LENGTH,
    MAX_NAME_LENGTH,
    MAX_RETRY_ATTEMPTS,
    MAX_RETRY_DELAY,
    MAX_SIGNATURE_TOLERANCE,
    MAX_WEBHOOK_RESPOND_WAIT,
    RESERVED_BLOCK_IDS,
    Backoff,
    BlockSpec,
    SignatureEncoding,
    SignatureFormat,
    TriggerType,
)
from reflow.domain.retention import MAX_KEEP, MAX_WINDOW_SECONDS, KeepSteps
from reflow.domain.schedules import MAX_CATCH_UP, MissedRuns

SEMANTIC_RULES = (
    "block ids are unique across the whole definition, nested blocks included",
    f"at most {MAX_BLOCKS} blocks in all, nested ones included, nesting at most 16 levels",
    "templates ({{ ... }}) compile as JSONata",
    "a cron expression's fields are in range and it matches some date; a schedule's "
    "timezone is an IANA name",
    "a duration written as text is within its maximum, and retry.max is at least "
    "retry.initial",
    "the document nests at most 100 levels",
    "a webhook's verify.signed holds {body} once and {timestamp} only with a timestamp; "
    "verify.tolerance and verify.timestampHeader need a timestamp and format plain",
    "configurable field names are unique across the definition; a field's default and "
    "options are of its type (a default among the options; a secret field, a string "
    "without a default); a template reads only config.<name> fields some block declares",
)

# Regex dialects disagree on \s: Python's str.strip() also removes these separators
# (and keeps U+FEFF, which ECMA counts as space).
_SPACE = r"[\s\x1c-\x1f\x85]"
# Text with a character str.strip() keeps.
_NOT_BLANK = r"[^\s\x1c-\x1f\x85]|\ufeff"
# Numbers, or text such as 500ms, 1.5s, 1h30m: units from largest to smallest, each once
# (``reflow.domain.durations``), with the surrounding space the parser strips.
_AMOUNT = r"[0-9]+(?:\.[0-9]+)?"
_DURATION_TEXT = "".join(f"(?:{_AMOUNT}{unit})?" for unit in ("d", "h", "m", "s", "ms"))
_DURATION_PATTERN = rf"^{_SPACE}*(?=[0-9])(?:{_DURATION_TEXT}){_SPACE}*$"
# A positive duration has a non-zero digit somewhere.
_POSITIVE_DURATION_PATTERN = (
    rf"^{_SPACE}*(?=[0-9])(?=[^1-9]*[1-9])(?:{_DURATION_TEXT}){_SPACE}*$"
)
# Five fields split on whitespace; which values each field takes is the validator's part.
_CRON_PATTERN = r"^\s*[^\s]+(?:\s+[^\s]+){4}\s*$"

_BLOCK_REF = "#/components/schemas/Block"


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    # The validator reads an explicit null as "not given" wherever a key is optional.
    return {"anyOf": [schema, {"type": "null"}]}


def _name(description: str) -> dict[str, Any]:
    return {"type": "string", "minLength": 1, "maxLength": MAX_NAME_LENGTH,
            "pattern": _NOT_BLANK, "description": description}


def _duration(*, positive: bool, maximum: float | None, description: str) -> dict[str, Any]:
    number: dict[str, Any] = {"type": "number"}
    if positive:
        number["exclusiveMinimum"] = 0
    else:
        number["minimum"] = 0
    if maximum is not None:
        number["maximum"] = maximum
    text = {"type": "string",
            "pattern": _POSITIVE_DURATION_PATTERN if positive else _DURATION_PATTERN}
    return {"anyOf": [number, text, {"type": "null"}], "description": description}


def _retention() -> dict[str, Any]:
    window = _duration(positive=True, maximum=MAX_WINDOW_SECONDS,
                       description="how long its finished executions are kept (overrides "
                                   "the team's window)")
    return {"anyOf": [
        window,
        {"type": "object", "additionalProperties": False, "properties": {
            "window": window,
            "keep": _nullable({"type": "integer", "minimum": 1, "maximum": MAX_KEEP,
                               "description": "keep at most this many newest executions"}),
            "keepSteps": _nullable({"enum": [k.value for k in KeepSteps],
                                    "description": "failed: succeeded executions' step "
                                                   "data is dropped (the row is kept)"}),
        }},
    ], "description": "docs/operations.md \"Retention\""}


def _trigger() -> dict[str, Any]:
    cron = {**_name("required for schedule"), "pattern": _CRON_PATTERN}
    owned = {TriggerType.EVENT: ("event", _name("required for event")),
             TriggerType.SCHEDULE: ("cron", cron)}
    conditions = [
        {
            "if": {"properties": {"type": {"const": owner.value}}, "required": ["type"]},
            "then": {"required": [key], "properties": {key: schema}},
            "else": {"properties": {key: {"type": "null"}}},
        }
        for owner, (key, schema) in owned.items()
    ]
    schedule = _schedule()
    conditions.append({
        "if": {"properties": {"type": {"const": TriggerType.SCHEDULE.value}},
               "required": ["type"]},
        "then": {"properties": schedule},
        "else": {"properties": {key: {"type": "null"} for key in schedule}},
    })
    webhook = _webhook()
    conditions.append({
        "if": {"properties": {"type": {"const": TriggerType.WEBHOOK.value}},
               "required": ["type"]},
        "then": {"properties": webhook},
        "else": {"properties": {key: {"type": "null"} for key in webhook}},
    })
    return {
        "type": "object",
        "description": "What starts an execution: type, and event or cron for those types "
                       "(respond, verify and dedupe for webhooks).",
        "additionalProperties": False,
        "required": ["type"],
        "properties": {
            "type": {"enum": [t.value for t in TriggerType]},
            "event": {"description": "the event's name (type event only)"},
            "cron": {"description": "five fields: minute hour day-of-month month "
                                    "day-of-week (type schedule only)"},
            "timezone": {"description": "the IANA time zone the cron is read in (type "
                                        "schedule only; UTC)"},
            "missed": {"description": "what due times missed while reflow was down do "
                                      "(type schedule only; latest)"},
            "schema": _nullable({"type": "object",
                                 "description": "an example of the trigger's data"}),
            "respond": {"description": "answer a webhook call with the respond block's "
                                       "body and status (type webhook only)"},
            "verify": {"description": "check an HMAC-SHA256 signature header (type "
                                      "webhook only)"},
            "dedupe": {"description": "start one run per delivery id header (type "
                                      "webhook only)"},
        },
        "allOf": conditions,
    }


def _schedule() -> dict[str, Any]:
    """A schedule trigger's own optional keys (docs/schedules.md)."""
    return {
        "timezone": _nullable(_name("an IANA time zone such as Europe/Paris (UTC)")),
        "missed": _nullable({"enum": [m.value for m in MissedRuns],
                             "description": "latest: fire the latest missed due time once; "
                                            "skip: none; all: each (at most "
                                            f"{MAX_CATCH_UP}, the most recent)"}),
    }


def _header(description: str) -> dict[str, Any]:
    return {"type": "string", "pattern": r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$",
            "maxLength": MAX_NAME_LENGTH, "description": description}


def _webhook() -> dict[str, Any]:
    """A webhook trigger's own keys (docs/api.md "Webhooks")."""
    wait = _duration(positive=True, maximum=MAX_WEBHOOK_RESPOND_WAIT,
                     description="how long the call waits for the answer (30s)")
    verify = {
        "type": "object",
        "additionalProperties": False,
        "required": ["header", "secret"],
        "properties": {
            "header": _header("the header holding the signature"),
            "secret": {"type": "string",
                       "pattern": r"^(?:[A-Za-z_][A-Za-z0-9_]*|\s*\{\{\s*env\."
                                  r"[A-Za-z_][A-Za-z0-9_]*\s*\}\}\s*)$",
                       "description": "the key of the team's env holding the secret "
                                      "(name or {{ env.name }})"},
            "format": _nullable({"enum": [f.value for f in SignatureFormat]}),
            "encoding": _nullable({"enum": [e.value for e in SignatureEncoding]}),
            "prefix": _nullable({"type": "string",
                                 "description": "before the signature, e.g. sha256="}),
            "timestampHeader": _nullable(_header("the header holding the signed time "
                                                 "(unix seconds)")),
            "signed": _nullable({**_name("what is signed: {body}, {timestamp}"),
                                 "pattern": r"\{body\}"}),
            "tolerance": _duration(positive=True, maximum=MAX_SIGNATURE_TOLERANCE,
                                   description="how far the signed time may be from now "
                                               "(5m)"),
        },
    }
    dedupe = {"type": "object", "additionalProperties": False, "required": ["header"],
              "properties": {"header": _header("the header naming the delivery")}}
    return {
        "respond": _nullable({"anyOf": [
            {"type": "boolean"},
            {"type": "object", "additionalProperties": False,
             "properties": {"timeout": wait}},
        ]}),
        "verify": _nullable(verify),
        "dedupe": _nullable(dedupe),
    }


def _retry() -> dict[str, Any]:
    return _nullable({
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "attempts": _nullable({"type": "integer", "minimum": 1,
                                   "maximum": MAX_RETRY_ATTEMPTS,
                                   "description": "tries in all, the first included"}),
            "backoff": _nullable({"enum": [b.value for b in Backoff]}),
            "initial": _duration(positive=False, maximum=MAX_RETRY_DELAY,
                                 description="the first wait"),
            "max": _duration(positive=True, maximum=MAX_RETRY_DELAY,
                             description="the longest wait"),
        },
    })


def _with(spec: BlockSpec) -> dict[str, Any]:
    properties: dict[str, Any] = {key: {} for key in sorted(spec.optional)}
    # A required parameter must be given a value: null reads as missing.
    properties.update({key: {"not": {"type": "null"}} for key in sorted(spec.required)})
    properties.update({
        key: {"anyOf": [{"type": "array", "maxItems": MAX_BLOCKS,
                         "items": {"$ref": _BLOCK_REF}}, {"type": "null"}],
              "description": "nested blocks"}
        for key in sorted(spec.child_lists)
    })
    return {"type": "object", "additionalProperties": False, "properties": properties,
            "required": sorted(spec.required)}


def _config() -> dict[str, Any]:
    option = {"anyOf": [
        {"type": ["string", "number", "boolean", "array"]},
        {"type": "object", "additionalProperties": False, "required": ["value"],
         "properties": {"value": {}, "displayName": _nullable({"type": "string"})}},
    ]}
    field = {
        "type": "object",
        "additionalProperties": False,
        "required": ["name"],
        "properties": {
            "name": {"type": "string", "pattern": f"^{BLOCK_ID_PATTERN.pattern}$",
                     "maxLength": MAX_ID_LENGTH,
                     "description": "unique in the definition; expressions read "
                                    "config.<name>"},
            "displayName": _nullable({"type": "string"}),
            "description": _nullable({"type": "string"}),
            "type": _nullable({"enum": [t.value for t in FieldType]}),
            "required": _nullable({"type": "boolean"}),
            "default": {"description": "the value until the user sets one"},
            "options": _nullable({"type": "array", "minItems": 1, "items": option}),
            "secret": _nullable({"type": "boolean"}),
        },
    }
    return _nullable({"type": "array", "maxItems": MAX_CONFIG_FIELDS, "items": field,
                      "description": "fields the installing user sets (headless "
                                    "installation)"})


def _block(type_name: str, spec: BlockSpec) -> dict[str, Any]:
    params = _with(spec)
    required = ["id", "type"]
    if spec.required:
        required.append("with")
    else:
        params = _nullable(params)
    return {
        "type": "object",
        "title": f"{type_name} block",
        "additionalProperties": False,
        "required": required,
        "properties": {
            "id": {
                "type": "string",
                "pattern": f"^{BLOCK_ID_PATTERN.pattern}$",
                "maxLength": MAX_ID_LENGTH,
                "not": {"enum": sorted(RESERVED_BLOCK_IDS)},
                "description": "unique in the definition; expressions read the output by it",
            },
            "type": {"const": type_name},
            "with": params,
            "retry": _retry(),
            "timeout": _duration(positive=True, maximum=MAX_BLOCK_TIMEOUT,
                                 description="per attempt"),
            "config": _config(),
        },
    }


def definition_schemas(block_specs: Mapping[str, BlockSpec]) -> dict[str, Any]:
    """``WorkflowDefinition`` and ``Block`` component schemas for these block types."""
    rules = "; ".join(SEMANTIC_RULES)
    return {
        "WorkflowDefinition": {
            "type": "object",
            "description": "A workflow definition (docs/workflows.md). The validator also "
                           f"checks what a schema cannot say: {rules}.",
            "additionalProperties": False,
            "required": ["name", "trigger", "blocks"],
            "properties": {
                "name": _name("unique in the team"),
                "description": _nullable({"type": "string"}),
                "integration": _nullable(_name("the integration it belongs to")),
                "trigger": _trigger(),
                "blocks": {"type": "array", "minItems": 1, "maxItems": MAX_BLOCKS,
                           "items": {"$ref": _BLOCK_REF}},
                "timeout": _duration(positive=True, maximum=None,
                                     description="for the whole execution"),
                "retention": _retention(),
            },
        },
        "Block": {
            "description": "One step; `with` holds its type's parameters.",
            "oneOf": [_block(name, spec) for name, spec in sorted(block_specs.items())],
        },
    }
