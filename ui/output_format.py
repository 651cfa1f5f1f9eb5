"""The "Output format" control shared by the Chat and Text generation tabs: free text, a JSON schema, a regex, a
choice list or a grammar, turned into one checked constraint (engines/constraints.py) before anything runs."""

from __future__ import annotations

import json
from dataclasses import dataclass

import gradio as gr

from engines import constraints
from engines.constraints import Constraint, InvalidConstraint

FREE, SCHEMA, REGEX, CHOICE, GRAMMAR = "Free text", "JSON schema", "Regex", "Choice list", "Grammar (EBNF)"
KINDS = (FREE, SCHEMA, REGEX, CHOICE, GRAMMAR)
EXAMPLES = {
    FREE: "",
    SCHEMA: json.dumps({"type": "object", "properties": {"name": {"type": "string", "maxLength": 40},
                                                         "age": {"type": "integer", "minimum": 0},
                                                         "city": {"type": "string"}},
                        "required": ["name", "age"], "additionalProperties": False}, indent=2),
    REGEX: r"\d{4}-\d{2}-\d{2}",
    CHOICE: "positive\nnegative\nneutral",
    GRAMMAR: 'root ::= answer " because " reason\nanswer ::= "yes" | "no"\nreason ::= [a-z ]+',
}
HINTS = {
    FREE: "The model writes freely.",
    SCHEMA: "The reply is JSON that validates against this schema (draft 2020-12; compact, one line).",
    REGEX: "The whole reply matches this regular expression.",
    CHOICE: "The reply is exactly one of these lines.",
    GRAMMAR: "The reply follows this grammar (GBNF/EBNF; the start rule is `root`).",
}


@dataclass
class OutputFormat:
    kind: gr.Radio
    spec: gr.Code
    hint: gr.Markdown

    def components(self) -> list:
        return [self.kind, self.spec]


def constraint_of(kind: str = FREE, spec: str = "") -> Constraint | None:
    """The checked constraint for the control's values; a gr.Error that says what is wrong and where otherwise."""
    kind, spec = kind or FREE, spec or ""
    try:
        if kind == FREE:
            return None
        if kind == SCHEMA:
            return constraints.json_schema(spec, "the JSON schema")
        if kind == REGEX:
            return constraints.regex(spec.strip(), "the regex")
        if kind == CHOICE:
            return constraints.choice([line.strip() for line in spec.splitlines() if line.strip()], "the choice list")
        if kind == GRAMMAR:
            return constraints.grammar(spec, "the grammar")
    except InvalidConstraint as exc:
        raise gr.Error(f"Output format: {exc}") from None
    raise gr.Error(f"Output format must be one of {', '.join(KINDS)}, got {kind!r}")


def example_for(kind: str) -> tuple[gr.Code, str]:
    """Switching the kind puts its example in the editor (JSON highlighting for a schema) and says what it does."""
    kind = kind if kind in KINDS else FREE
    return gr.Code(value=EXAMPLES[kind], language="json" if kind == SCHEMA else None, visible=kind != FREE), \
        HINTS[kind]


def build_output_format() -> OutputFormat:
    """Lay out the control (inside an accordion) and wire its own example switching."""
    with gr.Accordion("Output format", open=False):
        kind = gr.Radio(list(KINDS), value=FREE, label="Output format", elem_classes="output-format-kind")
        spec = gr.Code("", language="json", label="Format", lines=8, visible=False, interactive=True)
        hint = gr.Markdown(HINTS[FREE])
    kind.change(example_for, kind, [spec, hint], api_visibility="private")
    return OutputFormat(kind, spec, hint)
