"""streamer: multi-camera person detection, tracking and re-identification on NVIDIA Triton."""

__version__ = "0.1.0"
