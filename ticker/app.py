"""The application factory: the one place where the app is put together."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask, send_from_directory

from ticker import access, api, cors, errors, streams
from ticker.config import Config
from ticker.service import TickerService

__all__ = ["create_app"]

WEB_DIR = Path(__file__).resolve().parent.parent / "web"


def create_app(config: Mapping[str, Any] | Config | None = None) -> Flask:
    """Build the ticker app; its ``TickerService`` is in ``app.extensions["ticker"]``.

    The service's greenlets are not started here: gunicorn's ``post_worker_init`` hook
    starts them once gevent has patched the worker (see gunicorn.conf.py).

    Args:
        config: a ``Config``, or overrides of the defaults and ``TICKER_*`` variables.
    """
    app = Flask(__name__, static_folder=str(WEB_DIR), static_url_path="/static")
    app.json.sort_keys = False
    settings = config if isinstance(config, Config) else Config.load(config)
    app.extensions["ticker"] = TickerService(settings)
    errors.init_app(app)
    access.init_app(app)
    cors.init_app(app)
    app.register_blueprint(streams.bp)
    app.register_blueprint(api.bp)
    app.wsgi_app = streams.keep_server_response(app.wsgi_app)

    @app.get("/")
    def index():
        return send_from_directory(WEB_DIR, "index.html")

    @app.get("/favicon.ico")
    def favicon():
        return send_from_directory(WEB_DIR, "favicon.svg", mimetype="image/svg+xml")

    return app
