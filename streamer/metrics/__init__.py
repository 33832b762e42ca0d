"""Per-camera metrics, the Prometheus endpoint and the live dashboard.

Kept import-light: streamer.config imports the settings module from here.
"""
