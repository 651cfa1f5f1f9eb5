"""Structured output on the OpenAI API: `response_format`, vLLM's `guided_*` fields, and `tools` / `tool_choice`.

Each request gets at most one constraint (engines/constraints.py), checked before anything runs: a constraint that
cannot be enforced is a 400 naming the field, never a reply generated without it. Tool calls are generated as
JSON `{"name": ..., "arguments": {...}}` held to the tools' parameter schemas (required or a named function), or
to "a call or text that does not start with '{'" (auto), and parsed back into OpenAI's `tool_calls`.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from engines import constraints
from engines.constraints import Constraint, InvalidConstraint
from serving.openai_schema import ApiError

GUIDED = {"guided_json": constraints.json_schema, "guided_regex": constraints.regex,
          "guided_choice": constraints.choice, "guided_grammar": constraints.grammar}


def _api(exc: InvalidConstraint) -> ApiError:
    return ApiError(400, str(exc), param=exc.param)


def response_format_constraint(fmt: Any, param: str = "response_format") -> Constraint | None:
    """OpenAI's `response_format`: text (None), json_object, or json_schema ({name, schema, strict})."""
    if fmt is None:
        return None
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return constraints.any_json_object()
    if kind == "json_schema":
        spec = fmt.get("json_schema")
        if not isinstance(spec, dict) or "schema" not in spec:
            raise ApiError(400, f"{param}.json_schema must be an object with a 'schema' (and a 'name'), got "
                                f"{spec!r}", param=f"{param}.json_schema")
        try:  # strict or not, the schema is enforced: a schema we cannot enforce is refused either way
            return constraints.json_schema(spec["schema"], f"{param}.json_schema.schema")
        except InvalidConstraint as exc:
            raise _api(exc) from None
    raise ApiError(400, f"{param}.type must be text, json_object or json_schema, got {kind!r}",
                   param=f"{param}.type")


def request_constraint(body: Any) -> Constraint | None:
    """The one constraint of a chat or completion body (None: free text). Raises ApiError 400."""
    extra = body.model_extra or {}
    asked = [name for name in GUIDED if extra.get(name) is not None]
    fmt = getattr(body, "response_format", None)
    if fmt is not None and not (isinstance(fmt, dict) and fmt.get("type") == "text"):
        asked.insert(0, "response_format")
    if len(asked) > 1:
        raise ApiError(400, f"send one output constraint per request, got {', '.join(asked)}", param=asked[1])
    if not asked:
        return None
    if asked[0] == "response_format":
        return response_format_constraint(fmt)
    try:
        return GUIDED[asked[0]](extra[asked[0]], asked[0])
    except InvalidConstraint as exc:
        raise _api(exc) from None


@dataclass(frozen=True)
class ToolPlan:
    """How a request with tools is generated: the constraint, the instructions for the model, the tool names."""

    constraint: Constraint | None
    instructions: str
    names: tuple[str, ...]
    mode: str  # none | auto | required | named


def _functions(tools: list[Any], param: str) -> list[dict]:
    out = []
    for i, tool in enumerate(tools):
        fn = tool.get("function") if isinstance(tool, dict) and tool.get("type") == "function" else None
        if fn is None and isinstance(tool, dict) and tool.get("type") == "function" and "name" in tool:
            fn = tool  # the Responses API's flat shape
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
            raise ApiError(400, f"{param}[{i}] must be a function tool with a name ({{'type': 'function', "
                                f"'function': {{'name': ..., 'parameters': {{...}}}}}}), got {tool!r}",
                           param=f"{param}[{i}]")
        out.append({"name": fn["name"], "description": fn.get("description") or "",
                    "parameters": fn.get("parameters") or {"type": "object", "properties": {}}})
    return out


def _chosen(tool_choice: Any, names: list[str], param: str) -> tuple[str, list[str]]:
    if tool_choice in (None, "auto"):
        return "auto", names
    if tool_choice in ("none", "required"):
        return tool_choice, names
    name = (tool_choice.get("function") or {}).get("name") or tool_choice.get("name") \
        if isinstance(tool_choice, dict) else None
    if name not in names:
        raise ApiError(400, f"{param} must be none, auto, required or a function among the tools "
                            f"({', '.join(names)}), got {tool_choice!r}", param=param)
    return "named", [name]


def tool_plan(tools: list[Any] | None, tool_choice: Any, param: str = "tools") -> ToolPlan | None:
    """What to generate for `tools` and `tool_choice`; None when there are no tools. Raises ApiError 400."""
    if not tools:
        if tool_choice not in (None, "none", "auto"):
            raise ApiError(400, "tool_choice needs tools: send the functions the model may call in tools",
                           param="tool_choice")
        return None
    functions = _functions(tools, param)
    mode, names = _chosen(tool_choice, [f["name"] for f in functions], "tool_choice")
    if mode == "none":
        return ToolPlan(None, "", tuple(names), mode)
    calls = [{"type": "object", "properties": {"name": {"const": f["name"]}, "arguments": f["parameters"]},
              "required": ["name", "arguments"], "additionalProperties": False}
             for f in functions if f["name"] in names]
    schema = calls[0] if len(calls) == 1 else {"anyOf": calls}
    try:
        constraint = (constraints.json_or_text(schema, param) if mode == "auto"
                      else constraints.json_schema(schema, param))
    except InvalidConstraint as exc:
        raise _api(exc) from None
    return ToolPlan(constraint, instructions(functions, mode), tuple(names), mode)


def instructions(functions: list[dict], mode: str) -> str:
    """A system note describing the functions (small models' chat templates have no tools section)."""
    listing = "\n".join(json.dumps(f) for f in functions)
    how = ("Answer with a JSON function call" if mode != "auto"
           else "When a function helps, answer only with a JSON function call; otherwise answer in plain text")
    return (f"You can call these functions:\n{listing}\n{how}: "
            '{"name": <function name>, "arguments": {<arguments>}}.')


def parse_call(text: str, plan: ToolPlan) -> list[dict] | None:
    """OpenAI `tool_calls` from a generated call; None when the text is not a call (auto, plain text)."""
    try:
        call = json.loads(text)
    except json.JSONDecodeError:
        return None
    if not isinstance(call, dict) or call.get("name") not in plan.names:
        return None
    return [{"id": f"call_{uuid.uuid4().hex[:24]}", "type": "function",
             "function": {"name": call["name"], "arguments": json.dumps(call.get("arguments", {}))}}]


def with_tools(messages: list[dict], plan: ToolPlan | None) -> list[dict]:
    """The messages with the tools' description added to the system prompt."""
    if plan is None or not plan.instructions:
        return messages
    if messages and messages[0]["role"] == "system":
        return [{"role": "system", "content": messages[0]["content"] + "\n\n" + plan.instructions}, *messages[1:]]
    return [{"role": "system", "content": plan.instructions}, *messages]
