"""Tests of lib/model."""
