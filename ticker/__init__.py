"""ticker: per-symbol Server-Sent Events streams of a live market, served by gunicorn + gevent.

The app is built by ``ticker.app.create_app``. This package imports nothing itself, so
gunicorn's master can load the worker class (``ticker.worker``) without the app and its
dependencies: they are imported in each worker, after gevent has patched it.
"""
