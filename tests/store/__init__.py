"""Tests of lib/store."""
