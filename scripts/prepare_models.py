"""Convert the embedded default models once, printing progress; later runs find them ready and return at once."""

from __future__ import annotations

import logging

from config import AppConfig
from engines import gguf_openvino, openvino_text
from engines.embedded import EMBEDDED, ensure_converted, package_file


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    config = AppConfig.from_args([])
    for hub_id in EMBEDDED:
        folder = ensure_converted(hub_id, config.models_dir,
                                  lambda f, m: print(f"  [{f * 100:3.0f}%] {m}", flush=True))
        print(f"{hub_id}: ready at {folder}")
        gguf = package_file(EMBEDDED[hub_id])
        if gguf is not None and openvino_text.available():  # the default CPU engine's copy (engines/gguf_openvino.py)
            folder = gguf_openvino.ensure_ir(gguf, gguf_openvino.folder_for(gguf, config.models_dir), hub_id,
                                             lambda f, m: print(f"  [{f * 100:3.0f}%] {m}", flush=True))
            print(f"{hub_id}: OpenVINO copy ready at {folder}")


if __name__ == "__main__":
    main()
