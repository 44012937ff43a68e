"""Tests of the HTTP layer (api/) and the pages."""
