"""The model catalog: per task, the default and suggested models, plus named generation presets."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engines.params import LIMITS
from engines.remote import RemoteModel, parse_remote

# what runs offline when a catalog leaves a task out (the embedded models)
BUILTIN_DEFAULTS = {"chat": "HuggingFaceTB/SmolLM2-135M-Instruct",
                    "text-generation": "HuggingFaceTB/SmolLM2-135M-Instruct",
                    "text-to-image": "hf-playground/tiny-t2i-64"}


@dataclass(frozen=True)
class TaskModels:
    default: str
    suggested: tuple[str, ...] = ()


@dataclass(frozen=True)
class Catalog:
    """What `assets/catalog.json` (or the file given by `--catalog`) holds."""

    tasks: dict[str, TaskModels] = field(default_factory=dict)
    presets: dict[str, dict[str, float]] = field(default_factory=dict)
    remote: dict[str, RemoteModel] = field(default_factory=dict)  # served by external OpenAI-compatible servers

    def default(self, task: str) -> str:
        try:
            return self.tasks[task].default
        except KeyError:
            raise KeyError(f"the catalog has no task {task!r}; it has {sorted(self.tasks)}") from None

    def choices(self, task: str) -> list[str]:
        """The default first, then the suggestions, then the remote models for this task, without repeats."""
        entry = self.tasks.get(task)
        local = [entry.default, *entry.suggested] if entry is not None else []
        return list(dict.fromkeys([*local, *(name for name, m in self.remote.items() if task in m.tasks)]))


def parse_catalog(data: dict[str, Any], source: str = "catalog") -> Catalog:
    """Validate the catalog's structure.

    Raises:
        ValueError: saying which entry is malformed and what was expected.
    """
    if not isinstance(data, dict) or not isinstance(data.get("tasks"), dict):
        raise ValueError(f"{source}: expected an object with a 'tasks' object")
    tasks = {}
    for task, entry in data["tasks"].items():
        if not isinstance(entry, dict) or not isinstance(entry.get("default"), str):
            raise ValueError(f"{source}: task {task!r} needs a 'default' model id string")
        suggested = entry.get("suggested", [])
        if not isinstance(suggested, list) or not all(isinstance(s, str) for s in suggested):
            raise ValueError(f"{source}: task {task!r} 'suggested' must be a list of model ids")
        tasks[task] = TaskModels(default=entry["default"], suggested=tuple(suggested))
    for task, model in BUILTIN_DEFAULTS.items():
        tasks.setdefault(task, TaskModels(default=model))
    presets = data.get("presets", {})
    if not isinstance(presets, dict):
        raise ValueError(f"{source}: 'presets' must be an object of name -> parameters")
    for name, values in presets.items():
        bad = set(values) - set(LIMITS) if isinstance(values, dict) else {"<not an object>"}
        if bad:
            raise ValueError(f"{source}: preset {name!r} has unknown keys {sorted(bad)}; allowed {sorted(LIMITS)}")
    return Catalog(tasks=tasks, presets=presets, remote=parse_remote(data.get("remote", {}), source))


def load_catalog(path: Path) -> Catalog:
    """Read and validate a catalog file."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read the model catalog {path}: {exc}") from exc
    return parse_catalog(data, str(path))


SHIPPED_CATALOG = Path(__file__).resolve().parents[1] / "assets" / "catalog.json"


def shipped_catalog() -> Catalog:
    """The catalog that ships with the app (what a tab shows when it is built without one, e.g. in tests)."""
    return load_catalog(SHIPPED_CATALOG)
