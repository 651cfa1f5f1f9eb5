"""Export and import of a chat conversation as JSON."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import gradio as gr

from errors import InvalidInput

FORMAT = "hf-playground-chat"
MAX_IMPORT_BYTES = 5 * 2**20
ROLES = {"user", "assistant", "system"}

Messages = list[dict[str, str]]


def conversation_json(history: Messages, system_prompt: str, model: str) -> dict[str, Any]:
    """The exported document: format tag, model, system prompt and messages."""
    return {
        "format": FORMAT, "version": 1, "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "model": model, "system_prompt": system_prompt, "messages": history,
    }


def export_file(history: Messages, system_prompt: str, model: str) -> gr.File:
    """Write the conversation to a JSON file the user can download."""
    if not history:
        raise gr.Error("Nothing to export: the conversation is empty.")
    folder = Path(tempfile.mkdtemp(prefix="chat-export-"))
    path = folder / f"conversation-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(conversation_json(history, system_prompt, model), ensure_ascii=False, indent=2),
                    encoding="utf-8")
    return gr.File(value=str(path), visible=True)


def parse_conversation(data: Any) -> tuple[Messages, str | None]:
    """Validate an imported document (ours, or a bare list of role/content messages).

    Returns:
        The messages without any system message, and the system prompt if the document had one.

    Raises:
        ValueError: saying which message is malformed and what was expected.
    """
    system = None
    if isinstance(data, dict):
        system = data.get("system_prompt")
        data = data.get("messages")
    if not isinstance(data, list):
        raise InvalidInput("expected a JSON list of messages, or an object with a 'messages' list")
    messages: Messages = []
    for i, message in enumerate(data):
        if not isinstance(message, dict) or message.get("role") not in ROLES or not isinstance(
                message.get("content"), str):
            raise InvalidInput(f"message {i} must be an object with role user/assistant/system and text content, "
                             f"got {str(message)[:80]!r}")
        if message["role"] == "system":
            system = message["content"]
        else:
            messages.append({"role": message["role"], "content": message["content"]})
    if system is not None and not isinstance(system, str):
        raise InvalidInput("system_prompt must be text")
    return messages, system


def import_file(path: str | None, history: Messages, system_prompt: str) -> tuple[Messages, Messages, str]:
    """Replace the conversation with an uploaded one; a bad file changes nothing."""
    if not path:
        raise gr.Error("No file was uploaded.")
    file = Path(path)
    if file.stat().st_size > MAX_IMPORT_BYTES:
        raise gr.Error(f"{file.name} is {file.stat().st_size // 2**20} MB; conversations up to "
                       f"{MAX_IMPORT_BYTES // 2**20} MB can be imported.")
    try:
        messages, system = parse_conversation(json.loads(file.read_text(encoding="utf-8")))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise gr.Error(f"{file.name} is not a JSON file ({exc}); your conversation is unchanged.") from None
    except ValueError as exc:
        raise gr.Error(f"{file.name}: {exc}; your conversation is unchanged.") from None
    return messages, messages, system if system is not None else system_prompt
