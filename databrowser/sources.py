"""Where datasets come from: samples, local files and folders, uploads, and the Hugging Face hub.

A source is named by one string, stable across sessions and usable from the API:
``sample:<name>``, ``hub:<owner/name>``, ``upload:<key>`` (an uploaded file already converted), or a path.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import pyarrow as pa

from databrowser.errors import DatasetError
from databrowser.formats import cache_key, detect_format, features_metadata, map_arrow, open_cached, write_arrow
from databrowser.paths import check_size, resolve_allowed
from databrowser.samples import SAMPLES
from databrowser.table import OpenDataset

logger = logging.getLogger(__name__)

STREAM_ROWS = 10_000


@dataclass(frozen=True)
class SourceRef:
    """What to open: a source string plus, for multi-split sources, the config and split; plain data for gr.State."""

    source: str
    config: str = ""
    split: str = ""
    stream: bool = False

    @property
    def key(self) -> str:
        """One string naming this exact table."""
        return f"{self.source}|{self.config}|{self.split}|{int(self.stream)}"

    def to_dict(self) -> dict:
        """A plain dict (deep-copyable) for gr.State."""
        return asdict(self)


def is_offline(offline_flag: bool) -> bool:
    """True when the app must not contact the hub (flag or HF_HUB_OFFLINE / HF_DATASETS_OFFLINE)."""
    flags = (os.getenv(name, "").strip().lower() for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))
    return offline_flag or any(value in ("1", "true", "yes", "on") for value in flags)


def open_sample(name: str, cache_dir: Path) -> OpenDataset:
    """Build (once) and map a registered sample."""
    sample = SAMPLES.get(name)
    if sample is None:
        raise DatasetError(f"No sample named {name!r}; the samples are {', '.join(SAMPLES)}.")
    dest = cache_dir / "samples" / f"{sample.name}-v{sample.version}.arrow"
    if not dest.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        sample.build(dest)
    return OpenDataset(sample.title, map_arrow(dest), source=f"sample:{name}")


def _pick_split(splits: list[str], wanted: str, name: str) -> str:
    if wanted:
        if wanted not in splits:
            raise DatasetError(f"{name} has no split {wanted!r}; its splits are {', '.join(splits)}.")
        return wanted
    return "train" if "train" in splits else splits[0]


def open_saved(path: Path, split: str) -> OpenDataset:
    """A folder written by `datasets.save_to_disk` (a Dataset or a DatasetDict), memory-mapped by `datasets`."""
    import datasets

    try:
        loaded = datasets.load_from_disk(str(path))
    except Exception as exc:  # datasets raises many types for a damaged folder
        raise DatasetError(f"Could not read {path.name} as a save_to_disk folder: {str(exc).splitlines()[0]}") from exc
    splits: tuple[str, ...] = ()
    if isinstance(loaded, datasets.DatasetDict):
        splits = tuple(loaded)
        split = _pick_split(list(splits), split, path.name)
        loaded = loaded[split]
    table = loaded.flatten_indices().data.table if loaded._indices is not None else loaded.data.table
    table = table.replace_schema_metadata(features_metadata(loaded.features.to_dict()))
    return OpenDataset(path.name, table, source=str(path), splits=splits, split=split)


def open_local(raw: str, allowed_dirs: Iterable[Path], cache_dir: Path, split: str = "") -> OpenDataset:
    """A file or folder under the allowed folders (checked after resolving symlinks)."""
    path = resolve_allowed(raw, allowed_dirs)
    if detect_format(path) == "save_to_disk":
        return open_saved(path, split)
    table, notes, _ = open_cached(path, cache_dir / "converted")
    return OpenDataset(path.name, table, source=str(path), notes=notes)


def convert_upload(path: Path, original_name: str, cache_dir: Path, max_mb: float) -> tuple[str, list[str]]:
    """Convert an uploaded file into the cache; returns its source string (``upload:<key>``) and notes."""
    check_size(path, max_mb)
    named = path
    if path.name != original_name and original_name:
        named = path.with_name(Path(original_name).name)
        if not named.exists():
            shutil.copyfile(path, named)
    fmt = detect_format(named)
    if fmt not in ("csv", "tsv", "json", "jsonl", "parquet", "arrow", "text"):
        raise DatasetError(f"{named.name}: uploads must be one file (CSV, TSV, JSON, JSON Lines, Parquet, Arrow, "
                           f"text); got {fmt}.")
    key = cache_key(named, fmt)
    dest = cache_dir / "uploads" / f"{key}.arrow"
    notes: list[str] = []
    if not dest.exists():
        if fmt == "arrow":
            try:
                write_arrow(dest, [map_arrow(named)])
            except (pa.ArrowInvalid, OSError) as exc:
                raise DatasetError(f"Could not read {named.name} as Arrow IPC: {str(exc).splitlines()[0]}") from exc
        else:
            _, notes, converted = open_cached(named, cache_dir / "converted")
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(converted, dest)
        (dest.with_suffix(".name")).write_text(named.name)
    return f"upload:{key}", notes


def open_upload(key: str, cache_dir: Path) -> OpenDataset:
    """An upload converted earlier by `convert_upload`."""
    if not key.isalnum():
        raise DatasetError(f"Not an upload key: {key!r}.")
    dest = cache_dir / "uploads" / f"{key}.arrow"
    if not dest.exists():
        raise DatasetError("That upload is no longer in the cache; upload the file again.")
    name_file = dest.with_suffix(".name")
    name = name_file.read_text() if name_file.exists() else key
    return OpenDataset(name, map_arrow(dest), source=f"upload:{key}")


def open_hub(ref: SourceRef, cache_dir: Path, offline: bool) -> OpenDataset:
    """A hub dataset by id: whole (memory-mapped by `datasets`) or, when streaming, its first STREAM_ROWS rows."""
    repo = ref.source.removeprefix("hub:").strip()
    if is_offline(offline):
        raise DatasetError(f"Cannot open hub dataset {repo!r}: the app is offline (--offline or HF_HUB_OFFLINE=1). "
                           "Open a sample or a local file instead.")
    import datasets

    try:
        configs = tuple(datasets.get_dataset_config_names(repo))
        config = ref.config or (configs[0] if configs else "")
        splits = list(datasets.get_dataset_split_names(repo, config or None))
        split = _pick_split(splits, ref.split, repo)
        if ref.stream:
            return _stream_hub(repo, config, split, configs, splits, cache_dir)
        loaded = datasets.load_dataset(repo, config or None, split=split)
    except DatasetError:
        raise
    except Exception as exc:  # hub, network and builder errors come in many types
        raise DatasetError(f"Could not open hub dataset {repo!r}: {str(exc).splitlines()[0]}") from exc
    table = loaded.data.table.replace_schema_metadata(features_metadata(loaded.features.to_dict()))
    return OpenDataset(repo, table, source=ref.source, configs=configs, config=config, splits=tuple(splits),
                       split=split)


def _stream_hub(repo: str, config: str, split: str, configs: tuple, splits: list, cache_dir: Path) -> OpenDataset:
    import datasets

    stream = datasets.load_dataset(repo, config or None, split=split, streaming=True)
    meta = features_metadata(stream.features.to_dict()) if stream.features else None

    def batches():
        seen = 0
        for batch in stream.with_format("arrow").iter(batch_size=1000):
            batch = batch.slice(0, STREAM_ROWS - seen)
            seen += batch.num_rows
            yield batch.replace_schema_metadata(meta) if meta else batch
            if seen >= STREAM_ROWS:
                break

    dest = cache_dir / "hub" / f"{repo.replace('/', '__')}-{config}-{split}-stream.arrow"
    write_arrow(dest, batches())
    return OpenDataset(repo, map_arrow(dest), source=f"hub:{repo}", configs=configs, config=config,
                       splits=tuple(splits), split=split, partial=True,
                       notes=[f"Streaming: showing the first {STREAM_ROWS:,} rows of {repo} ({split})."])
