"""Every named pipeline, by pipeline name (read by harden-opt, its flags and --help)."""

from harden.pipelines.base import Pipeline

PIPELINE_CLASSES: list[type[Pipeline]] = []

PIPELINES: dict[str, type[Pipeline]] = {cls.name: cls for cls in PIPELINE_CLASSES}
