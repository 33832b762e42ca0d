"""Files copied into the embedded server's runtime repository (run by Triton's Python backend)."""
