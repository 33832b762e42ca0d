"""The pipeline: the cameras' loops, the shared detector and stages, and one fan-out to the sinks."""

from streamer.pipeline.pipeline import Pipeline, PipelineFailed, ResultObserver

__all__ = ["Pipeline", "PipelineFailed", "ResultObserver"]
