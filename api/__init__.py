"""The HTTP layer: `create_app(settings)` builds the Flask app over lib's search service."""
from __future__ import annotations

import logging

from flask import Flask

from lib.settings import Settings, load_settings

log = logging.getLogger(__name__)


def configure_limits(app: Flask, settings: Settings) -> None:
    """The limits of a request, for the models (api.limits) and for werkzeug's own readers of the body."""
    from api.limits import Limits

    limits = Limits.from_settings(settings)
    app.extensions["clipsearch.limits"] = limits
    app.config.update(MAX_CONTENT_LENGTH=limits.upload_bytes, MAX_FORM_MEMORY_SIZE=limits.form_field_bytes(),
                      MAX_FORM_PARTS=limits.form_parts())


def create_app(settings: Settings | None = None, encoder=None) -> Flask:
    """Build the app: load the model (unless given one) and every index set built with it.

    Under gunicorn with --preload this runs once in the master, so workers share the weights; each worker
    then calls `warm_up` before it accepts requests (the encoder must not compile or run before the fork).
    """
    from api.bodies import ApiRequest, SafeJSONProvider
    from api.clip_retrieval import clip_bp
    from api.errors import register_error_handlers
    from api.memory import install_trim
    from api.metrics import TimedEncoder, install_metrics
    from api.openapi import install_document
    from api.routes import FileNameConverter, bp
    from api.security import register_security
    from api.seed import seed_bp
    from lib.model.loading import encoder_for
    from lib.serve.duplicate_finder import DuplicateFinder
    from lib.serve.index_set import LiveIndexSet
    from lib.serve.search import SearchService

    settings = settings or load_settings()
    encoder = encoder or encoder_for(settings)
    indexes = LiveIndexSet(settings.indexes_dir, settings.indexes_text_dir, encoder.identity, store=settings.store,
                           threads=settings.threads)
    app = Flask(__name__, static_folder=None)
    app.request_class, app.json = ApiRequest, SafeJSONProvider(app)
    app.config.update(SETTINGS=settings)
    configure_limits(app, settings)
    service = SearchService(encoder, indexes, text_cache_size=settings.text_cache_size)
    metrics = install_metrics(app, service)
    service.text_vector.on_lookup = metrics.text_looked_up
    service.encoder = TimedEncoder(encoder, metrics.encode)  # type: ignore[assignment]  # the encoder, timed
    app.extensions["clipsearch"] = service
    app.extensions["duplicates"] = DuplicateFinder(indexes)
    register_error_handlers(app)
    register_security(app)
    install_trim(app, settings.trim_after_kb * 1024)
    app.url_map.converters["file"] = FileNameConverter
    app.register_blueprint(bp)
    app.register_blueprint(seed_bp, url_prefix="/api")
    app.register_blueprint(clip_bp)
    install_document(app)
    current = indexes.current()
    log.info("serving %d dataset(s) and %d vocabularies with model %s", len(current.datasets),
             len(current.vocabularies), encoder.identity.spec)
    return app


def warm_up(app: Flask, threads: int | None = None) -> None:
    """Make the app ready in this process: the current index set (a worker forked from a master that
    loaded its set at start-up must not serve that one), and the encoder (compile, `threads` inference
    threads, one image and one query through it), so that the first request is as fast as the hundredth."""
    service = app.extensions["clipsearch"]
    service.indexes.refresh()
    service.encoder.warm_up(threads)
