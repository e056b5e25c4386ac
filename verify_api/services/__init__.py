"""Application services: one call per use case, wiring directory, signing and converters."""
