"""What the service shows about itself: the sampler, the `/api/state` view (typed, with a published
schema) and the Prometheus exporter, three readers of the stats registry; the live view pictures;
the dashboard server and its page (`MetricsService` owns them all).
"""
