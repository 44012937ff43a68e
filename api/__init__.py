"""The HTTP layer: `create_app(settings)` builds the Flask app over lib's search service."""
from __future__ import annotations

import logging

from flask import Flask

from lib.settings import Settings, load_settings

log = logging.getLogger(__name__)


def allow_any_origin(response):
    """CORS for pages served from elsewhere (another port, a static host): the API has no cookies or auth."""
    response.headers["Access-Control-Allow-Origin"] = "*"
    response.headers["Access-Control-Allow-Headers"] = "Content-Type"
    response.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
    return response


def create_app(settings: Settings | None = None, encoder=None) -> Flask:
    """Build the app: load the model (unless given one) and every index set built with it.

    Under gunicorn with --preload this runs once in the master, so workers share the weights; each worker
    then calls `warm_up` before it accepts requests (the encoder must not compile or run before the fork).
    """
    from api.errors import register_error_handlers
    from api.routes import FileNameConverter, bp
    from lib.model.loading import encoder_for
    from lib.serve.index_set import LiveIndexSet
    from lib.serve.search import SearchService

    settings = settings or load_settings()
    encoder = encoder or encoder_for(settings)
    indexes = LiveIndexSet(settings.indexes_dir, settings.indexes_text_dir, encoder.identity)
    app = Flask(__name__, static_folder=None)
    app.config.update(SETTINGS=settings, MAX_CONTENT_LENGTH=settings.max_upload_mb * 1024 * 1024,
                      JSON_SORT_KEYS=False)
    app.extensions["clipsearch"] = SearchService(encoder, indexes)
    register_error_handlers(app)
    app.url_map.converters["file"] = FileNameConverter
    app.register_blueprint(bp)
    app.after_request(allow_any_origin)
    current = indexes.current()
    log.info("serving %d dataset(s) and %d vocabularies with model %s", len(current.datasets),
             len(current.vocabularies), encoder.identity.spec)
    return app


def warm_up(app: Flask, threads: int | None = None) -> None:
    """Make the app's encoder ready in this process (compile, `threads` inference threads, one image and
    one query through it), so that the first request is as fast as the hundredth."""
    app.extensions["clipsearch"].encoder.warm_up(threads)
