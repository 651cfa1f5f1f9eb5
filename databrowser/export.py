"""Write the rows of a view to CSV, JSON Lines or Parquet, batch by batch."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from databrowser.errors import DatasetError
from databrowser.table import OpenDataset, jsonable

FORMATS = {"csv": ".csv", "jsonl": ".jsonl", "parquet": ".parquet"}
BATCH = 16_384


def _flat_for_csv(batch: pa.Table, ds: OpenDataset) -> pa.Table:
    """CSV holds only plain values: nested, binary and image columns become JSON text."""
    columns = {}
    for col in ds.columns:
        array = batch.column(col.name)
        if col.kind in ("number", "bool", "string", "temporal"):
            columns[col.name] = array
        else:
            columns[col.name] = pa.array([None if v is None else json.dumps(jsonable(v, col), default=str)
                                          for v in array.to_pylist()], pa.string())
    return pa.table(columns)


def export_rows(ds: OpenDataset, row_ids: np.ndarray | None, fmt: str, dest_dir: Path) -> Path:
    """Write the rows `row_ids` (None: every row) of `ds` to a new file in `dest_dir`.

    Args:
        ds: the open dataset.
        row_ids: row indices in view order, or None for the whole dataset in stored order.
        fmt: "csv", "jsonl" or "parquet".
        dest_dir: folder for the file (created if missing).

    Returns:
        The path of the written file, named after the dataset and the row count.
    """
    if fmt not in FORMATS:
        raise DatasetError(f"Export format must be one of {', '.join(FORMATS)}, got {fmt!r}.")
    total = ds.num_rows if row_ids is None else len(row_ids)
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", ds.name).strip("_") or "dataset"
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / f"{stem}-{total}rows{FORMATS[fmt]}"

    def batches():
        for start in range(0, total, BATCH):
            if row_ids is None:
                yield ds.table.slice(start, BATCH)
            else:
                yield ds.take(row_ids[start:start + BATCH])

    if fmt == "parquet":
        with pq.ParquetWriter(str(dest), ds.table.schema) as writer:
            for batch in batches():
                writer.write_table(batch)
            if total == 0:
                writer.write_table(ds.table.slice(0, 0))
    elif fmt == "csv":
        schema = _flat_for_csv(ds.table.slice(0, 0), ds).schema
        with pacsv.CSVWriter(str(dest), schema) as writer:
            for batch in batches():
                writer.write_table(_flat_for_csv(batch, ds))
    else:
        columns = ds.columns
        with open(dest, "w", encoding="utf-8") as f:
            for batch in batches():
                for row in batch.to_pylist():
                    record = {c.name: jsonable(row[c.name], c) for c in columns}
                    f.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
    return dest
