"""`streamer bench`: the pipeline measured against the model's raw speed, and the stages' own costs.

Top of the house beside the app: benchmarks build pipelines, sinks and stages like the service.
"""

from pathlib import Path

# The checkout's sample clip, relative to the working directory (`--clip` for another video).
DEFAULT_CLIP = Path("sample_videos") / "vtest_pedestrians.mp4"
