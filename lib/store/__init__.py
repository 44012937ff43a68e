"""The floor both sides stand on: the catalog, index files, durable file writes and model identity (no torch)."""
