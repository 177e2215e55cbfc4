"""Scene images from an AUTOMATIC1111-compatible Stable Diffusion API: POST /sdapi/v1/txt2img."""
from __future__ import annotations

import base64
import binascii
import io

from PIL import Image, ImageOps, UnidentifiedImageError

from ..config import PipelineConfig
from ..errors import PermanentError
from .httpjson import post_json

BACKEND = "The image generator (Stable Diffusion)"
STEPS = 20
# SD prompts beyond ~75 tokens are ignored anyway; this keeps requests small.
MAX_PROMPT_CHARS = 1000


def txt2img(prompt: str, *, width: int, height: int, config: PipelineConfig) -> Image.Image:
    """Generate one image and return it fitted (cropped/scaled) to exactly width x height, in RGB."""
    if not config.sd_api_url:
        raise PermanentError("Stable Diffusion is not configured")
    request: dict = {"prompt": prompt[:MAX_PROMPT_CHARS], "width": width, "height": height, "steps": STEPS}
    if config.sd_model:  # AUTOMATIC1111 switches to this checkpoint and, told so, keeps it for the next image
        request["override_settings"] = {"sd_model_checkpoint": config.sd_model}
        request["override_settings_restore_afterwards"] = False
    answer = post_json(
        f"{config.sd_api_url.rstrip('/')}/sdapi/v1/txt2img",
        request,
        timeout=config.backend_timeout_s,
        backend=BACKEND,
    )
    images = answer.get("images") if isinstance(answer, dict) else None
    if not isinstance(images, list) or not images or not isinstance(images[0], str):
        raise PermanentError(f"{BACKEND} returned no image", detail=repr(answer)[:500])
    encoded = images[0].split(",", 1)[-1]  # tolerate a "data:image/png;base64," prefix
    try:
        image = Image.open(io.BytesIO(base64.b64decode(encoded, validate=True)))
        image.load()
    except (binascii.Error, ValueError, UnidentifiedImageError, OSError) as exc:
        raise PermanentError(f"{BACKEND} returned an unreadable image", detail=str(exc)) from exc
    # SD often rounds sizes to multiples of 8 or 64; the video needs the exact frame size.
    return ImageOps.fit(image.convert("RGB"), (width, height), method=Image.Resampling.LANCZOS)
