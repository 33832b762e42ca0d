"""Multi-object trackers working on plain numpy detections; independent of the service."""

from trackers.bytetrack import ByteTrack, TrackerOutput
from trackers.settings import ByteTrackSettings

__all__ = ["ByteTrack", "ByteTrackSettings", "TrackerOutput"]
