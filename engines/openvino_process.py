"""The app's side of an engine process (engines/openvino_worker.py): starting it, building its model, ending it.

One process per loaded OpenVINO model, plus at most one spare started when a model's process ends (`keep_spare`),
talking pickled tuples over a socket pair (the protocol is in the worker's docstring). engines/openvino_text.py
drives it; nothing else does.
"""

from __future__ import annotations

import atexit
import socket
import subprocess
import sys
import threading
from multiprocessing.connection import Connection
from pathlib import Path

from errors import Unavailable

WORKER = Path(__file__).with_name("openvino_worker.py")
LOAD_TIMEOUT_S = 600
_spare: EngineProcess | None = None  # started ahead (see `keep_spare`); the next load takes it
_spare_lock = threading.Lock()
_exiting = False


def start(name: str) -> EngineProcess:
    """An engine process for the model `name`: the spare one if it is ready, else a new one."""
    global _spare
    with _spare_lock:
        spare, _spare = _spare, None
    if spare is not None and spare.proc.poll() is None:
        spare.name = name
        return spare
    if spare is not None:
        spare.close()
    return EngineProcess(name)


def keep_spare() -> None:
    """Start a spare engine process, if there is none, for the next load to take.

    Called when a model's engine process ends (an unload, a model swapped out): the next load is usually near, and a
    spare has Python started and OpenVINO GenAI imported (0.3 s of a 2.2 s load, scripts/bench_warm_load.py). It
    holds ~66 MB (less beside a running engine, whose library pages it shares) against the hundreds the ended
    process gave back.
    """
    global _spare
    with _spare_lock:
        if _exiting or (_spare is not None and _spare.proc.poll() is None):
            return
        dead, _spare = _spare, EngineProcess("spare")
    if dead is not None:
        dead.close()


@atexit.register
def close_spare() -> None:
    """At exit: end the spare process, and start none after."""
    global _spare, _exiting
    with _spare_lock:
        _exiting = True
        spare, _spare = _spare, None
    if spare is not None:
        spare.close()


class EngineProcess:
    """engines/openvino_worker.py running in a child process, and the socket to it (protocol: that module)."""

    def __init__(self, name: str):
        ours, theirs = socket.socketpair()
        self.name = name
        self.proc = subprocess.Popen([sys.executable, str(WORKER), str(theirs.fileno())], pass_fds=(theirs.fileno(),),
                                     stdin=subprocess.DEVNULL)
        theirs.close()
        self.conn = Connection(ours.detach())
        self._send_lock, self.read_lock = threading.Lock(), threading.Lock()
        self.asked_to_load = False  # until then it holds nothing: closing it need not wait for it

    def send(self, message: tuple) -> None:
        with self._send_lock:
            self.conn.send(message)

    def load(self, folder: Path, scheduler: dict, properties: dict) -> int:
        """Build the pipeline in the child; returns its resident bytes. Raises Unavailable naming the model."""
        self.asked_to_load = True
        self.send(("load", str(folder), scheduler, properties))
        if not self.conn.poll(LOAD_TIMEOUT_S):
            self.close()
            raise Unavailable(f"{self.name}: the OpenVINO engine did not build the model within {LOAD_TIMEOUT_S} s")
        try:
            reply = self.conn.recv()
        except EOFError:
            raise Unavailable(f"{self.name}: the OpenVINO engine process ended while building the model "
                              f"({self.ended()}); free some memory and load it again") from None
        if reply[0] != "loaded":
            self.close()
            raise Unavailable(f"{self.name}: the OpenVINO engine could not build the model: {reply[1]}")
        return reply[1]

    def resident_bytes(self) -> int | None:
        """The engine process's resident memory now (None once it is gone)."""
        import psutil

        try:
            return psutil.Process(self.proc.pid).memory_info().rss if self.proc.poll() is None else None
        except psutil.Error:
            return None

    def ended(self) -> str:
        code = self.proc.poll()
        if code is None:
            return "still running"
        return "killed: out of memory?" if code == -9 else f"exit code {code}"

    def close(self) -> None:
        if not self.asked_to_load:  # a spare, perhaps still importing: nothing to wind down
            self.proc.kill()
        try:
            self.send(("close",))
        except OSError:  # already gone
            pass
        self.conn.close()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
