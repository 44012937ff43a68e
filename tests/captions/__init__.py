"""Tests of lib/captions."""
