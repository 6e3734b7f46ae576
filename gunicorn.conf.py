"""gunicorn settings for the ticker. Command-line flags override any of them."""

import functools
import logging
import os
import resource
import shutil
import sys
import tempfile


def _env_int(name, default, least=1, why=""):
    # A bad value ends the master at once with one line, before any worker boots.
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    if not text.isdigit() or int(text) < least:
        sys.exit(f"error: {name} must be a whole number, at least {least}{why}, not {text!r}")
    return int(text)


wsgi_app = "ticker.app:create_app()"
bind = ["127.0.0.1:8000"]
# gunicorn's gevent worker, made fair (no client holds the event loop), with JSON refusals
# and quiet stops; it refuses HTTP/2, since streams write HTTP/1.1 chunks themselves.
worker_class = "ticker.worker.StreamWorker"
workers = int(os.environ.get("WEB_CONCURRENCY") or os.cpu_count() or 1)
# Each stream holds one connection: 10,000 streams per worker, plus room for API calls.
worker_connections = 12_000
# Streams never end by themselves; the workers end them on SIGTERM, so this stays short.
graceful_timeout = 3
timeout = 30
keepalive = 5
# Request line and each header field: 8 KiB by default, as nginx (a Last-Event-ID of 4 KiB
# fits either way); past that the answer is 414 or 431. gunicorn caps the line at 8190
# bytes; its 0 (no limit) would let one client's endless request line hold a worker.
limit_request_line = _env_int(
    "TICKER_LIMIT_REQUEST_LINE", 8190,
    why=" (0, no limit, would let one endless request line hold a worker)")
if limit_request_line > 8190:
    sys.exit("error: TICKER_LIMIT_REQUEST_LINE must be at most 8190 (gunicorn's cap)")
limit_request_field_size = _env_int("TICKER_LIMIT_REQUEST_FIELD_SIZE", 8190)
limit_request_fields = _env_int("TICKER_LIMIT_REQUEST_FIELDS", 100)
# HTTPS straight from gunicorn; its --certfile and --keyfile flags do the same. The key
# may also be in the certificate file.
certfile = os.environ.get("TICKER_TLS_CERT") or None
keyfile = os.environ.get("TICKER_TLS_KEY") or None
if keyfile and not certfile:
    sys.exit("error: TICKER_TLS_KEY is set but TICKER_TLS_CERT is not")
errorlog = "-"
# One control socket per user would be shared by every instance on the machine.
control_socket_disable = True
loglevel = "info"

# Ten thousand sockets need ten thousand descriptors: raise the soft limit to the hard one.
_soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
if _soft != _hard:
    resource.setrlimit(resource.RLIMIT_NOFILE, (_hard, _hard))

# Metrics from every worker are summed through files in one directory, made before any
# worker imports prometheus_client.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="ticker-metrics-")
    os.environ["TICKER_OWN_METRICS_DIR"] = os.environ["PROMETHEUS_MULTIPROC_DIR"]


def post_worker_init(worker):
    # gevent has patched this worker by now: start the feed reader and the sweeper, and
    # have our loggers write one-line records through gunicorn's error log.
    for name in ("ticker", "simulator"):
        logger = logging.getLogger(name)
        logger.handlers = worker.log.error_log.handlers
        logger.setLevel(worker.log.error_log.level)
        logger.propagate = False
    from ticker.service import READY_WAIT_S

    service = worker.wsgi.extensions["ticker"]
    # A dead feed reader or sweeper ends the worker (gunicorn starts another); a worker
    # asked to stop ends its streams at once.
    service.start(stopping=lambda: not worker.alive,
                  on_failure=lambda: setattr(worker, "alive", False))
    # Take no connection before the log is exact (filled from the market's replay), so a
    # respawned or reloaded worker resumes streams as exactly as an old one; the bound
    # keeps a worker whose market is down answering /healthz (503) all the same.
    service.feed.ready.wait(READY_WAIT_S)


def ssl_context(conf, default_ssl_context_factory):
    # gevent would shake hands before gunicorn has the connection and print a traceback for
    # each client that fails (plain HTTP, a scanner); left to gunicorn, that is one line.
    context = default_ssl_context_factory()
    context.wrap_socket = functools.partial(context.wrap_socket, do_handshake_on_connect=False)
    return context


def child_exit(server, worker):
    # A dead worker's gauges must stop counting in /metrics.
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    # Remove the metrics directory this configuration made, unless a master re-executed
    # from this one (USR2) goes on using it.
    owned = os.environ.get("TICKER_OWN_METRICS_DIR")
    if owned and not server.reexec_pid:
        shutil.rmtree(owned, ignore_errors=True)
