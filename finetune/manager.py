"""The queue: one training subprocess at a time, started, watched, recovered after a kill or an app restart.

A daemon thread ticks twice a second. It starts the oldest queued job when none runs; notices a runner that ended
without writing a final status (SIGKILL, out of memory, a crash) and queues its job again, to resume from its last
checkpoint; adopts a runner left by a previous app process (runners outlive the app on purpose); and, while the app
is generating for someone, keeps the busy file fresh so the runner pauses between steps.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import psutil

from finetune.jobs import FAILED, QUEUED, RUNNING, Job, JobStore
from finetune.layout import Layout

logger = logging.getLogger(__name__)
REPO_DIR = Path(__file__).resolve().parents[1]


class JobManager:
    """Starts and watches training runs for the jobs in `layout`'s store.

    Args:
        layout: where jobs keep their files and the store.
        busy: True while a person is generating (the runner then pauses between steps).
        max_attempts: a job whose runner dies this many times in a row fails instead of restarting again.
        poll_s: how often the queue is looked at.
    """

    def __init__(self, layout: Layout, busy: Callable[[], bool] | None = None, max_attempts: int = 3,
                 poll_s: float = 0.5):
        self.layout, self.busy, self.max_attempts, self.poll_s = layout, busy, max_attempts, poll_s
        layout.root.mkdir(parents=True, exist_ok=True)
        self.store = JobStore(layout.db)
        self._proc: subprocess.Popen | None = None
        self._proc_job: int | None = None
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> JobManager:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="finetune-queue", daemon=True)
            self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._closed.wait(self.poll_s):
            try:
                self.tick()
            except Exception:  # keep the queue alive; the next tick retries
                logger.exception("fine-tune queue tick failed")

    def tick(self) -> None:
        """One round: mark busy, reap or adopt runners, start the next queued job."""
        if self.busy is not None and self.busy():
            self.layout.busy_file.touch()
        with self._lock:
            if self._proc is not None:
                if self._proc.poll() is None:
                    return
                self._after_exit(self._proc_job, self._proc.returncode)
                self._proc, self._proc_job = None, None
            for job in self.store.list((RUNNING,)):
                if _is_runner(job):
                    return  # a runner from an earlier app process: let it finish
                self._after_exit(job.id, None)
            job = self.store.next_queued()
            if job is not None:
                self._spawn(job)

    def _spawn(self, job: Job) -> None:
        if not self.store.claim(job.id, pid=0):
            return
        folder = self.layout.job_dir(job.id)
        folder.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_DIR), os.getenv("PYTHONPATH")]))}
        with (folder / "runner.log").open("ab") as log:
            # a new session: Ctrl-C on the app (or its restart) does not kill the run; the next app adopts it
            self._proc = subprocess.Popen([sys.executable, "-m", "finetune.runner", str(self.layout.root),
                                           str(job.id)], cwd=REPO_DIR, env=env, stdout=log, stderr=log,
                                          start_new_session=True)
        self._proc_job = job.id
        self.store.update(job.id, pid=self._proc.pid)
        self.store.log(job.id, f"runner started (pid {self._proc.pid}, attempt {job.attempts + 1})")

    def _after_exit(self, job_id: int | None, returncode: int | None) -> None:
        """A runner ended: if it left its job 'running', it died; queue the job again to resume, or fail it."""
        if job_id is None:
            return
        job = self.store.get(job_id)
        if job.status != RUNNING:
            return
        how = f"exit code {returncode}" if returncode is not None else "its process is gone"
        if job.attempts >= self.max_attempts:
            self.store.finish(job.id, FAILED, f"the training process ended unexpectedly ({how}) "
                                              f"{job.attempts} times in a row; see the log")
            return
        found = self.layout.checkpoints(job.id)
        where = f"resuming from {found[-1][1].name}" if found else "no checkpoint yet: starting again"
        self.store.requeue(job.id, "", f"the training process ended unexpectedly ({how}); {where}")

    def running_pid(self) -> int | None:
        with self._lock:
            return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def queued(self) -> int:
        return len(self.store.list((QUEUED,)))

    def close(self, kill: bool = False) -> None:
        """Stop the queue thread; `kill` also ends a running runner (tests), which otherwise goes on alone."""
        self._closed.set()
        if self._thread is not None:
            self._thread.join(5)
        with self._lock:
            if kill and self._proc is not None and self._proc.poll() is None:
                self._proc.kill()
                self._proc.wait(10)


def _is_runner(job: Job) -> bool:
    """True when the job's pid is alive and is this job's runner (not a recycled pid)."""
    if not job.pid:
        return False
    try:
        cmd = psutil.Process(job.pid).cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False
    return "finetune.runner" in cmd and str(job.id) in cmd
