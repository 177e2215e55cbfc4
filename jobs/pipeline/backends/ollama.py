"""Scene splitting with a local Ollama model: POST /api/generate, JSON mode."""
from __future__ import annotations

import json
from typing import Any

from ..config import PipelineConfig
from ..errors import PermanentError
from .httpjson import post_json

BACKEND = "The scene splitter (Ollama)"

PROMPT = """Split the following video script into scenes for a narrated slideshow.
Answer with JSON only, in the form {{"scenes": [{{"heading": "short title or null", "text": "narration"}}]}}.
Keep the original wording of the narration; do not invent content.

SCRIPT:
{script}
"""


def split_scenes(script: str, *, config: PipelineConfig) -> list[tuple[str | None, str]]:
    """Ask Ollama to split `script`; returns (heading, narration) pairs."""
    if not config.ollama_url:
        raise PermanentError("Ollama is not configured")
    answer = post_json(
        f"{config.ollama_url.rstrip('/')}/api/generate",
        {"model": config.ollama_model, "prompt": PROMPT.format(script=script), "stream": False, "format": "json"},
        timeout=config.backend_timeout_s,
        backend=BACKEND,
    )
    if not isinstance(answer, dict) or not isinstance(answer.get("response"), str):
        raise PermanentError(f"{BACKEND} returned an answer without a 'response' text", detail=repr(answer)[:500])
    try:
        payload = json.loads(answer["response"])
    except ValueError as exc:
        raise PermanentError(f"{BACKEND} returned scenes that are not valid JSON", detail=answer["response"][:500]) from exc
    return parse_scene_list(payload)


def parse_scene_list(payload: Any) -> list[tuple[str | None, str]]:
    """Accept `[...]` or `{"scenes": [...]}` of `{"heading"?, "text"}` items; PermanentError otherwise."""
    items = payload.get("scenes") if isinstance(payload, dict) else payload
    if not isinstance(items, list) or not items:
        raise PermanentError(f"{BACKEND} returned no list of scenes", detail=repr(payload)[:500])
    scenes: list[tuple[str | None, str]] = []
    for number, item in enumerate(items, start=1):
        if not isinstance(item, dict):
            raise PermanentError(f"{BACKEND} returned scene {number} in the wrong shape", detail=repr(item)[:500])
        text, heading = item.get("text"), item.get("heading")
        if not isinstance(text, str) or not text.strip():
            raise PermanentError(f"{BACKEND} returned scene {number} without narration text", detail=repr(item)[:500])
        if heading is not None and not isinstance(heading, str):
            raise PermanentError(f"{BACKEND} returned scene {number} with a non-text heading", detail=repr(item)[:500])
        scenes.append(((heading or "").strip() or None, " ".join(text.split())))
    return scenes
