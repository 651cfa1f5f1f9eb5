"""Search, filter and sort through DuckDB over the open Arrow table, and nothing else.

Safety, in layers: each dataset gets its own in-memory DuckDB connection that sees one view, `data`; external
access (files, ATTACH, COPY, extensions) is disabled and the configuration locked before any user text runs; the
user's WHERE / ORDER BY text is checked (no `;`, no statement keywords, no file-reading functions) and the composed
query must parse as exactly one SELECT; every query is interrupted after a time limit.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa

from databrowser.errors import DatasetError, QueryTimeoutError, RefusedError

logger = logging.getLogger(__name__)

FORBIDDEN_WORDS = {
    "attach", "detach", "copy", "install", "load", "pragma", "set", "reset", "call", "export", "import", "create",
    "insert", "update", "delete", "drop", "alter", "use", "checkpoint", "vacuum", "summarize", "describe", "show",
    "truncate", "merge", "prepare", "execute", "deallocate", "begin", "commit", "rollback", "grant", "secret",
}
FORBIDDEN_FUNCTION = re.compile(
    r"^(read_\w*|\w*_scan|glob|sniff_csv|query|query_table|getenv|duckdb_\w*|pragma_\w*|iceberg_\w*|delta_\w*"
    r"|sqlite_\w*|postgres_\w*|mysql_\w*|http\w*|load_\w*|which_secret|current_setting|parquet_\w*)$")
_STRINGS = re.compile(r"'(?:[^']|'')*'")
_IDENTS = re.compile(r'"(?:[^"]|"")*"')


@dataclass(frozen=True)
class ViewSpec:
    """Which rows the user is looking at: a full-text search, a WHERE filter and an ORDER BY."""

    search: str = ""
    where: str = ""
    order_by: str = ""

    @property
    def is_all(self) -> bool:
        """True when the view is the whole dataset in its stored order."""
        return not (self.search.strip() or self.where.strip() or self.order_by.strip())


def check_fragment(text: str, clause: str) -> str:
    """Refuse a WHERE / ORDER BY fragment that could do more than read the open dataset.

    Raises:
        RefusedError: naming the offending word or character.
    """
    text = text.strip()
    bare = _IDENTS.sub(" __ident__ ", _STRINGS.sub(" __str__ ", text))
    if "'" in bare or '"' in bare:
        raise RefusedError(f"{clause}: a quote is not closed in {text!r}.")
    if ";" in bare:
        raise RefusedError(f"{clause}: ';' is not allowed: give one expression, not statements.")
    if "--" in bare or "/*" in bare:
        raise RefusedError(f"{clause}: comments are not allowed.")
    if bare.count("(") != bare.count(")"):
        raise RefusedError(f"{clause}: parentheses do not balance in {text!r}.")
    for word in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", bare):
        if word.lower() in FORBIDDEN_WORDS:
            raise RefusedError(f"{clause}: {word.upper()} is not allowed; only an expression over the open dataset "
                               f"is (e.g. `label = 3 AND length(text) > 40`; quote a column named {word!r} "
                               f"as \"{word}\").")
    # a function may be called by a quoted name too: "read_text"('...')
    quoted_calls = re.findall(r'"((?:[^"]|"")*)"\s*\(', _STRINGS.sub(" __str__ ", text))
    for name in [*re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*\(", bare), *quoted_calls]:
        if FORBIDDEN_FUNCTION.match(name.lower()):
            raise RefusedError(f"{clause}: the function {name}() is not allowed: a filter may only read the open "
                               f"dataset, not files, settings or other databases.")
    if re.search(r"\bfrom\s+__str__", bare, re.IGNORECASE):
        raise RefusedError(f"{clause}: reading from a quoted path is not allowed.")
    return text


def quote_ident(name: str) -> str:
    """A column name quoted for SQL."""
    return '"' + name.replace('"', '""') + '"'


class SqlEngine:
    """One locked-down DuckDB connection over one Arrow table, exposed as the view `data` with a `__rowid`."""

    def __init__(self, table: pa.Table, *, timeout_s: float = 10.0, threads: int = 2, memory_limit: str = "1GB"):
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        rowid = pa.array(np.arange(table.num_rows, dtype=np.int64))
        self._data = table.append_column("__rowid", rowid)
        self._con = duckdb.connect(":memory:", config={"threads": threads, "memory_limit": memory_limit})
        self._con.register("data", self._data)
        for statement in ("SET enable_external_access = false", "SET allow_persistent_secrets = false",
                          "SET autoinstall_known_extensions = false", "SET autoload_known_extensions = false",
                          "SET lock_configuration = true"):
            self._con.execute(statement)

    def close(self) -> None:
        """Release the connection."""
        with self._lock:
            self._con.close()

    def run(self, sql: str, params: list | None = None, timeout_s: float | None = None) -> pa.Table:
        """Run one SELECT (built by this package) with a time limit; returns an Arrow table.

        Raises:
            RefusedError: the SQL is not exactly one SELECT, or touches what it may not.
            QueryTimeoutError: it ran past the time limit.
            DatasetError: any other SQL error, first line of DuckDB's message.
        """
        limit = self.timeout_s if timeout_s is None else timeout_s
        with self._lock:
            try:
                statements = self._con.extract_statements(sql)
            except duckdb.Error as exc:
                raise DatasetError(f"SQL error: {str(exc).splitlines()[0]}") from exc
            if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
                raise RefusedError("Only a single SELECT over the open dataset is allowed.")
            timer = threading.Timer(limit, self._con.interrupt)
            timer.start()
            try:
                return self._con.sql(sql, params=params or None).to_arrow_table()
            except duckdb.InterruptException as exc:
                raise QueryTimeoutError(f"The query ran longer than {limit:g} s and was stopped.") from exc
            except duckdb.PermissionException as exc:
                raise RefusedError("Refused: a filter may only read the open dataset "
                                   f"({str(exc).splitlines()[0]}).") from exc
            except duckdb.Error as exc:
                raise DatasetError(f"SQL error: {str(exc).splitlines()[0]}") from exc
            finally:
                timer.cancel()

    def condition(self, spec: ViewSpec, string_columns: list[str]) -> tuple[str, list]:
        """The WHERE condition (SQL, parameters) for a view; 'true' for the whole dataset."""
        parts: list[str] = []
        params: list = []
        if spec.where.strip():
            parts.append(f"({check_fragment(spec.where, 'Filter')})")
        if spec.search.strip():
            if not string_columns:
                raise DatasetError("Search needs a text column; this dataset has none (use the filter instead).")
            needle = spec.search.strip()
            parts.append("(" + " OR ".join(f"contains(lower({quote_ident(c)}), ?)" for c in string_columns) + ")")
            params.extend([needle.lower()] * len(string_columns))
        return (" AND ".join(parts) or "true"), params

    def select_rows(self, spec: ViewSpec, string_columns: list[str]) -> np.ndarray:
        """Row indices (in the whole dataset) of the rows the view shows, in its order."""
        where, params = self.condition(spec, string_columns)
        order = "__rowid"
        if spec.order_by.strip():
            order = f"{check_fragment(spec.order_by, 'Sort')}, __rowid"
        sql = f"SELECT __rowid FROM data WHERE {where} ORDER BY {order}"
        result = self.run(sql, params)
        return result.column(0).to_numpy().astype(np.int64, copy=False)
