"""The app's side of an engine process (engines/openvino_worker.py): starting it, building its model, ending it.

One process per loaded OpenVINO model, talking pickled tuples over a socket pair (the protocol is in the worker's
docstring). engines/openvino_text.py drives it; nothing else does.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from multiprocessing.connection import Connection
from pathlib import Path

from errors import Unavailable

WORKER = Path(__file__).with_name("openvino_worker.py")
LOAD_TIMEOUT_S = 600


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

    def send(self, message: tuple) -> None:
        with self._send_lock:
            self.conn.send(message)

    def load(self, folder: Path, scheduler: dict, properties: dict) -> int:
        """Build the pipeline in the child; returns its resident bytes. Raises Unavailable naming the model."""
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
