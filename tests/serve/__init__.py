"""Tests of lib/serve."""
