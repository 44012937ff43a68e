"""Inputs: image files opened safely, dataset layouts, vocabularies and the synthetic demo data."""
