"""`streamer bench`: the pipeline measured against the model's raw speed, and the stages' own costs.

Top of the house beside the app: benchmarks build pipelines, sinks and stages like the service.
"""
