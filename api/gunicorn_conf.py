"""gunicorn settings from the project's settings object (defaults, config file, CLIPSEARCH_* env).

The app is preloaded: the model is loaded once in the master and shared copy-on-write by the workers;
index files are memory-mapped, so the page cache holds one copy for all of them.
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


def post_fork(server, worker):
    """Split the cores between workers, so that two workers do not fight over the same ones.

    faiss gets one thread per worker: a single query searched with OpenMP threads on 2 cores was 3-8x
    slower (thread start and spin per partition), and the workers already use the cores in parallel.
    """
    import faiss
    import torch

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(1, workers)))
    faiss.omp_set_num_threads(1)
