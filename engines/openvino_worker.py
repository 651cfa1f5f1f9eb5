"""The engine process: one OpenVINO GenAI continuous batching pipeline, stepped in a process of its own.

Why a process: the engine's Python `step()` keeps the interpreter lock while it computes (a thread sleeping 1 ms
woke after 19 ms during 29 ms steps), so in the app's process every other thread (HTTP, gradio, tokenizing the next
person's prompt) would only run between steps. Here the steps hold this process's lock, not the app's.

Run as `python openvino_worker.py FD` by engines/openvino_text.py (by path, importing only OpenVINO, numpy and the
standard library, so it starts in about half a second). It talks over the socket FD with pickled tuples:

    app -> engine: ("load", folder, scheduler, properties) once, then ("add", rid, ids, settings),
                   ("stop", rid), ("close",)
    app -> engine: ("trim",) -> ("resident", rss_bytes) after the warm-up
    engine -> app: ("loaded", rss_bytes) or ("load_failed", message); then for each step that produced
                   something ("step", [(rid, tokens, log_probs, finished), ...]); ("refused", rid, message) when the
                   engine rejects a request's settings; ("failed", [rid, ...], message) when a step fails
The process ends when the app closes the socket (including when the app dies). It imports OpenVINO GenAI before it
reads the first message, so a spare process started ahead (engines/openvino_process.py) has that done.
"""

from __future__ import annotations

import os
import sys
from multiprocessing.connection import Connection

# Kept in step with engines/constraints.py (this file imports nothing of the app's: see the module docstring).
FREE_TEXT = r"[^{\s][\s\S]*"


def generation_config(settings: dict):
    """The engine's settings for one request from the plain dict engines/openvino_text.py sends."""
    import openvino_genai as og

    config = og.GenerationConfig()
    config.max_new_tokens = settings["max_new_tokens"]
    eos_ids = settings["eos_ids"]
    if eos_ids:
        config.set_eos_token_id(eos_ids[0])
        config.stop_token_ids = set(eos_ids)
    config.repetition_penalty = settings["repetition_penalty"]
    config.do_sample = not settings["greedy"]
    if not settings["greedy"]:
        config.temperature, config.top_p, config.rng_seed = settings["temperature"], settings["top_p"], settings["seed"]
        if settings["top_k"]:
            config.top_k = settings["top_k"]
    config.logprobs = 1 if settings["with_probs"] else 0
    if settings.get("constraint"):
        config.structured_output_config = structured_output(*settings["constraint"])
    return config


def structured_output(kind: str, text: str):
    """The engine's structured output for a constraint engines/constraints.py already checked."""
    import openvino_genai as og

    config = og.StructuredOutputConfig
    if kind == "json_or_text":  # the engine's own union: its xgrammar is older than the one we check with
        return config(compound_grammar=config.Union(config.JSONSchema(text), config.Regex(FREE_TEXT)))
    return config(**{kind: text})


def pipeline(folder: str, scheduler: dict, properties: dict):
    import openvino_genai as og

    config = og.SchedulerConfig()
    for key, value in scheduler.items():
        setattr(config, key, value)
    return og.ContinuousBatchingPipeline(folder, config, "CPU", properties)


class Engine:
    """The pipeline and the requests in it, driven by the app's messages."""

    def __init__(self, conn: Connection, build):
        self.conn, self.build = conn, build
        self.pipe = build()
        self.handles: dict[int, object] = {}

    def serve(self) -> None:
        while True:
            if not self.busy():
                self.conn.poll(None)  # idle: sleep until the app writes
            while self.conn.poll(0):  # requests join (or leave) between steps
                if not self.command(self.conn.recv()):
                    return
            if self.busy():
                self.step()

    def busy(self) -> bool:
        # a stopped request stays in the pipeline until a step drops it (and frees its cache blocks)
        return bool(self.handles) or self.pipe.has_non_finished_requests()

    def command(self, message: tuple) -> bool:
        kind = message[0]
        if kind == "add":
            _, rid, ids, settings = message
            self.add(rid, ids, settings)
        elif kind == "stop":
            handle = self.handles.pop(message[1], None)
            if handle is not None:
                handle.stop()
        elif kind == "trim":  # after the warm-up: give back what the build left, say what stays resident
            release_build_leftovers()
            self.conn.send(("resident", resident_bytes()))
        return kind != "close"

    def add(self, rid: int, ids: list[int], settings: dict) -> None:
        import numpy as np
        import openvino as ov

        try:
            handle = self.pipe.add_request(rid, ov.Tensor(np.asarray([ids], dtype=np.int64)),
                                           generation_config(settings))
        except RuntimeError as exc:  # the engine refused this request's settings: only it fails
            self.conn.send(("refused", rid, str(exc)))
            return
        self.handles[rid] = handle

    def step(self) -> None:
        import openvino_genai as og

        try:
            self.pipe.step()
        except RuntimeError as exc:
            # every request in the step fails with it, and the pipeline is built afresh (about 2 s): after a failed
            # step its state is unknown, and one request's settings must not break everyone's next ones
            failed = list(self.handles)
            self.handles.clear()
            self.conn.send(("failed", failed, str(exc)))
            self.pipe = None
            self.pipe = self.build()
            release_build_leftovers()
            return
        outputs = []
        for rid, handle in list(self.handles.items()):
            tokens: list[int] = []
            log_probs: list[float] = []
            if handle.can_read():
                for output in handle.read().values():
                    tokens += [int(t) for t in output.generated_ids]
                    log_probs += list(output.generated_log_probs)
            finished = handle.get_status() != og.GenerationStatus.RUNNING
            if finished:
                del self.handles[rid]
            if tokens or finished:
                outputs.append((rid, tokens, log_probs, finished))
        if outputs:
            self.conn.send(("step", outputs))


def release_build_leftovers() -> None:
    """What building the pipeline left behind: freed heap glibc keeps, and the weights file's pages."""
    trim_heap()
    release_model_file_pages()


def trim_heap() -> None:
    """Give the heap the model build left behind back to the system (glibc keeps it otherwise)."""
    import ctypes

    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:  # not glibc: nothing to do
        pass


MADV_DONTNEED = 4  # Linux


def release_model_file_pages() -> int:
    """Drop this process's resident pages of the model's weights file; returns how many bytes of mappings.

    OpenVINO maps `openvino_model.bin` to build the model, and its CPU plugin then computes with a copy of the weights
    laid out its own way: a generation after this touched 4 of the 89 MB it had resident (the embedded SmolLM2), with
    the same tokens. The pages stay in the kernel's page cache, which can reclaim them; read-only mappings only, so a
    page touched again is read back unchanged.
    """
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc: nothing to do
        return 0
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    released = 0
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split()
            if len(fields) >= 6 and fields[5].endswith("/openvino_model.bin") and "w" not in fields[1]:
                start, end = (int(x, 16) for x in fields[0].split("-"))
                if libc.madvise(start, end - start, MADV_DONTNEED) == 0:
                    released += end - start
    return released


def resident_bytes() -> int:
    with open(f"/proc/{os.getpid()}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def main(fd: int) -> None:
    conn = Connection(fd)
    try:
        import openvino_genai  # noqa: F401  # before the first message: a spare process waits with it imported

        message = conn.recv()
        if message[0] != "load":  # a spare process closed without being used
            return
        _, folder, scheduler, properties = message
        try:
            engine = Engine(conn, lambda: pipeline(folder, scheduler, properties))
        except Exception as exc:  # any failure to build goes back to the app as a message
            conn.send(("load_failed", f"{type(exc).__name__}: {exc}"))
            return
        conn.send(("loaded", resident_bytes()))
        engine.serve()
    except (EOFError, OSError):  # the app closed the socket or died: nothing left to serve
        pass


if __name__ == "__main__":
    main(int(sys.argv[1]))
