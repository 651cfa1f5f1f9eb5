"""The open dataset: a memory-mapped Arrow table, its feature types, pages and cells."""

from __future__ import annotations

import base64
import io
import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from databrowser.errors import DatasetError
from databrowser.formats import read_features


@dataclass(frozen=True)
class Column:
    """One column: name, type as the user reads it, and what kind of view suits it."""

    name: str
    type: str
    kind: str  # "number", "bool", "string", "label", "image", "binary", "list", "struct", "temporal", "other"
    label_names: tuple[str, ...] = ()


def _kind(arrow_type: pa.DataType, feature: dict) -> str:
    ftype = feature.get("_type")
    if ftype == "Image":
        return "image"
    if ftype == "ClassLabel":
        return "label"
    if pa.types.is_boolean(arrow_type):
        return "bool"
    if pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type) or pa.types.is_decimal(arrow_type):
        return "number"
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type) or pa.types.is_string_view(arrow_type):
        return "string"
    if pa.types.is_binary(arrow_type) or pa.types.is_large_binary(arrow_type):
        return "binary"
    if pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type) or pa.types.is_fixed_size_list(arrow_type):
        return "list"
    if pa.types.is_struct(arrow_type):
        names = {f.name for f in arrow_type}
        return "image" if names == {"bytes", "path"} else "struct"
    if pa.types.is_temporal(arrow_type):
        return "temporal"
    return "other"


def _type_text(arrow_type: pa.DataType, feature: dict) -> str:
    ftype = feature.get("_type")
    if ftype == "ClassLabel":
        names = feature.get("names", [])
        shown = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
        return f"ClassLabel({len(names)} classes: {shown})"
    if ftype == "Image":
        return "Image"
    if ftype == "Value":
        return str(feature.get("dtype", arrow_type))
    return str(arrow_type)


@dataclass
class OpenDataset:
    """An Arrow-backed dataset; `table` is memory-mapped, so pages are read from disk only when asked for."""

    name: str
    table: pa.Table
    source: str = ""
    notes: list[str] = field(default_factory=list)
    splits: tuple[str, ...] = ()
    split: str = ""
    configs: tuple[str, ...] = ()
    config: str = ""
    partial: bool = False
    columns: tuple[Column, ...] = ()
    _batches: list | None = field(default=None, repr=False)
    _starts: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        features = read_features(self.table.schema)
        if "__rowid" in self.table.column_names:
            raise DatasetError(f"{self.name}: the column name '__rowid' is reserved by the browser.")
        self.columns = tuple(
            Column(f.name, _type_text(f.type, features.get(f.name, {})), _kind(f.type, features.get(f.name, {})),
                   tuple(features.get(f.name, {}).get("names", ())))
            for f in self.table.schema
        )

    @property
    def num_rows(self) -> int:
        """Rows in the whole dataset."""
        return self.table.num_rows

    def column(self, name: str) -> Column:
        """The column called `name`, or a DatasetError listing the columns there are."""
        for col in self.columns:
            if col.name == name:
                return col
        raise DatasetError(f"No column {name!r}; the columns are {', '.join(c.name for c in self.columns)}.")

    def schema_rows(self) -> list[list[str]]:
        """[[column, type]] for the schema view."""
        return [[c.name, c.type] for c in self.columns]

    def take(self, row_ids: np.ndarray) -> pa.Table:
        """Rows by their index in the whole dataset, in the order given.

        A contiguous run is a zero-copy slice. Otherwise each record batch gives only its own rows, so a
        memory-mapped column is never concatenated (Table.take would copy whole chunked columns into memory).
        """
        row_ids = np.asarray(row_ids, dtype=np.int64)
        if len(row_ids) and row_ids[-1] - row_ids[0] == len(row_ids) - 1 and np.all(np.diff(row_ids) == 1):
            return self.table.slice(int(row_ids[0]), len(row_ids))
        if len(row_ids) == 0:
            return self.table.slice(0, 0)
        if self._batches is None:
            self._batches = self.table.to_batches()
            self._starts = np.cumsum([0] + [b.num_rows for b in self._batches])
        chunk = np.searchsorted(self._starts, row_ids, side="right") - 1
        order = np.argsort(chunk, kind="stable")
        pieces = []
        for c in np.unique(chunk):
            local = row_ids[order][chunk[order] == c] - self._starts[c]
            pieces.append(self._batches[c].take(pa.array(local)))
        gathered = pa.Table.from_batches(pieces, schema=self.table.schema)
        inverse = np.empty_like(order)
        inverse[order] = np.arange(len(order))
        return gathered.take(pa.array(inverse))

    def cell(self, row_id: int, column: str) -> Any:
        """One cell's full value (Python object) by row index in the whole dataset and column name."""
        if not 0 <= row_id < self.num_rows:
            raise DatasetError(f"Row {row_id} is out of range: the dataset has {self.num_rows:,} rows (0-based).")
        self.column(column)
        return self.table.column(column)[row_id].as_py()


def image_bytes(value: Any) -> bytes | None:
    """The encoded image inside an Image cell ({"bytes", "path"}) or raw bytes, or None."""
    if isinstance(value, dict):
        value = value.get("bytes")
    return value if isinstance(value, bytes) and value else None


def image_data_url(value: Any) -> str | None:
    """An Image cell as a data: URL (PNG/JPEG/...), for a table or a JSON answer."""
    data = image_bytes(value)
    if data is None:
        return None
    mime = "image/png" if data[:4] == b"\x89PNG" else "image/jpeg" if data[:2] == b"\xff\xd8" else "image/*"
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def pil_image(value: Any):
    """An Image cell decoded with Pillow, or None when the cell holds no image."""
    data = image_bytes(value)
    if data is None:
        return None
    from PIL import Image

    return Image.open(io.BytesIO(data))


def jsonable(value: Any, column: Column | None = None) -> Any:
    """A cell made safe for JSON: images as data URLs, other bytes as base64, NaN as None."""
    if column is not None and column.kind == "image":
        return image_data_url(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def cell_text(value: Any, column: Column, max_chars: int | None = None) -> str | int | float | bool | None:
    """A cell as the table shows it: labels by name, long text cut at `max_chars` with an ellipsis."""
    if value is None:
        return None
    if column.kind == "label" and isinstance(value, int) and 0 <= value < len(column.label_names):
        return f"{column.label_names[value]} ({value})"
    if column.kind in ("number", "bool") and not isinstance(value, (dict, list)):
        return value
    if column.kind == "image":
        data = image_bytes(value)
        return f"<image, {len(data):,} bytes>" if data else None
    text = value if isinstance(value, str) else json.dumps(jsonable(value), ensure_ascii=False, default=str)
    if max_chars is not None and len(text) > max_chars:
        return text[:max_chars] + "…"
    return text
