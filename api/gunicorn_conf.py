"""gunicorn settings from the project's settings object (defaults, config file, CLIPSEARCH_* env).

The app is preloaded: the model is loaded once in the master and shared copy-on-write by the workers;
index files are memory-mapped, so the page cache holds one copy for all of them. Each worker compiles and
warms the encoder up itself, before it accepts requests: OpenVINO compiled before a fork runs
single-threaded (or hangs) in the child.
"""
import os

from lib.settings import load_settings

_settings = load_settings()
bind = f"{_settings.host}:{_settings.port}"
workers = _settings.workers
threads = _settings.threads
worker_class = "gthread"
preload_app = True
timeout = 120
graceful_timeout = 30
accesslog = "-"
errorlog = "-"
loglevel = "info"
control_socket_disable = True  # one fixed socket path per user: several servers on one machine would clash


def post_worker_init(worker):
    """Split the cores between workers, so that two workers do not fight over the same ones, and warm up."""
    from api import warm_up

    threads = _settings.inference_threads or max(1, (os.cpu_count() or 1) // max(1, workers))
    warm_up(worker.wsgi, threads)
