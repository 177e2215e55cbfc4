"""A stage's work on one scene, so a job plan can run the stage as one task per scene (jobs/scenes.py).

`inputs` lists everything the scene's artifact is made from (scene text, parameters, backend and its
version); its `fingerprint` is what a later attempt compares to decide whether the artifact it already has
can be reused. Same inputs, same fingerprint; any change that can alter the artifact changes it.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .artifacts import Artifact, StageFiles
from .audio import narrate_scene, narration_inputs
from .images import image_inputs, render_image
from .script import Scene

# (scene, total scenes, params, config) -> the inputs; (scene, files, ...) -> (the stored artifact, its sha256)
Inputs = Callable[..., dict[str, Any]]
Render = Callable[..., tuple[Artifact, str]]


@dataclass(frozen=True)
class SceneWork:
    kind: str  # the artifact kind: the stage's kind
    inputs: Inputs
    render: Render

    def fingerprint(self, scene: Scene, *, total: int, params: dict[str, Any], config: Any) -> str:
        return fingerprint(self.inputs(scene, total=total, params=params, config=config))

    def finish(self, files: StageFiles, artifacts: list[Artifact]) -> None:
        """Write the stage's manifest (scene order; keys of any attempt) once every scene is done."""
        files.write_manifest(self.kind, artifacts)


def fingerprint(inputs: dict[str, Any]) -> str:
    """sha256 of the inputs as canonical JSON."""
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


def _image_inputs(scene: Scene, *, total: int, params: dict[str, Any], config: Any) -> dict[str, Any]:
    return image_inputs(scene, total=total, params=params, config=config)


def _image(scene: Scene, files: StageFiles, *, total: int, params: dict[str, Any], config: Any) -> tuple[Artifact, str]:
    artifact, data = render_image(scene, files, total=total, params=params, config=config)
    return artifact, hashlib.sha256(data).hexdigest()


def _narration_inputs(scene: Scene, *, total: int, params: dict[str, Any], config: Any) -> dict[str, Any]:
    return narration_inputs(scene, params=params, config=config)


def _narration(scene: Scene, files: StageFiles, *, total: int, params: dict[str, Any],
               config: Any) -> tuple[Artifact, str]:
    return narrate_scene(scene, files, params=params, config=config)


IMAGE = SceneWork("image", _image_inputs, _image)
NARRATION = SceneWork("audio", _narration_inputs, _narration)
