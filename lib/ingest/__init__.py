"""The write side: bring image and vocabulary index sets up to date (never imported by lib/serve)."""
