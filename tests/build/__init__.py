"""Tests of lib/build."""
