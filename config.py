"""Application settings: environment variables (the Spaces way) overridden by command-line flags.

One frozen `AppConfig` is built in `app.main()` and passed down; nothing reads settings as a global.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path

REPO_DIR = Path(__file__).resolve().parent
DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = ("auto", "float32", "bfloat16", "float16")
ENGINES = ("auto", "torch", "openvino")
OV_WEIGHTS = ("int4", "int8")


def _env_bool(name: str, default: bool = False) -> bool:
    value = os.getenv(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _env_float(name: str) -> float | None:
    value = os.getenv(name, "").strip()
    return float(value) if value else None


def default_data_dir() -> Path:
    """Where the app keeps converted models and user data unless told otherwise."""
    base = os.getenv("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "hf-playground"


def parse_auth(pairs: list[str] | tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """Turn ``user:password`` strings into pairs.

    Raises:
        ValueError: when an entry has no colon or an empty user name.
    """
    result = []
    for pair in pairs:
        user, sep, password = pair.partition(":")
        if not sep or not user:
            raise ValueError(f"--auth expects user:password, got {pair!r}")
        result.append((user, password))
    return tuple(result)


@dataclass(frozen=True)
class AppConfig:
    """Every setting the app reads, resolved once at start-up."""

    host: str = "127.0.0.1"
    port: int = 7860
    share: bool = False
    auth: tuple[tuple[str, str], ...] = ()
    device: str = "auto"
    dtype: str = "auto"
    offline: bool = False
    catalog_path: Path = REPO_DIR / "assets" / "catalog.json"
    data_dir: Path = field(default_factory=default_data_dir)
    allowed_dirs: tuple[Path, ...] = ()
    max_loaded_models: int = 3
    max_memory_gb: float | None = None
    idle_unload_s: float | None = None
    trust_remote_code: bool = False
    max_input_tokens: int = 4096
    max_new_tokens: int = 2048
    preload: bool = True
    torch_threads: int | None = None
    max_upload_mb: int = 200
    max_batch: int = 8
    split_linear: bool = True
    pack_linear: bool = True
    prefix_cache_mb: int = 256
    max_queue: int = 64
    api_keys: tuple[str, ...] = ()
    rate_limit_per_min: int = 60
    request_timeout_s: float = 300.0
    engine: str = "auto"
    ov_weights: str = "int4"

    def __post_init__(self) -> None:
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {DEVICES}, got {self.device!r}")
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {self.engine!r}")
        if self.ov_weights not in OV_WEIGHTS:
            raise ValueError(f"ov_weights must be one of {OV_WEIGHTS}, got {self.ov_weights!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {self.dtype!r}")
        if not 0 < self.port < 65536:
            raise ValueError(f"port must be between 1 and 65535, got {self.port}")
        if self.max_loaded_models < 1:
            raise ValueError(f"max_loaded_models must be at least 1, got {self.max_loaded_models}")
        if self.prefix_cache_mb < 0:
            raise ValueError(f"prefix_cache_mb must be >= 0, got {self.prefix_cache_mb}")
        if self.max_batch < 0 or self.max_queue < 1:
            raise ValueError(f"max_batch must be >= 0 and max_queue >= 1, got {self.max_batch} and {self.max_queue}")
        if self.rate_limit_per_min < 0 or self.request_timeout_s <= 0:
            raise ValueError(f"rate_limit_per_min must be >= 0 and request_timeout_s > 0, got "
                             f"{self.rate_limit_per_min} and {self.request_timeout_s}")

    @property
    def models_dir(self) -> Path:
        """Converted embedded models live here, outside the repository."""
        return self.data_dir / "models"

    @property
    def readable_dirs(self) -> tuple[Path, ...]:
        """Directories local model folders and files may be read from."""
        return (REPO_DIR / "assets", self.data_dir, *self.allowed_dirs)

    @classmethod
    def from_args(cls, argv: list[str] | None = None) -> AppConfig:
        """Build the config from env vars, then command-line flags on top."""
        args = build_parser().parse_args(argv)
        return cls(
            host=args.host,
            port=args.port,
            share=args.share,
            auth=parse_auth(args.auth),
            device=args.device,
            dtype=args.dtype,
            offline=args.offline,
            catalog_path=Path(args.catalog),
            data_dir=Path(args.data_dir),
            allowed_dirs=tuple(Path(p).resolve() for p in args.allow_dir),
            max_loaded_models=args.max_loaded_models,
            max_memory_gb=args.max_memory_gb,
            idle_unload_s=args.idle_unload_s,
            trust_remote_code=args.trust_remote_code,
            max_input_tokens=args.max_input_tokens,
            max_new_tokens=args.max_new_tokens,
            preload=not args.no_preload,
            torch_threads=args.threads,
            max_upload_mb=args.max_upload_mb,
            max_batch=args.max_batch,
            split_linear=not args.no_split_linear,
            pack_linear=not args.no_packed_linear,
            prefix_cache_mb=args.prefix_cache_mb,
            max_queue=args.max_queue,
            api_keys=tuple(k for k in args.api_key if k),
            rate_limit_per_min=args.rate_limit,
            request_timeout_s=args.request_timeout_s,
            engine=args.engine,
            ov_weights=args.ov_weights,
        )


def build_parser() -> argparse.ArgumentParser:
    """Flags, each defaulting to its environment variable."""
    env = os.getenv
    p = argparse.ArgumentParser(description="Hugging Face models playground")
    p.add_argument("--host", default=env("GRADIO_SERVER_NAME", "127.0.0.1"), help="env GRADIO_SERVER_NAME")
    p.add_argument("--port", type=int, default=int(env("GRADIO_SERVER_PORT", "7860")), help="env GRADIO_SERVER_PORT")
    p.add_argument("--share", action="store_true", default=_env_bool("PLAYGROUND_SHARE"), help="public gradio link")
    auth_env = [a for a in env("PLAYGROUND_AUTH", "").split(",") if a]
    p.add_argument("--auth", action="append", default=auth_env, metavar="USER:PASSWORD",
                   help="require login; repeatable (env PLAYGROUND_AUTH, comma separated)")
    p.add_argument("--device", choices=DEVICES, default=env("PLAYGROUND_DEVICE", "auto"))
    p.add_argument("--dtype", choices=DTYPES, default=env("PLAYGROUND_DTYPE", "auto"))
    p.add_argument("--offline", action="store_true",
                   default=_env_bool("PLAYGROUND_OFFLINE") or _env_bool("HF_HUB_OFFLINE"),
                   help="never contact the hub (env PLAYGROUND_OFFLINE or HF_HUB_OFFLINE)")
    p.add_argument("--catalog", default=env("PLAYGROUND_CATALOG", str(REPO_DIR / "assets" / "catalog.json")),
                   help="model catalog and presets (JSON)")
    p.add_argument("--data-dir", default=env("PLAYGROUND_DATA_DIR", str(default_data_dir())))
    allow_env = [d for d in env("PLAYGROUND_ALLOWED_DIRS", "").split(os.pathsep) if d]
    p.add_argument("--allow-dir", action="append", default=allow_env, metavar="DIR",
                   help="extra directory local models and files may be read from; repeatable")
    p.add_argument("--max-loaded-models", type=int, default=int(env("PLAYGROUND_MAX_LOADED_MODELS", "3")))
    p.add_argument("--max-memory-gb", type=float, default=_env_float("PLAYGROUND_MAX_MEMORY_GB"))
    p.add_argument("--idle-unload-s", type=float, default=_env_float("PLAYGROUND_IDLE_UNLOAD_S"),
                   help="unload a model unused for this many seconds")
    p.add_argument("--trust-remote-code", action="store_true", default=_env_bool("PLAYGROUND_TRUST_REMOTE_CODE"))
    p.add_argument("--max-input-tokens", type=int, default=int(env("MAX_INPUT_TOKENS", "4096")))
    p.add_argument("--max-new-tokens", type=int, default=int(env("MAX_NEW_TOKENS", "2048")))
    p.add_argument("--no-preload", action="store_true", default=_env_bool("PLAYGROUND_NO_PRELOAD"),
                   help="do not load the default chat model in the background at start")
    threads = env("PLAYGROUND_THREADS", "")
    p.add_argument("--threads", type=int, default=int(threads) if threads else None, help="torch CPU threads")
    p.add_argument("--max-upload-mb", type=int, default=int(env("PLAYGROUND_MAX_UPLOAD_MB", "200")))
    p.add_argument("--max-batch", type=int, default=int(env("PLAYGROUND_MAX_BATCH", "8")),
                   help="most generations sharing one model's forward passes; 0 runs one generate() per request")
    p.add_argument("--no-split-linear", action="store_true", default=_env_bool("PLAYGROUND_NO_SPLIT_LINEAR"),
                   help="keep torch's own linear layers while decoding on the CPU (by default small inputs are "
                        "split across the torch threads, and batches use a packed copy; see engines/split_linear.py)")
    p.add_argument("--no-packed-linear", action="store_true", default=_env_bool("PLAYGROUND_NO_PACKED_LINEAR"),
                   help="do not keep a oneDNN-packed copy of a CPU text model's linear weights (it speeds up batches "
                        "and prompts, and costs the weights' memory again; see engines/split_linear.py)")
    p.add_argument("--prefix-cache-mb", type=int, default=int(env("PLAYGROUND_PREFIX_CACHE_MB", "256")),
                   help="per batched text model, memory for earlier prompts' keys and values, so that a chat's next "
                        "message is prefilled only from where it differs (each person's own; 0: off)")
    p.add_argument("--max-queue", type=int, default=int(env("PLAYGROUND_MAX_QUEUE", "64")),
                   help="most requests waiting (per event in the UI queue, per model in the batch) before refusing")
    keys_env = [k for k in env("PLAYGROUND_API_KEYS", "").split(",") if k]
    p.add_argument("--api-key", action="append", default=keys_env, metavar="KEY",
                   help="require this bearer key on /v1; repeatable (env PLAYGROUND_API_KEYS, comma separated)")
    p.add_argument("--rate-limit", type=int, default=int(env("PLAYGROUND_RATE_LIMIT", "60")),
                   help="requests per minute per user (session, login or API key); 0 turns it off")
    p.add_argument("--request-timeout-s", type=float, default=float(env("PLAYGROUND_REQUEST_TIMEOUT_S", "300")),
                   help="a generation running longer is stopped")
    p.add_argument("--engine", choices=ENGINES, default=env("PLAYGROUND_ENGINE", "auto"),
                   help="text engine: openvino runs GGUF models (the embedded chat model included) quantized on the "
                        "CPU; torch runs everything through transformers; auto: openvino on the CPU for GGUF "
                        "models when installed, torch otherwise (env PLAYGROUND_ENGINE)")
    p.add_argument("--ov-weights", choices=OV_WEIGHTS, default=env("PLAYGROUND_OV_WEIGHTS", "int4"),
                   help="what hub models are converted to, once, for the openvino engine (env PLAYGROUND_OV_WEIGHTS)")
    return p
