"""A small CPU denoiser run as a frozen TorchScript graph, one graph per input shape, eager for everything else.

Most of a small UNet's step on the CPU is Python: module calls, attribute look-ups, shape checks. Traced and frozen
(`torch.jit.trace` + `torch.jit.freeze` + `optimize_for_inference`), the embedded 4M-parameter UNet's 20-step,
64x64 pipeline went from 0.331 to 0.292 s on one thread of this project's machine, images equal to 1e-6. A call
that the graph cannot represent (extra conditioning inputs, attention slicing, a shape that failed to trace) runs
the model's own forward; so does everything on accelerators and every denoiser above `MAX_PARAMS`.
"""

from __future__ import annotations

import logging
import threading
import time
import warnings
from collections import OrderedDict
from typing import Any

logger = logging.getLogger(__name__)
MAX_PARAMS = 50_000_000  # tracing holds a second, frozen copy of the weights: only for small denoisers
MAX_GRAPHS = 6  # shapes kept (image size x images per call x guidance on/off)
MAX_MODELS = 2  # models whose graphs outlive an unload (see _SHARED)
# TorchScript keeps every traced method in a process-wide registry that nothing can prune safely (clearing it also
# drops diffusers' own scripted functions), so tracing the same model again after each reload would grow memory
# with every load/unload cycle. Graphs are kept instead per model files (`source`) and shape, and a reloaded
# model reuses them: loading the same model twenty times traces it once. A graph computes with the weights it was
# frozen with, which are the same values as long as the files are unchanged (their sizes and times are in the key).
_SHARED: OrderedDict[tuple, OrderedDict[tuple, Any]] = OrderedDict()
_SHARED_LOCK = threading.Lock()


def _shared_graphs(source: tuple | None) -> OrderedDict[tuple, Any]:
    """The graphs traced for these model files, kept across loads (a fresh, private table without a source)."""
    if source is None:
        return OrderedDict()
    with _SHARED_LOCK:
        graphs = _SHARED.setdefault(source, OrderedDict())
        _SHARED.move_to_end(source)
        while len(_SHARED) > MAX_MODELS:
            _SHARED.popitem(last=False)
        return graphs


def files_signature(folder: Any) -> tuple | None:
    """Which model files a folder holds, by path, size and modification time (None when it is not a folder)."""
    from pathlib import Path

    root = Path(str(folder))
    if not root.is_dir():
        return None
    files = sorted(f for f in root.rglob("*") if f.is_file())
    return (str(root.resolve()), *((str(f.relative_to(root)), f.stat().st_size, f.stat().st_mtime_ns) for f in files))


class TracedDenoiser:
    """Installed as `unet.forward`; `enabled` is switched off by the caller for settings the graph cannot honour."""

    def __init__(self, unet: Any, source: tuple | None = None):
        self.unet = unet
        self.eager = type(unet).forward.__get__(unet)
        self.graphs = _shared_graphs(source)
        self.held: dict[tuple, int] = {}  # bytes each graph holds beyond the model's own weights
        self.enabled = True
        self._lock = threading.Lock()

    def __call__(self, sample, timestep, encoder_hidden_states=None, *args, return_dict: bool = True, **kwargs):
        import torch

        step = timestep if torch.is_tensor(timestep) else torch.tensor(timestep)
        simple = not args and all(v is None for v in kwargs.values()) and encoder_hidden_states is not None
        usable = self.enabled and simple and step.dim() == 0
        graph = self._graph(sample, step, encoder_hidden_states) if usable else None
        if graph is None:
            return self.eager(sample, timestep, encoder_hidden_states, *args, return_dict=return_dict, **kwargs)
        out = graph(sample, step, encoder_hidden_states)
        if return_dict:
            from diffusers.models.unets.unet_2d_condition import UNet2DConditionOutput

            return UNet2DConditionOutput(sample=out)
        return (out,)

    def _graph(self, sample, step, context):
        key = (tuple(sample.shape), tuple(context.shape), sample.dtype, step.dtype)
        with self._lock:
            if key in self.graphs:
                self.graphs.move_to_end(key)
            else:
                self.graphs[key] = self._trace(sample, step, context)  # None: this shape runs eager from now on
                while len(self.graphs) > MAX_GRAPHS:
                    self.held.pop(self.graphs.popitem(last=False)[0], None)
            graph = self.graphs[key]
            if key not in self.held:  # a graph traced by an earlier load holds that load's weights too
                self.held[key] = constant_bytes(graph, besides=self.unet) if graph is not None else 0
            return graph

    def _trace(self, sample, step, context):
        import torch

        eager = self.eager

        class Call(torch.nn.Module):
            def __init__(self, unet):
                super().__init__()
                self.unet = unet

            def forward(self, sample, step, context):
                return eager(sample, step, encoder_hidden_states=context, return_dict=False)[0]

        start = time.perf_counter()
        try:
            with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the tracer's notes on Python branches it records as taken
                graph = torch.jit.trace(Call(self.unet).eval(), (sample.clone(), step.clone(), context.clone()),
                                        check_trace=False)
                graph = torch.jit.optimize_for_inference(torch.jit.freeze(graph))
        except Exception as exc:  # an unusual model: this shape keeps the eager forward
            logger.info("tracing the denoiser for %s failed, running it eagerly: %s", tuple(sample.shape), exc)
            return None
        logger.info("denoiser traced for %s in %.2f s", tuple(sample.shape), time.perf_counter() - start)
        return graph

    def describe(self) -> str:
        """How many input shapes run traced and the memory their graphs hold beyond the model's, for the Models tab."""
        with self._lock:
            count = sum(g is not None for g in self.graphs.values())
            held = sum(self.held.values())
        if not count:
            return "denoiser not traced yet" if self.enabled else "denoiser runs eagerly"
        return f"denoiser traced for {count} input shape{'s' * (count > 1)} (+{held / 2**20:.0f} MB)"


def constant_bytes(*graphs: Any, besides: Any = None) -> int:
    """Bytes of the tensors frozen graphs hold as constants, once each, leaving out those that are `besides`' own
    parameters and buffers (freezing keeps some weights as they are and holds a transformed copy of the others)."""
    import torch

    seen = set() if besides is None else {t.data_ptr() for t in [*besides.parameters(), *besides.buffers()]}
    total = 0
    for node in (n for graph in graphs for n in graph.graph.nodes()):
        if node.kind() != "prim::Constant" or node.output().type().kind() != "TensorType":
            continue
        value = node.output().toIValue()
        if torch.is_tensor(value) and value.data_ptr() not in seen:
            seen.add(value.data_ptr())
            total += value.numel() * value.element_size()
    return total


def install(pipe: Any, device: str, source: tuple | None = None) -> TracedDenoiser | None:
    """Run `pipe.unet` through traced graphs when it is small and on the CPU; returns the installed forward.

    `source` (files_signature of the model's folder) lets a reload of the same files reuse the graphs traced before.
    """
    unet = getattr(pipe, "unet", None)
    if unet is None or device != "cpu" or "forward" in vars(unet):
        return None
    if sum(p.numel() for p in unet.parameters()) > MAX_PARAMS:
        return None
    traced = TracedDenoiser(unet, source)
    unet.forward = traced
    return traced
