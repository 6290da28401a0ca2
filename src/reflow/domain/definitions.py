"""Workflow definitions: parse YAML or JSON text, validate it, and hold it as frozen data.

The flow is ``parse_document(text)`` -> ``validate_definition(doc, block_specs)`` ->
``WorkflowDefinition``. Validation reports every problem at once, each with a path such as
``blocks[1].with.then[0].id``, so a user fixes a file in one round trip. Templates under
``with`` are kept as written; compiling them is the caller's job (see ``reflow.expressions``).
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeAlias, TypeVar

import yaml

try:
    from yaml import CSafeLoader as _BaseLoader
except ImportError:  # PyYAML built without libyaml: same behaviour, slower
    from yaml import SafeLoader as _BaseLoader  # type: ignore[assignment]

from reflow.domain.configuration import ConfigField, FieldOption, FieldType, type_problem
from reflow.domain.durations import parse_duration
from reflow.domain.retention import MAX_KEEP, MAX_WINDOW_SECONDS, KeepSteps, Retention
from reflow.domain.schedules import (
    DEFAULT_TIMEZONE,
    MissedRuns,
    Schedule,
    cron_problem,
    timezone_problem,
)
from reflow.errors import DefinitionInvalid, Problem

MAX_NAME_LENGTH = 200
MAX_ID_LENGTH = 64
MAX_BLOCKS = 500
MAX_BLOCK_NESTING = 16
MAX_RETRY_ATTEMPTS = 20
MAX_BLOCK_TIMEOUT = 3_600.0
MAX_RETRY_DELAY = 86_400.0
# Beyond this depth a document is an attack or a mistake, never a workflow; the limit also
# keeps every walk below far from Python's recursion limit.
MAX_DOCUMENT_DEPTH = 100
MAX_ALIASES = 100
# Aliases may grow a YAML document by this many nodes at most (billion-laughs guard).
MAX_ALIAS_EXPANSION = 100_000
# A pathological document can yield thousands of problems; past this, the rest is noise.
MAX_PROBLEMS_SHOWN = 100

BLOCK_ID_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
RESERVED_BLOCK_IDS: Mapping[str, str] = {
    "trigger": "expressions use it for the trigger's data",
    "execution": "expressions use it for the execution's details",
    "env": "expressions use it for the environment",
    "config": "expressions use it for the installation's configured fields",
    # A block's output is read as ``<id>.field``; these words would parse as JSONata syntax.
    "and": "it is a JSONata operator",
    "or": "it is a JSONata operator",
    "in": "it is a JSONata operator",
    "true": "it is a JSONata literal",
    "false": "it is a JSONata literal",
    "null": "it is a JSONata literal",
    "function": "it is a JSONata keyword",
}


class TriggerType(StrEnum):
    """What starts an execution of the workflow."""

    API = "api"
    EVENT = "event"
    WEBHOOK = "webhook"
    SCHEDULE = "schedule"


class Backoff(StrEnum):
    """How the wait between retries grows."""

    FIXED = "fixed"
    EXPONENTIAL = "exponential"


# -- webhook triggers (docs/api.md "Webhooks") --

MAX_WEBHOOK_RESPOND_WAIT = 300.0
DEFAULT_WEBHOOK_RESPOND_WAIT = 30.0
DEFAULT_SIGNATURE_TOLERANCE = 300.0
MAX_SIGNATURE_TOLERANCE = 86_400.0
# An HTTP header name (RFC 9110 token).
HEADER_NAME_PATTERN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# verify.secret names a key of the team's env: ``shopSecret`` or ``{{ env.shopSecret }}``.
_ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ENV_TEMPLATE = re.compile(r"\{\{\s*env\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_SIGNED_PLACEHOLDER = re.compile(r"\{(\w*)\}")


class SignatureFormat(StrEnum):
    """How a signature header is laid out."""

    PLAIN = "plain"  # the signature alone, after an optional prefix (GitHub, Shopify)
    STRIPE = "stripe"  # t=<unix seconds>,v1=<signature>[,v1=...] (Stripe)


class SignatureEncoding(StrEnum):
    """How the HMAC-SHA256 digest is written in the header."""

    HEX = "hex"
    BASE64 = "base64"


@dataclass(frozen=True, slots=True)
class WebhookVerify:
    """A webhook's HMAC-SHA256 signature check; the secret is a key of the team's env."""

    header: str
    secret: str  # the env key's name, never the secret itself
    format: SignatureFormat = SignatureFormat.PLAIN
    encoding: SignatureEncoding = SignatureEncoding.HEX
    prefix: str = ""
    timestamp_header: str | None = None
    # What is signed: ``{body}`` is the raw body, ``{timestamp}`` the signed time.
    signed: str = "{body}"
    tolerance: float = DEFAULT_SIGNATURE_TOLERANCE  # seconds either side of now

    @property
    def timed(self) -> bool:
        """Whether the signature carries a time that must be within the tolerance."""
        return self.format is SignatureFormat.STRIPE or self.timestamp_header is not None


@dataclass(frozen=True, slots=True)
class WebhookOptions:
    """What a webhook trigger asks beyond starting a run from the request."""

    respond: bool = False  # answer with the respond block's body and status
    respond_wait: float = DEFAULT_WEBHOOK_RESPOND_WAIT
    verify: WebhookVerify | None = None
    dedupe_header: str | None = None  # the header naming a delivery, seen once


@dataclass(frozen=True, slots=True)
class Trigger:
    """The definition's trigger; ``event`` is set for event triggers, ``cron`` for schedules,
    ``webhook`` for webhook triggers."""

    type: TriggerType
    event: str | None = None
    cron: str | None = None
    schema: Mapping[str, Any] | None = None
    webhook: WebhookOptions | None = None
    schedule: Schedule | None = None  # cron, time zone and missed-runs policy


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often a block is tried (``attempts`` counts the first try) and how long between."""

    attempts: int = 1
    backoff: Backoff = Backoff.EXPONENTIAL
    initial: float = 1.0
    max_delay: float = 60.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (1 = after the first failure)."""
        if attempt < 1:
            raise ValueError(f"retry numbers start at 1, got {attempt}")
        if self.backoff is Backoff.FIXED:
            return min(self.initial, self.max_delay)
        # Past 2**62 every realistic delay is capped anyway; this avoids float overflow.
        exponent = min(attempt - 1, 62)
        return min(self.initial * 2.0**exponent, self.max_delay)


@dataclass(frozen=True, slots=True)
class BlockDef:
    """One block of a definition; ``params`` is its ``with`` minus nested block lists."""

    id: str
    type: str
    params: Mapping[str, Any] = field(default_factory=dict)
    children: Mapping[str, tuple[BlockDef, ...]] = field(default_factory=dict)
    retry: RetryPolicy = RetryPolicy()
    timeout: float | None = None
    path: str = ""
    # Fields the installing user sets (headless installation), read as ``config.<name>``.
    config: tuple[ConfigField, ...] = ()


@dataclass(frozen=True, slots=True)
class WorkflowDefinition:
    """A validated definition; ``raw`` is the parsed document, stored as canonical JSON."""

    name: str
    description: str
    integration: str | None
    trigger: Trigger
    blocks: tuple[BlockDef, ...]
    timeout: float | None = None
    raw: Mapping[str, Any] = field(default_factory=dict)
    # The top-level ``retention``: how long its executions are kept (domain/retention.py).
    retention: Retention = field(default_factory=Retention)
    _by_id: Mapping[str, BlockDef] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        index: dict[str, BlockDef] = {}
        for block in _depth_first(self.blocks):
            index.setdefault(block.id, block)
        # Frozen, so the lookup index is set the way dataclasses set fields themselves.
        object.__setattr__(self, "_by_id", index)

    def iter_blocks(self) -> Iterator[BlockDef]:
        """Yield every block, nested ones included, depth-first in document order."""
        return _depth_first(self.blocks)

    def block(self, block_id: str) -> BlockDef:
        """Return the block with this id wherever it is nested; KeyError if there is none."""
        return self._by_id[block_id]

    @property
    def config_fields(self) -> tuple[ConfigField, ...]:
        """Every configurable field its blocks declare, in document order."""
        return tuple(f for block in _depth_first(self.blocks) for f in block.config)


def _depth_first(blocks: tuple[BlockDef, ...]) -> Iterator[BlockDef]:
    for block in blocks:
        yield block
        for children in block.children.values():
            yield from _depth_first(children)


@dataclass(frozen=True, slots=True)
class BlockSpec:
    """What a block type's ``with`` takes; ``child_lists`` keys hold nested block lists."""

    required: frozenset[str] = frozenset()
    optional: frozenset[str] = frozenset()
    child_lists: frozenset[str] = frozenset()
    # Checks the block's own parameters as written (literal values; a template is only
    # known when it runs): ``(key, reason)`` for each problem, listed with the others.
    check: Callable[[Mapping[str, Any]], list[tuple[str, str]]] | None = None

    @property
    def allowed(self) -> frozenset[str]:
        """Every key ``with`` may hold."""
        return self.required | self.optional | self.child_lists


BlockRules: TypeAlias = Mapping[str, BlockSpec]


def canonical_json(doc: Any) -> bytes:
    """Serialize a validated document the same way every time (sorted keys, compact, UTF-8)."""
    text = json.dumps(
        doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return text.encode("utf-8")


# --- parsing ------------------------------------------------------------------------------

_YAML_BOOL = "tag:yaml.org,2002:bool"
_YAML_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_YAML_MERGE = "tag:yaml.org,2002:merge"


class _DefinitionLoader(_BaseLoader):
    """A safe loader that keeps ``2024-01-01`` and ``no`` as the strings the user typed.

    YAML 1.1 turns them into a date (which JSON cannot store) and ``False`` (the "Norway
    problem"); definitions want YAML 1.2 behaviour: only true/false are booleans.
    """


_DefinitionLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_YAML_BOOL, _YAML_TIMESTAMP)]
    for first, resolvers in _BaseLoader.yaml_implicit_resolvers.items()
}
_DefinitionLoader.add_implicit_resolver(
    _YAML_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def parse_document(text: str | bytes, content_type: str | None = None) -> Any:
    """Parse definition text (JSON or YAML) into plain data; DefinitionInvalid on bad syntax."""
    source = _decode(text)
    says_json = content_type is not None and "json" in content_type.lower()
    if says_json or source.lstrip().startswith("{"):
        try:
            return _parse_json(source)
        except DefinitionInvalid:
            # "{a: 1}" is valid YAML, so only a declared JSON body must be JSON.
            if says_json:
                raise
    return _parse_yaml(source)


def _decode(text: str | bytes) -> str:
    if isinstance(text, str):
        return text.removeprefix("\ufeff")
    try:
        return text.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _invalid("", f"the text is not UTF-8 (byte {exc.start})") from None


def _parse_json(source: str) -> Any:
    duplicates: list[tuple[dict[str, Any], str]] = []

    def collect_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj: dict[str, Any] = {}
        for key, value in pairs:
            if key in obj:
                duplicates.append((obj, key))
            obj[key] = value
        return obj

    try:
        doc = json.loads(source, object_pairs_hook=collect_pairs, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise _invalid(
            "", f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None
    except ValueError as exc:
        raise _invalid("", f"invalid JSON: {exc}") from None
    except RecursionError:
        raise _invalid("", _too_deep()) from None
    if duplicates:
        paths = {id(value): path for path, value, _ in _walk(doc) if isinstance(value, dict)}
        problems = [
            Problem(_key_path(paths.get(id(obj), ""), key), "duplicate key")
            for obj, key in duplicates
        ]
        raise DefinitionInvalid(_capped(problems))
    return doc


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _parse_yaml(source: str) -> Any:
    # safe_load would build aliases before we could count them; composing the node graph
    # first lets the alias-bomb check run on the graph, then the safe constructor builds it.
    loader = _DefinitionLoader(source)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        problems = _YamlGraphCheck().problems(node)
        if problems:
            raise DefinitionInvalid(_capped(problems))
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise _invalid("", _describe_yaml_error(exc)) from None
    except ValueError as exc:  # e.g. an integer past Python's digit limit
        raise _invalid("", f"invalid YAML: {exc}") from None
    except RecursionError:
        raise _invalid("", _too_deep()) from None
    finally:
        loader.dispose()


def _describe_yaml_error(exc: yaml.YAMLError) -> str:
    if not isinstance(exc, yaml.MarkedYAMLError) or exc.problem_mark is None:
        return f"invalid YAML: {exc}"
    mark = exc.problem_mark
    reason = f"invalid YAML at line {mark.line + 1}, column {mark.column + 1}: {exc.problem}"
    if exc.context and exc.context_mark is not None:
        reason += f" ({exc.context} at line {exc.context_mark.line + 1})"
    return reason


class _YamlGraphCheck:
    """Measures a composed YAML graph as if aliases were expanded, without expanding them."""

    def __init__(self) -> None:
        self._found: list[Problem] = []
        self._sizes: dict[int, int] = {}
        self._open: set[int] = set()
        self._aliases = 0

    def problems(self, root: yaml.Node) -> list[Problem]:
        expanded = self._size(root, "", 0)
        if self._aliases > MAX_ALIASES:
            self._found.append(
                Problem("", f"too many YAML aliases: {self._aliases} (at most {MAX_ALIASES})")
            )
        if expanded - len(self._sizes) > MAX_ALIAS_EXPANSION:
            self._found.append(
                Problem(
                    "",
                    f"YAML aliases expand the document to {expanded} "
                    f"values; refused as an alias bomb",
                )
            )
        return self._found

    def _size(self, node: yaml.Node, path: str, depth: int) -> int:
        key = id(node)
        if key in self._open:
            self._found.append(Problem(path, "alias refers to itself; recursion is not allowed"))
            return 0
        if key in self._sizes:
            self._aliases += 1
            return self._sizes[key]
        if depth >= MAX_DOCUMENT_DEPTH:
            self._found.append(Problem(path, _too_deep()))
            return 1
        self._open.add(key)
        size = 1 + self._children_size(node, path, depth + 1)
        self._open.discard(key)
        self._sizes[key] = size
        return size

    def _children_size(self, node: yaml.Node, path: str, depth: int) -> int:
        if isinstance(node, yaml.SequenceNode):
            return sum(self._size(item, f"{path}[{i}]", depth) for i, item in enumerate(node.value))
        if not isinstance(node, yaml.MappingNode):
            return 0
        seen: set[tuple[str, str]] = set()
        size = 0
        for key_node, value_node in node.value:
            key_path = _key_path(path, key_node.value) if _is_plain_key(key_node) else path
            if _is_plain_key(key_node):
                identity = (key_node.tag, key_node.value)
                if identity in seen:
                    self._found.append(Problem(key_path, "duplicate key"))
                seen.add(identity)
            size += self._size(key_node, path, depth) + self._size(value_node, key_path, depth)
        return size


def _is_plain_key(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag != _YAML_MERGE


# --- validation ---------------------------------------------------------------------------

_TOP_KEYS = ("name", "description", "integration", "trigger", "blocks", "timeout",
             "retention")
_RETENTION_KEYS = ("window", "keep", "keepSteps")
_TRIGGER_KEYS = ("type", "event", "cron", "timezone", "missed", "schema", "respond", "verify",
                 "dedupe")
_WEBHOOK_KEYS = ("respond", "verify", "dedupe")
_VERIFY_KEYS = ("header", "secret", "format", "encoding", "prefix", "timestampHeader",
                "signed", "tolerance")
_BLOCK_KEYS = ("id", "type", "with", "retry", "timeout", "config")
_FIELD_KEYS = ("name", "displayName", "type", "required", "default", "options", "secret",
               "description")
MAX_CONFIG_FIELDS = 100
# ``config.name`` inside a template, not ``order.config.name``.
_CONFIG_REFERENCE = re.compile(r"(?<![\w.$])config\.([A-Za-z_][A-Za-z0-9_]*)")
_TEMPLATE_PART = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_RETRY_KEYS = ("attempts", "backoff", "initial", "max")
_DEFAULT_RETRY = RetryPolicy()

_E = TypeVar("_E", bound=StrEnum)


ParamsCheck = Callable[[Mapping[str, Any], str], list[Problem]]


def validate_definition(
    doc: Any, block_specs: Mapping[str, BlockSpec], check_params: ParamsCheck | None = None
) -> WorkflowDefinition:
    """Check a parsed document against the rules and block specs; DefinitionInvalid lists all.

    ``check_params`` sees each block's own parameters with their path (``blocks[1].with``),
    e.g. to compile templates, so its problems are listed with the structural ones.
    """
    if not isinstance(doc, dict):
        raise _invalid("", "a definition must be a mapping with name, trigger and blocks")
    validator = _Validator(block_specs, check_params)
    validator.problems.extend(_json_problems(doc))
    definition = validator.workflow(doc)
    if validator.problems:
        raise DefinitionInvalid(_capped(validator.problems))
    return definition


class _Validator:
    """Walks one document, collecting problems; parts return defaults where they fail."""

    def __init__(
        self, block_specs: Mapping[str, BlockSpec], check_params: ParamsCheck | None
    ) -> None:
        self.problems: list[Problem] = []
        self._specs = block_specs
        self._check_params = check_params
        self._id_paths: dict[str, str] = {}
        self._block_count = 0
        self._field_paths: dict[str, str] = {}

    def problem(self, path: str, reason: str) -> None:
        self.problems.append(Problem(path, reason))

    def workflow(self, doc: dict[str, Any]) -> WorkflowDefinition:
        self.unknown_keys(doc, _TOP_KEYS, "")
        name = self.text(doc.get("name"), "name", required=True) or ""
        description = self.text(doc.get("description"), "description", max_length=None) or ""
        integration = self.text(doc.get("integration"), "integration")
        trigger = self.trigger(doc.get("trigger"), "trigger")
        blocks = self.top_blocks(doc.get("blocks"), "blocks")
        timeout = self.duration(doc.get("timeout"), "timeout", positive=True)
        retention = self.retention(doc.get("retention"), "retention")
        self.config_references(blocks)
        return WorkflowDefinition(
            name=name,
            description=description,
            integration=integration,
            trigger=trigger,
            blocks=blocks,
            timeout=timeout,
            raw=doc,
            retention=retention,
        )

    def retention(self, value: Any, path: str) -> Retention:
        """``retention: 3d``, or ``{window, keep, keepSteps}`` (each optional)."""
        if value is None:
            return Retention()
        if not isinstance(value, dict):
            window = self.duration(value, path, positive=True, maximum=MAX_WINDOW_SECONDS)
            return Retention(window=window)
        self.unknown_keys(value, _RETENTION_KEYS, path)
        window = self.duration(value.get("window"), f"{path}.window", positive=True,
                               maximum=MAX_WINDOW_SECONDS)
        keep = value.get("keep")
        if keep is not None and (isinstance(keep, bool) or not isinstance(keep, int)
                                 or not 1 <= keep <= MAX_KEEP):
            self.problem(f"{path}.keep", f"must be a whole number from 1 to {MAX_KEEP:,}")
            keep = None
        steps = value.get("keepSteps")
        keep_steps = KeepSteps.ALL if steps is None else (
            self.choice(steps, KeepSteps, f"{path}.keepSteps") or KeepSteps.ALL)
        return Retention(window, keep, keep_steps)

    # -- generic parts --

    def unknown_keys(self, mapping: Mapping[Any, Any], allowed: Collection[str], path: str) -> None:
        for key in mapping:
            if key not in allowed:
                self.problem(_key_path(path, key), "unknown key" + _suggest(str(key), allowed))

    def mapping(self, value: Any, path: str, what: str) -> dict[str, Any] | None:
        if isinstance(value, dict):
            return value
        self.problem(path, f"must be a mapping ({what})")
        return None

    def text(
        self,
        value: Any,
        path: str,
        *,
        required: bool = False,
        max_length: int | None = MAX_NAME_LENGTH,
    ) -> str | None:
        """A non-empty string (any string when ``max_length`` is None), else None."""
        if value is None:
            if required:
                self.problem(path, "required")
            return None
        if not isinstance(value, str):
            self.problem(path, f"must be a string, not {_kind(value)}")
        elif max_length is None:
            return value
        elif not value.strip():
            self.problem(path, "must not be empty")
        elif len(value) > max_length:
            self.problem(path, f"must be at most {max_length} characters")
        else:
            return value
        return None

    def choice(self, value: Any, enum: type[_E], path: str) -> _E | None:
        choices = [member.value for member in enum]
        if isinstance(value, str) and value in choices:
            return enum(value)
        if value is None:
            self.problem(path, "required")
            return None
        reason = f"must be one of {', '.join(choices)}"
        match = _close_match(value, choices) if isinstance(value, str) else None
        self.problem(path, reason if match is None else f"{reason}; did you mean '{match}'?")
        return None

    def duration(
        self, value: Any, path: str, *, positive: bool = False, maximum: float | None = None
    ) -> float | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            self.problem(
                path, f"must be a duration such as 10s, 500ms or 1h30m, not {_kind(value)}"
            )
            return None
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            self.problem(path, str(exc))
            return None
        if positive and seconds == 0:
            self.problem(path, "must be greater than 0")
        elif maximum is not None and seconds > maximum:
            self.problem(path, f"must be at most {maximum:g} seconds")
        else:
            return seconds
        return None

    # -- trigger --

    def trigger(self, value: Any, path: str) -> Trigger:
        if value is None:
            self.problem(path, "required")
            return Trigger(TriggerType.API)
        trigger = self.mapping(value, path, "type and, per type, event or cron")
        if trigger is None:
            return Trigger(TriggerType.API)
        self.unknown_keys(trigger, _TRIGGER_KEYS, path)
        kind = self.choice(trigger.get("type"), TriggerType, f"{path}.type")
        event = self.trigger_text(trigger, "event", TriggerType.EVENT, kind, path)
        cron = self.trigger_text(trigger, "cron", TriggerType.SCHEDULE, kind, path)
        schedule = self.schedule(trigger, kind, cron, path)
        schema = trigger.get("schema")
        if schema is not None:
            schema = self.mapping(schema, f"{path}.schema", "an example of the trigger data")
        webhook = self.webhook(trigger, kind, path)
        return Trigger(kind or TriggerType.API, event=event, cron=cron, schema=schema,
                       webhook=webhook, schedule=schedule)

    def trigger_text(
        self,
        trigger: Mapping[str, Any],
        key: str,
        owner: TriggerType,
        kind: TriggerType | None,
        path: str,
        *,
        required: bool = True,
    ) -> str | None:
        where = f"{path}.{key}"
        if kind is owner:
            return self.text(trigger.get(key), where, required=required)
        if kind is not None and trigger.get(key) is not None:
            self.problem(where, f"only allowed when type is '{owner}'")
        return None

    # -- schedule trigger --

    def schedule(
        self, trigger: Mapping[str, Any], kind: TriggerType | None, cron: str | None, path: str
    ) -> Schedule | None:
        timezone = self.trigger_text(trigger, "timezone", TriggerType.SCHEDULE, kind, path,
                                     required=False)
        missed = None
        if trigger.get("missed") is not None:
            if kind is TriggerType.SCHEDULE:
                missed = self.choice(trigger["missed"], MissedRuns, f"{path}.missed")
            elif kind is not None:
                self.problem(f"{path}.missed", "only allowed when type is 'schedule'")
        if kind is not TriggerType.SCHEDULE or cron is None:
            return None
        valid = True
        if (reason := cron_problem(cron)) is not None:
            self.problem(f"{path}.cron", reason)
            valid = False
        if timezone is not None and (reason := timezone_problem(timezone)) is not None:
            self.problem(f"{path}.timezone", reason)
            valid = False
        if not valid:
            return None
        return Schedule(cron, timezone or DEFAULT_TIMEZONE, missed or MissedRuns.LATEST)

    # -- webhook trigger --

    def webhook(
        self, trigger: Mapping[str, Any], kind: TriggerType | None, path: str
    ) -> WebhookOptions | None:
        if kind is not TriggerType.WEBHOOK:
            for key in _WEBHOOK_KEYS:
                if kind is not None and trigger.get(key) is not None:
                    self.problem(f"{path}.{key}", "only allowed when type is 'webhook'")
            return None
        respond, wait = self.webhook_respond(trigger.get("respond"), f"{path}.respond")
        verify = None
        if trigger.get("verify") is not None:
            verify = self.webhook_verify(trigger["verify"], f"{path}.verify")
        dedupe = None
        if trigger.get("dedupe") is not None:
            where = f"{path}.dedupe"
            found = self.mapping(trigger["dedupe"], where, "header: the delivery id's header")
            if found is not None:
                self.unknown_keys(found, ("header",), where)
                dedupe = self.header_name(found.get("header"), f"{where}.header",
                                          required=True)
        return WebhookOptions(respond, wait, verify, dedupe)

    def webhook_respond(self, value: Any, path: str) -> tuple[bool, float]:
        if value is None or isinstance(value, bool):
            return bool(value), DEFAULT_WEBHOOK_RESPOND_WAIT
        found = self.mapping(value, path, "true, or timeout: how long to wait for the answer")
        if found is None:
            return False, DEFAULT_WEBHOOK_RESPOND_WAIT
        self.unknown_keys(found, ("timeout",), path)
        wait = self.duration(found.get("timeout"), f"{path}.timeout", positive=True,
                             maximum=MAX_WEBHOOK_RESPOND_WAIT)
        return True, DEFAULT_WEBHOOK_RESPOND_WAIT if wait is None else wait

    def webhook_verify(self, value: Any, path: str) -> WebhookVerify | None:
        found = self.mapping(value, path, "header and secret, the signature's header and "
                                          "the team env key of its secret")
        if found is None:
            return None
        self.unknown_keys(found, _VERIFY_KEYS, path)
        header = self.header_name(found.get("header"), f"{path}.header", required=True)
        secret = self.env_key(found.get("secret"), f"{path}.secret")
        form = SignatureFormat.PLAIN
        if found.get("format") is not None:
            form = self.choice(found["format"], SignatureFormat, f"{path}.format") or form
        encoding = SignatureEncoding.HEX
        if found.get("encoding") is not None:
            encoding = (self.choice(found["encoding"], SignatureEncoding, f"{path}.encoding")
                        or encoding)
        prefix = found.get("prefix")
        if prefix is not None and not isinstance(prefix, str):
            self.problem(f"{path}.prefix", f"must be a string, not {_kind(prefix)}")
        elif prefix is not None and form is SignatureFormat.STRIPE:
            self.problem(f"{path}.prefix", "not allowed with format 'stripe' (its header "
                                           "names the signature v1=)")
        timestamp_header = self.header_name(found.get("timestampHeader"),
                                            f"{path}.timestampHeader")
        if timestamp_header is not None and form is SignatureFormat.STRIPE:
            self.problem(f"{path}.timestampHeader",
                         "not allowed with format 'stripe' (its header holds t=)")
        timed = form is SignatureFormat.STRIPE or timestamp_header is not None
        signed = self.signed(found.get("signed"), f"{path}.signed", timed=timed)
        tolerance = self.duration(found.get("tolerance"), f"{path}.tolerance", positive=True,
                                  maximum=MAX_SIGNATURE_TOLERANCE)
        if tolerance is not None and not timed:
            self.problem(f"{path}.tolerance",
                         "only allowed with timestampHeader or format 'stripe'")
        if header is None or secret is None:
            return None
        return WebhookVerify(
            header, secret, form, encoding, prefix if isinstance(prefix, str) else "",
            timestamp_header, signed,
            DEFAULT_SIGNATURE_TOLERANCE if tolerance is None else tolerance,
        )

    def header_name(self, value: Any, path: str, *, required: bool = False) -> str | None:
        name = self.text(value, path, required=required)
        if name is not None and not HEADER_NAME_PATTERN.fullmatch(name):
            self.problem(path, "must be an HTTP header name (letters, digits, - and _)")
            return None
        return name

    def env_key(self, value: Any, path: str) -> str | None:
        text = self.text(value, path, required=True)
        if text is None:
            return None
        if _ENV_KEY.fullmatch(text):
            return text
        template = _ENV_TEMPLATE.fullmatch(text.strip())
        if template is not None:
            return template.group(1)
        self.problem(path, "must name a key of the team's env, e.g. shopSecret or "
                           "'{{ env.shopSecret }}'; the secret itself never goes in a "
                           "definition")
        return None

    def signed(self, value: Any, path: str, *, timed: bool) -> str:
        default = "{timestamp}.{body}" if timed else "{body}"
        text = self.text(value, path)
        if text is None:
            return default
        names = _SIGNED_PLACEHOLDER.findall(text)
        unknown = sorted({n for n in names if n not in ("body", "timestamp")})
        if unknown:
            self.problem(path, f"unknown placeholder {{{unknown[0]}}}: only {{body}} and "
                               "{timestamp}")
        elif names.count("body") != 1:
            self.problem(path, "must hold {body} exactly once")
        elif "timestamp" in names and not timed:
            self.problem(path, "{timestamp} needs timestampHeader or format 'stripe'")
        else:
            return text
        return default

    # -- blocks --

    def top_blocks(self, value: Any, path: str) -> tuple[BlockDef, ...]:
        if value is None or value == []:
            self.problem(path, "required: a list of at least one block")
            return ()
        blocks = self.block_list(value, path, depth=0)
        if self._block_count > MAX_BLOCKS:
            self.problem(
                path,
                f"too many blocks: {self._block_count}, nested ones included "
                f"(at most {MAX_BLOCKS})",
            )
        return blocks

    def block_list(self, value: Any, path: str, depth: int) -> tuple[BlockDef, ...]:
        if not isinstance(value, list):
            self.problem(path, f"must be a list of blocks, not {_kind(value)}")
            return ()
        found = (self.block(item, f"{path}[{i}]", depth) for i, item in enumerate(value))
        return tuple(block for block in found if block is not None)

    def block(self, value: Any, path: str, depth: int) -> BlockDef | None:
        self._block_count += 1
        if depth > MAX_BLOCK_NESTING:
            self.problem(
                path, f"nested too deeply (blocks nest at most {MAX_BLOCK_NESTING} levels)"
            )
            return None
        block = self.mapping(value, path, "a block with id, type and with")
        if block is None:
            return None
        self.unknown_keys(block, _BLOCK_KEYS, path)
        block_id = self.block_id(block.get("id"), f"{path}.id")
        type_name, spec = self.block_type(block.get("type"), f"{path}.type")
        params, children = self.block_with(block.get("with"), spec, f"{path}.with", depth)
        retry = self.retry(block.get("retry"), f"{path}.retry")
        timeout = self.duration(
            block.get("timeout"), f"{path}.timeout", positive=True, maximum=MAX_BLOCK_TIMEOUT
        )
        config = self.config_fields(block.get("config"), f"{path}.config", block_id)
        return BlockDef(
            id=block_id,
            type=type_name,
            params=params,
            children=children,
            retry=retry,
            timeout=timeout,
            path=path,
            config=config,
        )

    def block_id(self, value: Any, path: str) -> str:
        block_id = self.text(value, path, required=True)
        if block_id is None:
            return ""
        if reason := _block_id_problem(block_id):
            self.problem(path, reason)
        elif block_id in self._id_paths:
            self.problem(
                path, f"duplicate id '{block_id}' (first used at {self._id_paths[block_id]})"
            )
        else:
            self._id_paths[block_id] = path
        return block_id

    def block_type(self, value: Any, path: str) -> tuple[str, BlockSpec | None]:
        type_name = self.text(value, path, required=True)
        if type_name is None:
            return "", None
        spec = self._specs.get(type_name)
        if spec is None:
            hint = _suggest(type_name, self._specs)
            self.problem(path, f"unknown block type '{type_name}'{hint}")
        return type_name, spec

    def block_with(
        self, value: Any, spec: BlockSpec | None, path: str, depth: int
    ) -> tuple[dict[str, Any], dict[str, tuple[BlockDef, ...]]]:
        params = {} if value is None else self.mapping(value, path, "the block's parameters")
        if params is None or spec is None:
            return params or {}, {}
        self.unknown_keys(params, spec.allowed, path)
        for key in sorted(spec.required):
            if params.get(key) is None:
                self.problem(_key_path(path, key), "required")
        # Children follow the document's order, so iteration reads like the file.
        child_keys = [key for key in params if key in spec.child_lists]
        child_keys += sorted(spec.child_lists - set(child_keys))
        children = {
            key: self.block_list(_or_empty(params.get(key)), _key_path(path, key), depth + 1)
            for key in child_keys
        }
        own = {key: item for key, item in params.items() if key not in spec.child_lists}
        if spec.check is not None:
            self.problems.extend(Problem(_key_path(path, key), reason)
                                 for key, reason in spec.check(own))
        if self._check_params is not None:
            self.problems.extend(self._check_params(own, path))
        return own, children

    def retry(self, value: Any, path: str) -> RetryPolicy:
        if value is None:
            return _DEFAULT_RETRY
        retry = self.mapping(value, path, "attempts, backoff, initial, max")
        if retry is None:
            return _DEFAULT_RETRY
        self.unknown_keys(retry, _RETRY_KEYS, path)
        attempts = self.attempts(retry.get("attempts"), f"{path}.attempts")
        backoff = _DEFAULT_RETRY.backoff
        if retry.get("backoff") is not None:
            backoff = self.choice(retry["backoff"], Backoff, f"{path}.backoff") or backoff
        initial = self.duration(retry.get("initial"), f"{path}.initial", maximum=MAX_RETRY_DELAY)
        initial = _DEFAULT_RETRY.initial if initial is None else initial
        cap = self.duration(retry.get("max"), f"{path}.max", positive=True, maximum=MAX_RETRY_DELAY)
        if cap is not None and cap < initial:
            self.problem(f"{path}.max", f"must be at least initial ({initial:g} seconds)")
        # Without an explicit max, a long initial delay is honoured, not silently cut to 60s.
        cap = max(_DEFAULT_RETRY.max_delay, initial) if cap is None else cap
        return RetryPolicy(attempts=attempts, backoff=backoff, initial=initial, max_delay=cap)

    def attempts(self, value: Any, path: str) -> int:
        if value is None:
            return _DEFAULT_RETRY.attempts
        if isinstance(value, int) and not isinstance(value, bool):
            if 1 <= value <= MAX_RETRY_ATTEMPTS:
                return value
        self.problem(
            path, f"must be a whole number from 1 to {MAX_RETRY_ATTEMPTS} (the first try included)"
        )
        return _DEFAULT_RETRY.attempts


    # -- configurable fields (docs/workflows.md "Configurable fields") --

    def config_fields(self, value: Any, path: str, block_id: str) -> tuple[ConfigField, ...]:
        if value is None:
            return ()
        if not isinstance(value, list):
            self.problem(path, f"must be a list of fields (name, type, ...), not {_kind(value)}")
            return ()
        found = (self.config_field(item, f"{path}[{i}]", block_id)
                 for i, item in enumerate(value))
        fields = tuple(f for f in found if f is not None)
        if len(self._field_paths) > MAX_CONFIG_FIELDS:
            self.problem(path, f"too many configurable fields: {len(self._field_paths)} "
                               f"in the workflow (at most {MAX_CONFIG_FIELDS})")
        return fields

    def config_field(self, value: Any, path: str, block_id: str) -> ConfigField | None:
        found = self.mapping(value, path, "a field: name, displayName, type, required, "
                                          "default, options, secret")
        if found is None:
            return None
        self.unknown_keys(found, _FIELD_KEYS, path)
        name = self.field_name(found.get("name"), f"{path}.name")
        display_name = self.text(found.get("displayName"), f"{path}.displayName")
        description = self.text(found.get("description"), f"{path}.description",
                                max_length=None)
        field_type = FieldType.STRING
        if found.get("type") is not None:
            field_type = self.choice(found["type"], FieldType, f"{path}.type") or field_type
        required = self.flag(found.get("required"), f"{path}.required", default=True)
        secret = self.flag(found.get("secret"), f"{path}.secret", default=False)
        if secret and field_type is not FieldType.STRING:
            self.problem(f"{path}.secret", "only a string field can be secret")
        options = self.field_options(found.get("options"), f"{path}.options", field_type)
        field = ConfigField(name or "", display_name or name or "", field_type, required,
                            options=options, secret=secret, description=description,
                            block_id=block_id)
        if "default" in found:
            default = found["default"]
            reason = ("must not be null" if default is None
                      else type_problem(field_type, default))
            if reason is None and options and default not in [o.value for o in options]:
                reason = "must be one of the options"
            if reason is not None:
                self.problem(f"{path}.default", reason)
            elif secret:
                self.problem(f"{path}.default", "a secret field takes no default (a "
                                                "definition never holds a secret)")
            else:
                field = ConfigField(field.name, field.display_name, field_type, required,
                                    default, options, secret, description, block_id)
        return field if name is not None else None

    def field_name(self, value: Any, path: str) -> str | None:
        name = self.text(value, path, required=True)
        if name is None:
            return None
        if not BLOCK_ID_PATTERN.fullmatch(name) or len(name) > MAX_ID_LENGTH:
            self.problem(path, "must start with a letter or _ and hold only letters, digits "
                               f"and _, at most {MAX_ID_LENGTH} (expressions read it as "
                               "config.<name>)")
            return None
        if name in self._field_paths:
            self.problem(path, f"duplicate field '{name}' (first declared at "
                               f"{self._field_paths[name]}); names are the workflow's, "
                               "not the block's")
            return None
        self._field_paths[name] = path
        return name

    def flag(self, value: Any, path: str, *, default: bool) -> bool:
        if value is None:
            return default
        if not isinstance(value, bool):
            self.problem(path, f"must be true or false, not {_kind(value)}")
            return default
        return value

    def field_options(self, value: Any, path: str, field_type: FieldType
                      ) -> tuple[FieldOption, ...]:
        if value is None:
            return ()
        if not isinstance(value, list) or not value:
            self.problem(path, "must be a non-empty list of values, or of {value, displayName}")
            return ()
        options = []
        for i, item in enumerate(value):
            where = f"{path}[{i}]"
            label = None
            if isinstance(item, dict):
                self.unknown_keys(item, ("value", "displayName"), where)
                label = self.text(item.get("displayName"), f"{where}.displayName")
                if "value" not in item:
                    self.problem(f"{where}.value", "required")
                    continue
                item = item["value"]
                where = f"{where}.value"
            reason = "must not be null" if item is None else type_problem(field_type, item)
            if reason is not None:
                self.problem(where, reason)
                continue
            options.append(FieldOption(item, label or str(item)))
        return tuple(options)

    def config_references(self, blocks: tuple[BlockDef, ...]) -> None:
        """Each ``config.<name>`` a template reads names a field some block declares."""
        declared = sorted(self._field_paths)
        for block in _depth_first(blocks):
            for path, value, _ in _walk(dict(block.params)):
                if not isinstance(value, str) or "{{" not in value:
                    continue
                names = [name for part in _TEMPLATE_PART.findall(value)
                         for name in _CONFIG_REFERENCE.findall(part)]
                for name in dict.fromkeys(names):
                    if name in self._field_paths:
                        continue
                    where = f"{block.path}.with" + (path if path.startswith("[")
                                                    else f".{path}" if path else "")
                    known = (f"; declared: {', '.join(declared)}" if declared
                             else "; declare it under a block's config")
                    hint = _close_match(name, declared)
                    self.problem(where, f"reads config.{name}, which no block of the "
                                        "workflow declares" +
                                        (f"; did you mean '{hint}'?" if hint else known))


def _or_empty(blocks: Any) -> Any:
    # "else:" with nothing after it is YAML for null; it means "no blocks", not a mistake.
    return [] if blocks is None else blocks


def _block_id_problem(block_id: str) -> str | None:
    if not BLOCK_ID_PATTERN.fullmatch(block_id):
        return (
            "must start with a letter or _ and hold only letters, digits and _ "
            "(expressions read a block's output by its id)"
        )
    if len(block_id) > MAX_ID_LENGTH:
        return f"must be at most {MAX_ID_LENGTH} characters"
    if block_id in RESERVED_BLOCK_IDS:
        return f"'{block_id}' is reserved: {RESERVED_BLOCK_IDS[block_id]}"
    return None


# --- shared helpers -----------------------------------------------------------------------


def _json_problems(doc: Any) -> list[Problem]:
    """Values the canonical JSON form could not hold (YAML can express more than JSON)."""
    problems: list[Problem] = []
    for path, value, depth in _walk(doc):
        reason = _json_value_problem(value, depth)
        if reason is not None:
            problems.append(Problem(path, reason))
        for key in value if isinstance(value, dict) else ():
            key_reason = _json_key_problem(key)
            if key_reason is not None:
                problems.append(Problem(_key_path(path, key), key_reason))
    return problems


# orjson writes integers within int64 and uint64; a larger one cannot be stored.
_MIN_INT64, _MAX_UINT64 = -(2**63), 2**64 - 1


def _json_value_problem(value: Any, depth: int) -> str | None:
    if isinstance(value, dict | list):
        return _too_deep() if depth >= MAX_DOCUMENT_DEPTH and value else None
    if isinstance(value, str):
        return _text_problem(value)
    if isinstance(value, float) and not math.isfinite(value):
        return "must be a finite number"
    if isinstance(value, int) and not isinstance(value, bool) and not (
            _MIN_INT64 <= value <= _MAX_UINT64):
        return "integer out of range: JSON numbers are stored as 64-bit integers"
    if value is None or isinstance(value, bool | int | float):
        return None
    return f"{_kind(value)} values cannot be stored as JSON"


def _json_key_problem(key: Any) -> str | None:
    if not isinstance(key, str):
        return f"keys must be strings, not {_kind(key)}"
    return _text_problem(key)


def _text_problem(text: str) -> str | None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "contains an unpaired surrogate, which UTF-8 cannot store"
    return None


def _walk(doc: Any) -> Iterator[tuple[str, Any, int]]:
    """Yield (path, value, depth) for every value, in document order, without recursion."""
    stack: list[tuple[str, Any, int]] = [("", doc, 0)]
    while stack:
        path, value, depth = stack.pop()
        yield path, value, depth
        if depth >= MAX_DOCUMENT_DEPTH:
            continue
        if isinstance(value, dict):
            items = [(_key_path(path, key), item, depth + 1) for key, item in value.items()]
        elif isinstance(value, list):
            items = [(f"{path}[{i}]", item, depth + 1) for i, item in enumerate(value)]
        else:
            continue
        stack.extend(reversed(items))


_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


def _key_path(base: str, key: Any) -> str:
    """``base.key``, or ``base["odd key"]`` when the key would make the path ambiguous."""
    if not isinstance(key, str):
        return f"{base}[{key!r}]"
    if _PLAIN_KEY.fullmatch(key):
        return f"{base}.{key}" if base else key
    return f"{base}[{json.dumps(key)}]"


def _close_match(word: str, choices: Collection[str]) -> str | None:
    matches = difflib.get_close_matches(word, sorted(choices), n=1)
    return matches[0] if matches else None


def _suggest(word: str, choices: Collection[str]) -> str:
    """``; did you mean 'x'?`` for a near miss, else the list of what is allowed."""
    match = _close_match(word, choices)
    if match is not None:
        return f"; did you mean '{match}'?"
    return f" (expected one of: {', '.join(sorted(choices))})" if choices else ""


_KINDS: Mapping[type, str] = {
    dict: "a mapping",
    list: "a list",
    str: "a string",
    bool: "a boolean",
    int: "a number",
    float: "a number",
}


def _kind(value: Any) -> str:
    """How a value reads in a message: "a mapping", "null", or its Python type's name."""
    return "null" if value is None else _KINDS.get(type(value), type(value).__name__)


def _too_deep() -> str:
    return f"nested too deeply (at most {MAX_DOCUMENT_DEPTH} levels)"


def _invalid(path: str, reason: str) -> DefinitionInvalid:
    return DefinitionInvalid([Problem(path, reason)])


def _capped(problems: list[Problem]) -> list[Problem]:
    if len(problems) <= MAX_PROBLEMS_SHOWN:
        return problems
    hidden = len(problems) - MAX_PROBLEMS_SHOWN
    return [*problems[:MAX_PROBLEMS_SHOWN], Problem("", f"and {hidden} more problems")]


__all__ = [
    "BLOCK_ID_PATTERN",
    "RESERVED_BLOCK_IDS",
    "Backoff",
    "BlockDef",
    "BlockRules",
    "BlockSpec",
    "RetryPolicy",
    "Trigger",
    "TriggerType",
    "WorkflowDefinition",
    "canonical_json",
    "parse_document",
    "validate_definition",
]
