"""Image-caption scoring of a pairs table, and its figures."""
