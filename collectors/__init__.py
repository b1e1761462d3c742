"""Collectors: one module per source, each registered by name in `collectors.registry`."""
