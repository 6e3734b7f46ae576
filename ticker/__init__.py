"""ticker: per-symbol Server-Sent Events streams of a live market, served by gunicorn + gevent."""

from ticker.app import create_app

__all__ = ["create_app"]
