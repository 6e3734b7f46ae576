"""Every error the app answers is JSON ``{"error": "..."}``, whoever raised it.

Views raise ``ApiError`` (or Werkzeug's HTTP exceptions, for routing); the handlers
here turn both into JSON with the right status, and anything unexpected into a logged
one-line 500 with no traceback for the client.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

__all__ = ["ApiError", "init_app"]

logger = logging.getLogger(__name__)


class ApiError(Exception):
    """A request the app refuses, with its status, a reason and any headers it needs."""

    def __init__(
        self, status: int, reason: str, retry_after: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.retry_after = retry_after
        self.headers = dict(headers or {})


def _json(status: int, reason: str, retry_after: int | None = None):
    response = jsonify(error=reason)
    response.status_code = status
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    return response


def init_app(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def api_error(exc: ApiError):
        response = _json(exc.status, exc.reason, exc.retry_after)
        response.headers.update(exc.headers)
        return response

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        response = _json(exc.code or 500, (exc.description or exc.name).strip())
        for name in ("Allow", "Retry-After"):
            if exc.get_response().headers.get(name):
                response.headers[name] = exc.get_response().headers[name]
        return response

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        logger.error("unhandled %s: %s", type(exc).__name__, exc)
        return _json(500, "internal error")
