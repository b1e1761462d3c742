"""The trace data path: decode (OTLP) → spans → usage → attribution → pricing → load."""
