"""Prompts for an evaluation run: a prompt column (and an optional reference column) of an open dataset."""

from __future__ import annotations

from typing import Any

from errors import UserError

MAX_ROWS = 5000


class PromptSourceError(UserError):
    """The dataset cannot give prompts as asked (missing column, no rows, bad limit)."""


def read_items(ds: Any, prompt_column: str, reference_column: str = "", limit: int = 100
               ) -> tuple[list[tuple[str, str | None]], int]:
    """The first `limit` rows as (prompt, reference) pairs, and how many rows were skipped for an empty prompt.

    Args:
        ds: a databrowser OpenDataset (anything with `name`, `num_rows`, `columns` and an Arrow `table`).
        prompt_column: the column whose text becomes each prompt.
        reference_column: the column holding reference answers ('' for none).
        limit: most rows taken, from the top (1-MAX_ROWS).
    """
    if not 1 <= int(limit) <= MAX_ROWS:
        raise PromptSourceError(f"the row limit must be between 1 and {MAX_ROWS}, got {limit}")
    names = [c.name for c in ds.columns]
    for role, column in (("prompt", prompt_column), ("reference", reference_column)):
        if column and column not in names:
            raise PromptSourceError(f"{ds.name} has no {role} column {column!r}; its columns are {', '.join(names)}")
    if not prompt_column:
        raise PromptSourceError(f"name the prompt column; {ds.name}'s columns are {', '.join(names)}")
    if ds.num_rows == 0:
        raise PromptSourceError(f"{ds.name} has no rows: there is nothing to evaluate")
    head = ds.table.slice(0, int(limit))
    prompts = head.column(prompt_column).to_pylist()
    references = head.column(reference_column).to_pylist() if reference_column else [None] * len(prompts)
    items = [(str(p), None if r is None else str(r)) for p, r in zip(prompts, references, strict=True)
             if p is not None and str(p).strip()]
    if not items:
        raise PromptSourceError(f"every {prompt_column!r} cell in the first {len(prompts)} rows of {ds.name} is empty")
    return items, len(prompts) - len(items)


def fill_template(template: str, prompt: str) -> str:
    """The template with {prompt} replaced (other braces stay as they are, so JSON examples need no escaping)."""
    return template.replace("{prompt}", prompt)


def check_template(template: str) -> str:
    if "{prompt}" not in (template or ""):
        raise PromptSourceError(f"the prompt template must contain {{prompt}} where each row's text goes, got "
                                f"{template!r}")
    return template
