"""Constrained output: a request's JSON schema, regex, choice list or grammar as one checked `Constraint`.

Every constraint is compiled by xgrammar (the compiler both engines use: the torch batcher directly, OpenVINO GenAI
through its own copy) before a request is accepted, so a schema, regex or grammar that does not compile is refused
with a message naming what is wrong and where, never run unconstrained. JSON schemas are first checked against the
JSON Schema meta-schema (which names the path of a bad keyword); keywords the compiler accepts but does not enforce
are refused too, so that "validated output" means what it says.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from errors import InvalidInput

# Keywords xgrammar parses but does not enforce (checked against xgrammar 0.2.9): output could break them.
UNENFORCED = ("not", "if", "then", "else", "uniqueItems", "contains", "minContains", "maxContains",
              "dependentRequired", "dependentSchemas", "unevaluatedProperties", "unevaluatedItems", "propertyNames",
              "multipleOf", "allOf", "patternProperties")
FORMATS = ("date", "time", "date-time", "duration", "email", "hostname", "ipv4", "ipv6", "uri", "uri-reference",
           "uuid")
MAX_TEXT = 100_000  # characters of schema, regex or grammar
FREE_TEXT = r"[^{\s][\s\S]*"  # text not starting like a JSON object (tool_choice auto: text or a call)


class InvalidConstraint(InvalidInput):
    """A schema, regex, choice list or grammar that cannot be enforced; `param` names the request field."""

    def __init__(self, message: str, param: str):
        super().__init__(message)
        self.param = param


@dataclass(frozen=True)
class Constraint:
    """What the output must match: `kind` is json_schema, regex, grammar (EBNF) or json_or_text (a JSON schema or
    free text that does not start like JSON); `label` says what the person asked for (json_schema, json_object,
    regex, choice, grammar, tool_call) for messages and logs."""

    kind: str
    text: str
    label: str

    def grammar(self):
        """The xgrammar `Grammar` (raises xgrammar's RuntimeError when it does not compile)."""
        import xgrammar as xgr

        if self.kind in ("json_schema", "json_or_text"):
            # compact JSON: a weak model allowed any whitespace can emit it until max_tokens runs out
            schema = xgr.Grammar.from_json_schema(self.text, any_whitespace=False, strict_mode=True)
            if self.kind == "json_schema":
                return schema
            return xgr.Grammar.union(schema, xgr.Grammar.from_regex(FREE_TEXT))
        if self.kind == "regex":
            return xgr.Grammar.from_regex(self.text)
        return xgr.Grammar.from_ebnf(self.text)


def _compiled(constraint: Constraint, param: str) -> Constraint:
    if len(constraint.text) > MAX_TEXT:
        raise InvalidConstraint(f"{param} is {len(constraint.text)} characters; at most {MAX_TEXT} are accepted",
                                param)
    try:
        constraint.grammar()
    except RuntimeError as exc:  # xgrammar reports every compile error as a RuntimeError with its reason
        raise InvalidConstraint(f"{param} does not compile: {compile_reason(exc)}", param) from None
    return constraint


def compile_reason(exc: BaseException) -> str:
    """xgrammar's message without its timestamp and source location."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return re.sub(r"^\[[\d:]+\]\s*\S+:\d+:\s*", "", text)


def json_schema(schema: Any, param: str = "json_schema") -> Constraint:
    """A constraint from a JSON schema (a dict, or its JSON text).

    Raises:
        InvalidConstraint: not JSON, not a valid schema (with the path of the bad keyword), a keyword or format
            the engine does not enforce, or a schema the compiler refuses.
    """
    if isinstance(schema, str):
        try:
            schema = json.loads(schema)
        except json.JSONDecodeError as exc:
            raise InvalidConstraint(f"{param} is not JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}",
                                    param) from None
    if not isinstance(schema, dict):
        raise InvalidConstraint(f"{param} must be a JSON object (a schema), got {type(schema).__name__}", param)
    _check_meta_schema(schema, param)
    _check_enforceable(schema, param, "$")
    return _compiled(Constraint("json_schema", json.dumps(_bounded_strings(schema)), "json_schema"), param)


def _bounded_strings(node: Any) -> Any:
    """The schema with minLength/maxLength written as a pattern: xgrammar 0.2.9 lets a length-bounded string hold
    raw control characters (invalid JSON); its pattern path escapes them properly. Quotes and backslashes are left
    out of such strings (a narrower set, so the output still matches the person's schema)."""
    if isinstance(node, list):
        return [_bounded_strings(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {k: (v if k in ("enum", "const", "default", "examples") else _bounded_strings(v)) for k, v in node.items()}
    if ("minLength" in out or "maxLength" in out) and not ({"pattern", "format", "enum", "const"} & out.keys()):
        low, high = out.pop("minLength", 0), out.pop("maxLength", "")
        out["pattern"] = f'^[^\\x00-\\x1f"\\\\]{{{low},{high}}}$'
    return out


def _check_meta_schema(schema: dict, param: str) -> None:
    import jsonschema

    try:
        jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator).check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise InvalidConstraint(f"{param} is not a valid JSON schema at {exc.json_path}: {exc.message}",
                                param) from None


def _check_enforceable(node: Any, param: str, path: str) -> None:
    """Refuse keywords the compiler would accept and then ignore, wherever they are in the schema."""
    if isinstance(node, list):
        for i, item in enumerate(node):
            _check_enforceable(item, param, f"{path}[{i}]")
        return
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        where = f"{path}.{key}"
        if key in ("properties", "$defs", "definitions") and isinstance(value, dict):
            for name, sub in value.items():  # names here are the person's, not keywords
                _check_enforceable(sub, param, f"{where}.{name}")
            continue
        if key in UNENFORCED and not (key == "allOf" and isinstance(value, list) and len(value) == 1):
            raise InvalidConstraint(f"{param} uses '{key}' at {where}, which this server cannot enforce while "
                                    f"generating; remove it (supported: type, properties, required, enum, const, "
                                    f"anyOf/oneOf, items, pattern, min/max lengths and values, format)", param)
        if key == "format" and isinstance(value, str) and value not in FORMATS:
            raise InvalidConstraint(f"{param} has format '{value}' at {where}, which this server cannot enforce; "
                                    f"use one of {', '.join(FORMATS)} or a pattern", param)
        if key not in ("enum", "const", "default", "examples", "description", "title"):
            _check_enforceable(value, param, where)


def any_json_object() -> Constraint:
    """Any JSON object (OpenAI's `json_object` response format)."""
    return Constraint("json_schema", json.dumps({"type": "object"}), "json_object")


def regex(pattern: Any, param: str = "guided_regex") -> Constraint:
    if not isinstance(pattern, str) or not pattern:
        raise InvalidConstraint(f"{param} must be a non-empty regular expression string, got {pattern!r}", param)
    return _compiled(Constraint("regex", pattern, "regex"), param)


def choice(options: Any, param: str = "guided_choice") -> Constraint:
    """Exactly one of `options` (non-empty strings)."""
    if (not isinstance(options, list) or not options
            or any(not isinstance(o, str) or not o for o in options)):
        raise InvalidConstraint(f"{param} must be a non-empty list of non-empty strings, got {options!r}", param)
    ebnf = "root ::= " + " | ".join(json.dumps(o) for o in dict.fromkeys(options))
    return _compiled(Constraint("grammar", ebnf, "choice"), param)


def grammar(text: Any, param: str = "guided_grammar") -> Constraint:
    """An EBNF grammar in xgrammar's dialect (GBNF as llama.cpp writes it; the start rule is `root`)."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidConstraint(f"{param} must be a non-empty EBNF grammar string with a 'root' rule, got "
                                f"{text!r}", param)
    return _compiled(Constraint("grammar", text, "grammar"), param)


def json_or_text(schema: dict, param: str = "tools") -> Constraint:
    """Either a JSON object matching `schema` (a tool call), or free text that does not start with '{'."""
    call = json_schema(schema, param)
    return _compiled(Constraint("json_or_text", call.text, "tool_call_or_text"), param)
