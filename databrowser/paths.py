"""Path safety: a user-given path is resolved (symlinks followed) and must land inside an allowed folder."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from databrowser.errors import RefusedError


def resolve_allowed(raw: str | Path, allowed_dirs: Iterable[Path]) -> Path:
    """Resolve a user-given path and check it lies inside one of the allowed folders.

    Args:
        raw: the path as the user typed it.
        allowed_dirs: folders the operator allows reading from.

    Returns:
        The resolved absolute path.

    Raises:
        RefusedError: when the path contains `..`, or resolves (after following symlinks) outside every allowed
            folder, or does not exist.
    """
    text = str(raw).strip()
    if not text:
        raise RefusedError("No path given: expected a file or folder inside the allowed folders.")
    if "\x00" in text:
        raise RefusedError("The path contains a NUL character.")
    path = Path(text).expanduser()
    if ".." in path.parts:
        raise RefusedError(f"Refused {text!r}: paths may not contain '..'.")
    roots = [Path(d).expanduser().resolve() for d in allowed_dirs]
    if not path.is_absolute():
        # A relative path is taken inside the first allowed folder that holds it.
        candidates = [root / path for root in roots]
        path = next((c for c in candidates if c.exists()), candidates[0] if candidates else path)
    resolved = path.resolve()
    if not any(resolved == root or resolved.is_relative_to(root) for root in roots):
        allowed = ", ".join(str(r) for r in roots) or "(none configured)"
        raise RefusedError(f"Refused {text!r}: it resolves to {resolved}, outside the allowed folders: {allowed}.")
    if not resolved.exists():
        raise RefusedError(f"{text!r} does not exist.")
    return resolved


def check_size(path: Path, max_mb: float) -> None:
    """Refuse an upload larger than `max_mb` megabytes."""
    size = path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    if size > max_mb * 1024 * 1024:
        raise RefusedError(f"{path.name} is {size / 1e6:.1f} MB; uploads are limited to {max_mb} MB.")
