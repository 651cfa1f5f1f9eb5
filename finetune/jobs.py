"""The job store: one SQLite file (WAL) in the data directory that the app and the training subprocess share.

The app writes jobs and stop requests; the runner writes progress, losses and log lines. Every write is one
transaction, so a SIGKILL on either side leaves a consistent file, and a reloaded page or a restarted app reads the
whole story back.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from errors import NotFound
from store.database import Database

QUEUED, RUNNING, STOPPED, FAILED, DONE = "queued", "running", "stopped", "failed", "done"
ACTIVE = (QUEUED, RUNNING)

MIGRATIONS = ["""
CREATE TABLE jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    base TEXT NOT NULL,
    status TEXT NOT NULL,
    settings TEXT NOT NULL,
    data TEXT NOT NULL,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    pid INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0,
    step INTEGER NOT NULL DEFAULT 0,
    max_steps INTEGER NOT NULL DEFAULT 0,
    eta_s REAL,
    tokens_per_s REAL,
    message TEXT NOT NULL DEFAULT '',
    stop_requested INTEGER NOT NULL DEFAULT 0,
    resume_from TEXT NOT NULL DEFAULT ''
);
CREATE TABLE losses (
    job_id INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    step INTEGER NOT NULL,
    kind TEXT NOT NULL,
    value REAL NOT NULL,
    PRIMARY KEY (job_id, kind, step)
);
CREATE TABLE logs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    time REAL NOT NULL,
    line TEXT NOT NULL
);
"""]


@dataclass(frozen=True)
class Job:
    id: int
    name: str
    base: str
    status: str
    settings: dict[str, Any]
    data: dict[str, Any]
    created: float
    started: float | None
    finished: float | None
    pid: int | None
    attempts: int
    step: int
    max_steps: int
    eta_s: float | None
    tokens_per_s: float | None
    message: str
    stop_requested: bool
    resume_from: str

    @property
    def label(self) -> str:
        return f"#{self.id} {self.name} ({self.status})"


COLUMNS = [f for f in Job.__dataclass_fields__]


class JobStore:
    """Jobs, their loss curves and logs. Safe to open from several processes at once."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.db = Database(self.path, MIGRATIONS)

    def add(self, name: str, base: str, settings: dict, data: dict) -> int:
        with self.db.transaction() as conn:
            cur = conn.execute("INSERT INTO jobs (name, base, status, settings, data, created) VALUES (?,?,?,?,?,?)",
                               (name, base, QUEUED, json.dumps(settings), json.dumps(data), time.time()))
            return int(cur.lastrowid)

    def get(self, job_id: int) -> Job:
        row = self.db.read().execute(f"SELECT {', '.join(COLUMNS)} FROM jobs WHERE id=?", (job_id,)).fetchone()
        if row is None:
            raise NotFound(f"there is no fine-tuning job #{job_id}")
        return _job(row)

    def list(self, statuses: tuple[str, ...] = ()) -> list[Job]:
        """Newest first."""
        where = f" WHERE status IN ({','.join('?' * len(statuses))})" if statuses else ""
        rows = self.db.read().execute(f"SELECT {', '.join(COLUMNS)} FROM jobs{where} ORDER BY id DESC",
                                      statuses).fetchall()
        return [_job(r) for r in rows]

    def next_queued(self) -> Job | None:
        row = self.db.read().execute(f"SELECT {', '.join(COLUMNS)} FROM jobs WHERE status=? ORDER BY id LIMIT 1",
                                     (QUEUED,)).fetchone()
        return _job(row) if row else None

    def update(self, job_id: int, **values: Any) -> None:
        if not values:
            return
        assigns = ", ".join(f"{k}=?" for k in values)
        with self.db.transaction() as conn:
            conn.execute(f"UPDATE jobs SET {assigns} WHERE id=?", (*values.values(), job_id))

    def claim(self, job_id: int, pid: int) -> bool:
        """Mark a queued job running under `pid`; False when it is no longer queued (stopped meanwhile)."""
        with self.db.transaction() as conn:
            cur = conn.execute("UPDATE jobs SET status=?, pid=?, attempts=attempts+1, started=COALESCE(started, ?), "
                               "message='' WHERE id=? AND status=?", (RUNNING, pid, time.time(), job_id, QUEUED))
            return cur.rowcount == 1

    def finish(self, job_id: int, status: str, message: str = "") -> None:
        self.update(job_id, status=status, message=message, finished=time.time(), pid=None, eta_s=None)
        self.log(job_id, f"{status}: {message}" if message else status)

    def request_stop(self, job_id: int) -> Job:
        """A queued job stops at once; a running one at its next step (after saving a checkpoint)."""
        with self.db.transaction() as conn:
            conn.execute("UPDATE jobs SET status=?, message=?, finished=? WHERE id=? AND status=?",
                         (STOPPED, "stopped before it started", time.time(), job_id, QUEUED))
            conn.execute("UPDATE jobs SET stop_requested=1 WHERE id=? AND status=?", (job_id, RUNNING))
        return self.get(job_id)

    def requeue(self, job_id: int, resume_from: str, message: str) -> None:
        self.update(job_id, status=QUEUED, resume_from=resume_from, stop_requested=0, pid=None, message=message,
                    finished=None)
        self.log(job_id, message)

    # -- curves and logs -----------------------------------------------------------------------------------
    def add_loss(self, job_id: int, step: int, kind: str, value: float) -> None:
        with self.db.transaction() as conn:
            conn.execute("INSERT OR REPLACE INTO losses (job_id, step, kind, value) VALUES (?,?,?,?)",
                         (job_id, step, kind, value))

    def losses(self, job_id: int) -> list[tuple[int, str, float]]:
        return [tuple(r) for r in self.db.read().execute(
            "SELECT step, kind, value FROM losses WHERE job_id=? ORDER BY step, kind", (job_id,)).fetchall()]

    def forget_after(self, job_id: int, step: int) -> None:
        """Drop losses past `step` (resuming an earlier checkpoint replays those steps)."""
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM losses WHERE job_id=? AND step>?", (job_id, step))

    def log(self, job_id: int, line: str) -> None:
        with self.db.transaction() as conn:
            conn.execute("INSERT INTO logs (job_id, time, line) VALUES (?,?,?)", (job_id, time.time(), line))

    def logs(self, job_id: int, last: int = 200) -> list[tuple[float, str]]:
        rows = self.db.read().execute("SELECT time, line FROM logs WHERE job_id=? ORDER BY id DESC LIMIT ?",
                                      (job_id, last)).fetchall()
        return [tuple(r) for r in reversed(rows)]

    def close(self) -> None:
        self.db.close()


def _job(row: tuple) -> Job:
    values = dict(zip(COLUMNS, row, strict=True))
    values["settings"] = json.loads(values["settings"])
    values["data"] = json.loads(values["data"])
    values["stop_requested"] = bool(values["stop_requested"])
    return Job(**values)
