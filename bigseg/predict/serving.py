"""The models that serve scores, as the pipeline hands them on."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ServingModels:
    """XGBoost models per target, and which one serves each segment.

    ``models[target]`` maps ``"global"`` and segment ids to UBJSON bytes; ``choice[target]``
    maps each segment id to ``"segment"`` (its own model) or ``"global"``; ``features``
    are the model matrix's columns in order; ``sources[target]`` maps a segment id to
    ``"model"``, ``"bgnbd"`` or ``"blend"`` (:mod:`bigseg.predict.blend`; absent:
    ``"model"``), with the maps' coefficients in ``blend[target][source]``. Empty (no targets)
    before any training: the scores then carry segments only.
    """

    models: Mapping[str, Mapping] = field(default_factory=dict)
    choice: Mapping[str, Mapping[int, str]] = field(default_factory=dict)
    features: tuple[str, ...] | None = None
    sources: Mapping[str, Mapping[int, str]] = field(default_factory=dict)
    blend: Mapping[str, Mapping[str, list]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.models)


def model_file(target: str, key) -> str:
    """``churn.ubj`` (global) or ``churn.segment_3.ubj``: a model's file in a version."""
    return f"{target}.ubj" if key == "global" else f"{target}.segment_{int(key)}.ubj"


def model_key(target: str, file: str):
    """Inverse of :func:`model_file`: ``"global"`` or the segment id."""
    stem = file.removesuffix(".ubj")
    return "global" if stem == target else int(stem.split("segment_")[1])
