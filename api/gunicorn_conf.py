"""gunicorn settings from the project's settings object (defaults, config file, CLIPSEARCH_* env).

The app is preloaded: the model is loaded once in the master and shared copy-on-write by the workers;
index files are memory-mapped, so the page cache holds one copy for all of them. Each worker compiles and
warms the encoder up itself, before it accepts requests: OpenVINO compiled before a fork runs
single-threaded (or hangs) in the child. scripts/api.sh binds gunicorn to a private unix socket when nginx
is in front (--bind on its command line wins over `bind`).
"""
import os

from api.launch import GUNICORN_TIMEOUT
from lib.settings import load_settings

_settings = load_settings()
bind = f"{_settings.host}:{_settings.port}"
workers = _settings.workers
threads = _settings.threads
worker_class = "api.gunicorn_worker.JsonErrorWorker"  # gunicorn's own refusals in the API's JSON shape
preload_app = True
timeout = GUNICORN_TIMEOUT
graceful_timeout = 30
limit_request_line = 8190  # as nginx's 8 KiB, so both refuse the same request lines
max_requests = _settings.max_requests  # a worker is replaced after this many (a backstop for memory) ...
max_requests_jitter = _settings.max_requests // 10  # ... give or take, so that workers are not replaced together
accesslog = "-"
logger_class = "api.gunicorn_logger.KeyMaskingLogger"  # no key in the log, even in a key-bearing URL
errorlog = "-"
loglevel = "info"
control_socket_disable = True  # one fixed socket path per user: several servers on one machine would clash


def post_worker_init(worker):
    """Split the cores between workers, so that two workers do not fight over the same ones, and warm up:
    the current index set (the master's, preloaded, may be older) and the encoder, before the first request.

    faiss gets one thread per worker: a single query searched with OpenMP threads on 2 cores was 3-8x
    slower (thread start and spin per partition), and the workers already use the cores in parallel.
    """
    import faiss

    from api import warm_up

    faiss.omp_set_num_threads(1)
    threads = _settings.inference_threads or max(1, (os.cpu_count() or 1) // max(1, workers))
    warm_up(worker.wsgi, threads)


def child_exit(server, worker):
    """Let Prometheus's multiprocess mode drop the live gauges of a worker that is gone."""
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
