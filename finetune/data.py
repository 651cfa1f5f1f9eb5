"""Training data: rows (from a dataset or an upload) -> (prompt, completion) examples -> token statistics.

Three shapes are understood: chat `messages` (a list of {role, content}), instruction/response columns, and plain
text. Only the completion is trained on (the prompt's tokens carry no loss), so the model learns to answer, not to
repeat questions; plain text has no prompt.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from typing import Any, Protocol

from errors import UserError

KINDS = ("messages", "instruction", "text")
TEMPLATES = ("chat", "alpaca", "plain")
PROMPT_NAMES = ("instruction", "prompt", "question", "input", "query")
RESPONSE_NAMES = ("response", "output", "answer", "completion", "target")
ALPACA = "### Instruction:\n{prompt}\n\n### Response:\n"


class Tokenizer(Protocol):
    chat_template: Any
    eos_token: str | None

    def __call__(self, text: str | list[str], add_special_tokens: bool = ...) -> Any: ...

    def apply_chat_template(self, messages: list[dict], **kwargs: Any) -> Any: ...


@dataclass(frozen=True)
class DataSpec:
    """Which columns hold what, and how examples are turned into text."""

    source: str
    kind: str = "instruction"  # one of KINDS
    prompt_column: str = ""  # instruction kind: the question; messages kind: the messages; text kind: the text
    response_column: str = ""  # instruction kind only
    template: str = "chat"  # one of TEMPLATES; "chat" uses the model's chat template


@dataclass(frozen=True)
class Example:
    prompt: str
    completion: str


@dataclass(frozen=True)
class TokenStats:
    rows: int
    mean: float
    p95: int
    longest: int
    truncated: int  # rows longer than the cutoff (their end is cut)
    cutoff: int
    tokens: int  # total tokens after truncation

    def describe(self) -> str:
        share = f"{100 * self.truncated / self.rows:.0f}%" if self.rows else "0%"
        return (f"{self.rows:,} examples · tokens per example: mean {self.mean:.0f}, 95th percentile {self.p95}, "
                f"longest {self.longest} · **{self.truncated:,} ({share}) longer than the cutoff of {self.cutoff}** "
                f"(their end is cut) · {self.tokens:,} tokens per epoch")


def detect(columns: list[str]) -> DataSpec:
    """A guess at kind and columns from column names (the person can change it)."""
    lower = {c.lower(): c for c in columns}
    if "messages" in lower or "conversations" in lower:
        return DataSpec("", "messages", lower.get("messages") or lower["conversations"])
    prompt = next((lower[n] for n in PROMPT_NAMES if n in lower), "")
    response = next((lower[n] for n in RESPONSE_NAMES if n in lower), "")
    if prompt and response:
        return DataSpec("", "instruction", prompt, response)
    text = lower.get("text") or (columns[0] if columns else "")
    return DataSpec("", "text", text, "", "plain")


def check_columns(spec: DataSpec, columns: list[str]) -> None:
    if spec.kind not in KINDS:
        raise UserError(f"data kind must be one of {KINDS}, got {spec.kind!r}")
    if spec.template not in TEMPLATES:
        raise UserError(f"template must be one of {TEMPLATES}, got {spec.template!r}")
    needed = [spec.prompt_column] + ([spec.response_column] if spec.kind == "instruction" else [])
    role = {"messages": "messages", "instruction": "instruction", "text": "text"}[spec.kind]
    for name, what in zip(needed, [role, "response"], strict=False):
        if not name:
            raise UserError(f"choose the {what} column; the dataset has {columns}")
        if name not in columns:
            raise UserError(f"the dataset has no column {name!r} (for the {what}); it has {columns}")


def to_examples(rows: list[dict], spec: DataSpec, tokenizer: Tokenizer) -> tuple[list[Example], int]:
    """Examples from rows, and how many rows were skipped because their columns were empty.

    Raises UserError when no row has usable content or a messages cell is not a list of messages.
    """
    examples, skipped = [], 0
    for i, row in enumerate(rows):
        example = _example(row, spec, tokenizer, i)
        if example is None:
            skipped += 1
        else:
            examples.append(example)
    if not examples:
        column = spec.prompt_column + (f"/{spec.response_column}" if spec.kind == "instruction" else "")
        raise UserError(f"every one of the {len(rows)} rows is empty in column {column!r}: nothing to train on")
    return examples, skipped


def _example(row: dict, spec: DataSpec, tokenizer: Tokenizer, index: int) -> Example | None:
    eos = tokenizer.eos_token or ""
    if spec.kind == "text":
        text = _text(row.get(spec.prompt_column))
        return Example("", text + eos) if text.strip() else None
    if spec.kind == "instruction":
        prompt, answer = _text(row.get(spec.prompt_column)), _text(row.get(spec.response_column))
        if not prompt.strip() or not answer.strip():
            return None
        messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]
    else:
        messages = _messages(row.get(spec.prompt_column), index)
        if not messages:
            return None
    return _render(messages, spec.template, tokenizer)


def _render(messages: list[dict], template: str, tokenizer: Tokenizer) -> Example:
    """Prompt = everything before the last assistant turn; completion = that turn (what the loss is on)."""
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    if template == "chat" and getattr(tokenizer, "chat_template", None):
        prompt = tokenizer.apply_chat_template(messages[:last], add_generation_prompt=True, tokenize=False)
        full = tokenizer.apply_chat_template(messages[:last + 1], tokenize=False)
        if full.startswith(prompt):
            return Example(prompt, full[len(prompt):])
        return Example(prompt, messages[last]["content"] + (tokenizer.eos_token or ""))
    question = "\n\n".join(m["content"] for m in messages[:last] if m["role"] != "assistant")
    eos = tokenizer.eos_token or ""
    if template == "alpaca" or template == "chat":  # "chat" without a chat template falls back to alpaca
        return Example(ALPACA.format(prompt=question), messages[last]["content"] + eos)
    return Example(question + "\n", messages[last]["content"] + eos)


def _text(value: Any) -> str:
    return "" if value is None else value if isinstance(value, str) else str(value)


def _messages(value: Any, index: int) -> list[dict]:
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else []
        except json.JSONDecodeError:
            raise UserError(f"row {index}: the messages cell is text that is not JSON; expected a list of "
                            f'{{"role": ..., "content": ...}}') from None
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(m, dict) and "role" in m and "content" in m
                                              for m in value):
        raise UserError(f"row {index}: expected a list of {{role, content}} messages, got {str(value)[:80]!r}")
    messages = [{"role": str(m["role"]), "content": _text(m["content"])} for m in value]
    return messages if any(m["role"] == "assistant" for m in messages) else []


def token_lengths(examples: list[Example], tokenizer: Tokenizer, chunk: int = 2048) -> list[int]:
    lengths = []
    for start in range(0, len(examples), chunk):  # one batched call per chunk: the fast tokenizer runs in Rust
        texts = [e.prompt + e.completion for e in examples[start:start + chunk]]
        lengths += [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    return lengths


def token_stats(lengths: list[int], cutoff: int) -> TokenStats:
    if not lengths:
        return TokenStats(0, 0.0, 0, 0, 0, cutoff, 0)
    ordered = sorted(lengths)
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    return TokenStats(rows=len(lengths), mean=statistics.fmean(lengths), p95=p95, longest=ordered[-1],
                      truncated=sum(n > cutoff for n in lengths), cutoff=cutoff,
                      tokens=sum(min(n, cutoff) for n in lengths))


def split_sizes(rows: int, val_split: float) -> tuple[int, int]:
    """(training rows, validation rows); refuses a split that leaves either side empty."""
    if val_split <= 0:
        return rows, 0
    val = int(rows * val_split)
    if val < 1 or rows - val < 1:
        need = int(-(-1 // val_split)) + 1
        raise UserError(f"the dataset is too small for a {val_split:.0%} validation split: {rows} example(s) give "
                        f"{val} validation row(s); give at least {need} examples, or set the validation split to 0")
    return rows - val, val


def preview(examples: list[Example], count: int = 3) -> str:
    """Markdown of the first examples, the part the model learns marked apart from the prompt."""
    parts = []
    for i, e in enumerate(examples[:count]):
        parts.append(f"**Example {i + 1}** — prompt (no loss):\n```\n{e.prompt}\n```\nlearned completion:\n"
                     f"```\n{e.completion}\n```")
    return "\n\n".join(parts)
