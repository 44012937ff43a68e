"""Tests of lib/data."""
