"""Where results go: sinks that never block the pipeline."""
