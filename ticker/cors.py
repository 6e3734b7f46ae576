"""Cross-origin reads of the market data by pages on other sites that are allowed to.

Off unless ``TICKER_CORS_ORIGINS`` lists origins. Then flask-cors answers for the same
routes auth guards (streams and the JSON API): an allowed origin gets
``Access-Control-Allow-Origin`` with its own name, a preflight may ask for GET with
``Authorization`` and ``Last-Event-ID``, and any other origin gets no CORS header at all,
so its browser keeps the answer from it. Error answers carry the headers too, so an
allowed page can read why it was refused, and ``Retry-After`` is exposed to it.
"""

from __future__ import annotations

import re

from flask import Flask, Response, request
from flask_cors import CORS

from ticker.access import DATA_PATHS

__all__ = ["init_app"]

PREFLIGHT_MAX_AGE_S = 600


def init_app(app: Flask) -> None:
    """Allow the configured origins to read the data routes, if there are any."""
    origins = app.extensions["ticker"].config.origins
    if not origins:
        return

    @app.after_request
    def vary_on_origin(response: Response) -> Response:
        # flask-cors adds this only when more than one origin could match, but any answer
        # here depends on the Origin header (with or without the CORS header), and a
        # shared cache must not give one origin's answer to another.
        if DATA_PATHS.match(request.path):
            response.vary.add("Origin")
        return response

    CORS(
        app,
        resources={DATA_PATHS: {}},
        # Matched exactly: escaped and anchored, never read as patterns.
        origins=[re.compile(re.escape(origin) + r"\Z", re.IGNORECASE) for origin in origins],
        methods=["GET"],
        allow_headers=["Authorization", "Last-Event-ID"],
        expose_headers=["Retry-After"],
        max_age=PREFLIGHT_MAX_AGE_S,
        always_send=False,
        vary_header=False,
    )
