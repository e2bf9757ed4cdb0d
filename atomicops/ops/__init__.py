"""Operating atomicops: per-process counts (:mod:`.observe`), Prometheus and
OpenTelemetry sinks, the dashboard's timeline and data, its chart, the flush check."""
