"""Per-camera tracking: ByteTrack from `trackers/`, plus the track lifecycle events it implies."""
