"""Where a fine-tuning job keeps its files, under `<data dir>/finetune/`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


@dataclass(frozen=True)
class Layout:
    root: Path

    @property
    def db(self) -> Path:
        return self.root / "jobs.db"

    @property
    def busy_file(self) -> Path:
        """Touched by the app while a person is generating; the runner pauses between steps while it is fresh."""
        return self.root / "foreground-busy"

    def job_dir(self, job_id: int) -> Path:
        return self.root / "jobs" / str(job_id)

    def examples(self, key: str) -> Path:
        """Formatted examples, written before their job exists (so the queue never sees a job without data)."""
        return self.root / "data" / f"{key}.jsonl"

    def checkpoints_dir(self, job_id: int) -> Path:
        return self.job_dir(job_id) / "checkpoints"

    def adapter(self, job_id: int) -> Path:
        return self.job_dir(job_id) / "adapter"

    def exports(self, job_id: int) -> Path:
        return self.job_dir(job_id) / "exports"

    def checkpoints(self, job_id: int) -> list[tuple[int, Path]]:
        """(step, folder) of every complete checkpoint, oldest first."""
        folder = self.checkpoints_dir(job_id)
        found = []
        for path in folder.iterdir() if folder.is_dir() else ():
            match = CHECKPOINT.match(path.name)
            # trainer_state.json is written last by Trainer: a folder without it was cut off mid-save
            if match and (path / "trainer_state.json").is_file():
                found.append((int(match.group(1)), path))
        return sorted(found)
