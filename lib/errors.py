"""Every exception lib/ raises on purpose; the CLIs and the API turn them into clear messages or 4xx answers."""


class ClipSearchError(Exception):
    """Base of every error this project raises on purpose; its message is meant for the user."""


class SettingsError(ClipSearchError, ValueError):
    """A config file, environment variable or flag has a value that cannot be used."""


class ModelLoadError(ClipSearchError):
    """A model spec that cannot be turned into a working encoder."""


class IndexMismatchError(ClipSearchError):
    """An index built with another model, or of another dimension, than the one in use."""


class IndexFileError(ClipSearchError):
    """An index file that is missing, damaged, or not the one the catalog recorded."""


class CatalogDamagedError(ClipSearchError):
    """A catalog file that is not a sound SQLite database (truncated, overwritten, malformed); the message names it."""


class DiskFullError(ClipSearchError):
    """No space left on the filesystem a build writes to; what was committed before it is kept."""


class UnreadableImageError(ClipSearchError):
    """A file that is not an image Pillow can decode safely (empty, truncated, too large, not an image)."""


class VocabularyError(ClipSearchError):
    """A vocabulary source that cannot be read or has no usable entries."""


class NotFoundError(ClipSearchError):
    """A dataset, partition, vocabulary or image id that the index set does not have."""


class QueryError(ClipSearchError):
    """A search that cannot be read: a malformed term, terms that cancel out, filters that contradict."""


class CaptionTableError(ClipSearchError):
    """A pairs table (CSV or Parquet) that cannot be read or lacks the image or caption column."""


class TrainingDataError(ClipSearchError):
    """A training folder without usable captioned images."""


class EmbeddingsFolderError(ClipSearchError):
    """A clip-retrieval embeddings folder that is incomplete or whose files disagree with each other."""


class ClusterError(ClipSearchError):
    """A Ray cluster that cannot be reached, or that went away while a build was running."""


class ClusterLostError(ClusterError):
    """The Ray cluster went away mid-build. Ray's state in this process can no longer be torn down safely
    (its C++ teardown against a dead cluster ended the process with SIGSEGV now and then, in CI), so the
    command line leaves at once after its one line: everything finished is already committed."""

    leave_at_once = True


class StoreError(ClipSearchError):
    """A `store` database that cannot be used: a wrong URL, a refused login, no pgvector extension."""


class StoreUnavailableError(StoreError):
    """The `store` database went away (or is not reachable yet); the server answers 503 until it is back."""


class NotCalibratedError(ClipSearchError):
    """Duplicate thresholds asked of a dataset that has none calibrated for the model in use, and none given."""


def first_line(err: BaseException) -> str:
    """The first line of an error's message (or its type's name): for one-line reports of what went wrong."""
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__
