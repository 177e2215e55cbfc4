"""The Celery queues: the one place their names are written (settings, plans, metrics and `make run` read them).

One queue per kind of work, so each gets its own workers and a backlog of one never delays another.
Pure constants: config/settings.py imports this module before Django is set up.
"""
from __future__ import annotations

VIDEO = "video_generation"  # ffmpeg encodes: long and CPU-bound, few workers
IMAGE = "image_generation"  # scene images (built-in title cards or the SD backend)
AUDIO = "audio_generation"  # narration (espeak-ng or the tone fallback)
MAINTENANCE = "maintenance"  # periodic tasks (reaper, cleanup) and cancel terminations
WEBHOOKS = "webhooks"  # webhook deliveries: they wait on other people's servers, so never on a job's workers

ALL: tuple[str, ...] = (VIDEO, IMAGE, AUDIO, MAINTENANCE, WEBHOOKS)
