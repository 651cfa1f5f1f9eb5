"""Local files and folders -> one cached Arrow IPC file, memory-mapped when opened.

Every format is converted once, batch by batch (never whole in memory for the streaming formats), into
`<cache_dir>/<key>.arrow`, keyed by the resolved path, size and modification time. Opening the cache file maps it:
pages are read from disk on demand, so a dataset larger than memory still opens.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from databrowser.errors import DatasetError

logger = logging.getLogger(__name__)

BATCH_ROWS = 65_536
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp"}
FILE_FORMATS = {
    ".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl",
    ".parquet": "parquet", ".pq": "parquet", ".arrow": "arrow", ".feather": "arrow", ".ipc": "arrow",
    ".txt": "text", ".text": "text", ".md": "text",
}
HF_META_KEY = b"huggingface"


def cache_key(path: Path, extra: str = "") -> str:
    """A key that changes when the file or folder changes (size and mtime of every file)."""
    h = hashlib.sha1(f"{path}|{extra}".encode())
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        st = f.stat()
        h.update(f"{f}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:20]


def features_metadata(features: dict) -> dict[bytes, bytes]:
    """Schema metadata in the layout `datasets` writes, so Arrow files we write carry HF feature types."""
    return {HF_META_KEY: json.dumps({"info": {"features": features}}).encode()}


def read_features(schema: pa.Schema) -> dict:
    """HF feature types stored in an Arrow schema's metadata, or {} when there are none."""
    meta = schema.metadata or {}
    if HF_META_KEY not in meta:
        return {}
    try:
        features = json.loads(meta[HF_META_KEY]).get("info", {}).get("features", {})
    except (ValueError, AttributeError):
        return {}
    return features if isinstance(features, dict) else {}


def write_arrow(dest: Path, batches: Iterable[pa.RecordBatch | pa.Table], schema: pa.Schema | None = None) -> Path:
    """Write batches to an Arrow IPC file atomically (temp name, then rename)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    writer = None
    try:
        for batch in batches:
            if writer is None:
                schema = schema or batch.schema
                writer = pa.ipc.new_file(str(tmp), schema)
            if not batch.schema.equals(schema):
                try:
                    batch = batch.cast(schema)
                except (pa.ArrowInvalid, pa.ArrowTypeError, ValueError) as exc:
                    raise DatasetError(f"the columns change part-way through (mixed types): {exc}") from exc
            writer.write(batch)
        if writer is None:
            if schema is None:
                raise DatasetError("no rows and no columns were found")
            writer = pa.ipc.new_file(str(tmp), schema)
        writer.close()
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()
    return dest


def map_arrow(path: Path) -> pa.Table:
    """Memory-map an Arrow IPC file (file or stream format) without copying it into memory."""
    source = pa.memory_map(str(path), "r")
    try:
        return pa.ipc.open_file(source).read_all()
    except pa.ArrowInvalid:
        source.seek(0)
        return pa.ipc.open_stream(source).read_all()


def detect_format(path: Path) -> str:
    """Name the format of a file or folder, or explain what was expected."""
    if path.is_dir():
        if any((path / n).exists() for n in ("state.json", "dataset_dict.json", "dataset_info.json")):
            return "save_to_disk"
        if any(p.suffix.lower() in IMAGE_SUFFIXES for p in path.rglob("*") if p.is_file()):
            return "imagefolder"
        if any(p.suffix.lower() in (".txt", ".text") for p in path.iterdir()):
            return "textfolder"
        raise DatasetError(f"{path.name}: the folder holds no images, text files or `save_to_disk` dataset.")
    fmt = FILE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        known = ", ".join(sorted(FILE_FORMATS))
        raise DatasetError(f"{path.name}: unknown file type {path.suffix or '(none)'!r}; expected one of {known}.")
    return fmt


def _csv_batches(path: Path, delimiter: str, all_text: bool) -> Iterator[pa.RecordBatch]:
    parse = pacsv.ParseOptions(delimiter=delimiter)
    read = pacsv.ReadOptions(block_size=1 << 20)  # types are inferred from the first block
    convert = pacsv.ConvertOptions()
    if all_text:
        names = pacsv.open_csv(str(path), read_options=read, parse_options=parse).schema.names
        convert = pacsv.ConvertOptions(column_types={n: pa.string() for n in names})
    yield from pacsv.open_csv(str(path), read_options=read, parse_options=parse, convert_options=convert)


def _json_batches(path: Path) -> Iterator[pa.RecordBatch | pa.Table]:
    with open(path, "rb") as f:
        head = f.read(4096).lstrip()
    if head.startswith(b"["):  # a JSON array of records (has to be parsed whole)
        with open(path, encoding="utf-8") as f:
            records = json.load(f)
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise DatasetError("expected a JSON array of objects (records)")
        yield pa.Table.from_pylist(records)
        return
    if head.startswith(b"{"):
        yield from pajson.open_json(str(path), read_options=pajson.ReadOptions(block_size=8 << 20))
        return
    raise DatasetError("expected JSON Lines (one object a line) or a JSON array of objects")


def _text_batches(paths: list[Path], with_file: bool) -> Iterator[pa.RecordBatch]:
    for p in paths:
        with open(p, encoding="utf-8", errors="strict") as f:
            lines: list[str] = []
            start = 1
            for number, line in enumerate(f, 1):
                lines.append(line.rstrip("\r\n"))
                if len(lines) == BATCH_ROWS:
                    yield _text_batch(p, start, lines, with_file)
                    start, lines = number + 1, []
            if lines:
                yield _text_batch(p, start, lines, with_file)


def _text_batch(path: Path, start: int, lines: list[str], with_file: bool) -> pa.RecordBatch:
    cols = {"line": pa.array(range(start, start + len(lines)), pa.int64()), "text": pa.array(lines, pa.string())}
    if with_file:
        cols = {"file": pa.array([path.name] * len(lines), pa.string()), **cols}
    return pa.RecordBatch.from_pydict(cols)


def _image_batches(folder: Path) -> Iterator[pa.RecordBatch]:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    labels = sorted({p.parent.name for p in files if p.parent != folder})
    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    for i in range(0, len(files), 256):
        chunk = files[i:i + 256]
        cols = {
            "image": pa.array([{"bytes": p.read_bytes(), "path": p.name} for p in chunk], image_type),
            "file": pa.array([str(p.relative_to(folder)) for p in chunk]),
        }
        if labels:
            cols["label"] = pa.array([labels.index(p.parent.name) if p.parent != folder else None for p in chunk],
                                     pa.int64())
        batch = pa.RecordBatch.from_pydict(cols)
        features = {"image": {"_type": "Image"}, "file": {"_type": "Value", "dtype": "string"}}
        if labels:
            features["label"] = {"_type": "ClassLabel", "names": labels}
        yield batch.replace_schema_metadata(features_metadata(features))


def _batches(path: Path, fmt: str, all_text: bool) -> Callable[[], Iterable[pa.RecordBatch | pa.Table]]:
    if fmt == "parquet":
        return lambda: pq.ParquetFile(str(path), memory_map=True).iter_batches(batch_size=BATCH_ROWS)
    if fmt in ("csv", "tsv"):
        return lambda: _csv_batches(path, "," if fmt == "csv" else "\t", all_text)
    if fmt in ("json", "jsonl"):
        return lambda: _json_batches(path)
    if fmt == "text":
        return lambda: _text_batches([path], with_file=False)
    if fmt == "textfolder":
        return lambda: _text_batches(sorted(p for p in path.iterdir() if p.suffix.lower() in (".txt", ".text")),
                                     with_file=True)
    if fmt == "imagefolder":
        return lambda: _image_batches(path)
    if fmt == "arrow":
        return lambda: [map_arrow(path)]
    raise DatasetError(f"{path.name}: no reader for format {fmt!r}")


def convert(path: Path, fmt: str, dest: Path) -> list[str]:
    """Convert `path` to an Arrow IPC file at `dest`; returns notes for the user (e.g. a type fallback).

    Raises:
        DatasetError: naming the file and the problem (empty, corrupt, wrong format, mixed types).
    """
    if path.is_file() and path.stat().st_size == 0:
        raise DatasetError(f"{path.name} is empty (0 bytes).")
    notes: list[str] = []
    try:
        write_arrow(dest, _batches(path, fmt, all_text=False)())
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        message = str(exc).splitlines()[0]
        if fmt in ("csv", "tsv") and "conversion error" in message.lower():
            write_arrow(dest, _batches(path, fmt, all_text=True)())
            notes.append(f"{path.name}: a column mixes types ({message}); every column was read as text.")
        else:
            raise DatasetError(f"Could not read {path.name} as {fmt}: {message}") from exc
    except UnicodeDecodeError as exc:
        raise DatasetError(f"Could not read {path.name} as UTF-8 text: {exc.reason} at byte {exc.start}.") from exc
    except (ValueError, OSError) as exc:
        raise DatasetError(f"Could not read {path.name} as {fmt}: {str(exc).splitlines()[0]}") from exc
    except DatasetError as exc:
        raise DatasetError(f"Could not read {path.name} as {fmt}: {exc}") from exc
    finally:
        pa.default_memory_pool().release_unused()  # hand the decode buffers back to the OS
    return notes


def open_cached(path: Path, cache_dir: Path) -> tuple[pa.Table, list[str], Path]:
    """Convert a local file or folder (once) and map the cached Arrow file.

    Returns:
        The memory-mapped table, notes for the user, and the cache file's path.
    """
    fmt = detect_format(path)
    if fmt == "arrow":  # an Arrow IPC file is mapped in place; no copy
        try:
            table = map_arrow(path)
        except (pa.ArrowInvalid, OSError) as exc:
            raise DatasetError(f"Could not read {path.name} as Arrow IPC: {str(exc).splitlines()[0]}") from exc
        return table, [], path
    dest = cache_dir / f"{cache_key(path, fmt)}.arrow"
    notes: list[str] = []
    if not dest.exists():
        notes = convert(path, fmt, dest)
        logger.info("converted %s (%s) to %s", path, fmt, dest)
    return map_arrow(dest), notes, dest
