"""Exceptions that lib/ raises and that the CLIs and the API turn into clear messages or 4xx answers."""


class ClipSearchError(Exception):
    """Base of every error this project raises on purpose; its message is meant for the user."""


class ModelLoadError(ClipSearchError):
    """A model spec that cannot be turned into a working encoder."""


class IndexMismatchError(ClipSearchError):
    """An index built with another model, or of another dimension, than the one in use."""


class UnreadableImageError(ClipSearchError):
    """A file that is not an image Pillow can decode safely (empty, truncated, too large, not an image)."""
