"""Every named pipeline, by pipeline name (read by harden-opt, its flags and --help)."""

from harden.pipelines.base import Pipeline
from harden.pipelines.harden_pipeline import HardenPipeline
from harden.pipelines.lower_to_linalg import LowerToLinalg

PIPELINE_CLASSES: list[type[Pipeline]] = [
    HardenPipeline,
    LowerToLinalg,
]

PIPELINES: dict[str, type[Pipeline]] = {cls.name: cls for cls in PIPELINE_CLASSES}
