"""Reading uploaded documents into text, refusing what is not text with a message that says why.

Every file is read and checked before anything is written, so a bad file in a batch leaves the index untouched.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from errors import InvalidInput

logger = logging.getLogger(__name__)

TEXT_TYPES = (".txt", ".md", ".markdown", ".text")
PDF_TYPES = (".pdf",)
MAX_DOCUMENT_CHARS = 20_000_000  # about 3M words: larger texts should be split before indexing


class DocumentError(InvalidInput):
    """A document cannot be indexed; the message names the file, what was expected and what arrived."""


@dataclass(frozen=True)
class Document:
    """A document's name (as shown in sources) and its text."""

    name: str
    text: str


def supported_types() -> tuple[str, ...]:
    return TEXT_TYPES + (PDF_TYPES if _has_pypdf() else ())


def _has_pypdf() -> bool:
    try:
        import pypdf  # noqa: F401
    except ImportError:
        return False
    return True


def decode_text(data: bytes, name: str) -> str:
    """UTF-8 (with or without BOM) or UTF-16 with a BOM; binary data is refused."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise DocumentError(f"{name}: starts with a UTF-16 mark but is not valid UTF-16 ({exc.reason})") from None
    if b"\x00" in data[:8192]:
        raise DocumentError(f"{name}: looks like a binary file (it contains NUL bytes); expected plain text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DocumentError(f"{name}: is not UTF-8 text (undecodable byte 0x{data[exc.start]:02x} at offset "
                            f"{exc.start}); save it as UTF-8") from None


def read_pdf(path: Path, name: str) -> str:
    """The text of every page (pypdf); scanned PDFs without a text layer are refused."""
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(str(path))
        if reader.is_encrypted:
            raise DocumentError(f"{name}: the PDF is encrypted; decrypt it first")
        text = "\n\n".join(page.extract_text() or "" for page in reader.pages)
    except (PdfReadError, ValueError, KeyError, TypeError) as exc:
        if isinstance(exc, DocumentError):
            raise
        raise DocumentError(f"{name}: is not a readable PDF ({exc})") from None
    if not text.strip():
        raise DocumentError(f"{name}: the PDF has no text layer (a scan?); run OCR first")
    return text


def read_document(path: str | Path, name: str = "", max_bytes: int = 200 * 2**20) -> Document:
    """Read one uploaded file.

    Args:
        path: where the file is.
        name: the name the user gave it (defaults to the file name).
        max_bytes: larger files are refused.

    Raises:
        DocumentError: unsupported type, too large, binary, undecodable or empty.
    """
    path = Path(path)
    name = name or path.name
    suffix = Path(name).suffix.lower() or path.suffix.lower()
    if suffix not in supported_types():
        raise DocumentError(f"{name}: unsupported type {suffix or '(no extension)'}; expected one of "
                            f"{', '.join(supported_types())}")
    size = path.stat().st_size
    if size > max_bytes:
        raise DocumentError(f"{name}: is {size / 2**20:.1f} MB; the limit is {max_bytes / 2**20:.0f} MB")
    text = read_pdf(path, name) if suffix in PDF_TYPES else decode_text(path.read_bytes(), name)
    return check_text(name, text)


def check_text(name: str, text: str) -> Document:
    """A Document, or DocumentError when the text is empty or larger than MAX_DOCUMENT_CHARS."""
    if not text.strip():
        raise DocumentError(f"{name}: is empty; expected some text")
    if len(text) > MAX_DOCUMENT_CHARS:
        raise DocumentError(f"{name}: has {len(text):,} characters; the limit per document is "
                            f"{MAX_DOCUMENT_CHARS:,}: split it into smaller files")
    return Document(name=name, text=text)


def column_documents(ds, column: str, max_rows: int | None = None, batch_rows: int = 5000):
    """One Document per non-empty cell of a text column of an open dataset (databrowser.table.OpenDataset).

    Documents are named '<dataset>:<column>#<row>'. Yields lazily, so a large column is never held at once.

    Raises:
        DocumentError: when the column is not a text column.
    """
    col = ds.column(column)
    if col.kind != "string":
        raise DocumentError(f"column {column!r} holds {col.kind} values ({col.type}); expected a text column")
    total = ds.num_rows if max_rows is None else min(ds.num_rows, int(max_rows))
    values = ds.table.column(column)
    for start in range(0, total, batch_rows):
        for offset, value in enumerate(values.slice(start, min(batch_rows, total - start)).to_pylist()):
            if isinstance(value, str) and value.strip():
                yield Document(name=f"{ds.name}:{column}#{start + offset}", text=value[:MAX_DOCUMENT_CHARS])
