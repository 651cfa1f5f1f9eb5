"""Child process for the SIGKILL test: adds documents and embeds them until it is killed."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

from fake_embedder import HashEmbedder  # noqa: E402

from store import CollectionIndex, Document  # noqa: E402

OWNER = "local"


def main(folder: str) -> None:
    ix = CollectionIndex(Path(folder), HashEmbedder(delay_s=0.005), batch_size=16)
    ix.create(OWNER, "crash", chunk_size=20, overlap=5)
    n = 0
    while True:  # until SIGKILL
        docs = [Document(f"doc{n + i}.txt", " ".join(f"word{(n + i) * 7 + j} common" for j in range(60)))
                for i in range(40)]
        n += len(docs)
        ix.add_documents(OWNER, "crash", docs)
        print(f"added {n}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
