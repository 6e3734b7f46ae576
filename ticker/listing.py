"""The market's listing as ``/api/symbols`` sends it: encoded, compressed and tagged once.

A full-size market lists thousands of companies (some 600 KB of JSON for 8,000), and every
page load asks for them. So the answer is built once per universe, not per request: the
JSON body, its gzip (about a fifth of the size) and an entity tag, which a browser sends
back in ``If-None-Match`` to get a 304 with no body while the universe has not changed.

The tag is weak (``W/"..."``): the same listing is one entity whether it is sent plain or
gzipped, and ``If-None-Match`` compares weakly anyway. It hashes the market's epoch and
the body, so every worker and every instance fed by the same market tags it alike, and a
restarted market (a new epoch) gets a new tag even when it lists the same companies.

Pure: no I/O, no Flask.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Listing"]

_GZIP_LEVEL = 6  # gzip's own default: most of level 9's saving for a third of the time


@dataclass(frozen=True, slots=True)
class Listing:
    """One listing, ready to send: ``body`` (JSON), ``gzipped`` and its weak ``etag``."""

    etag: str
    body: bytes
    gzipped: bytes

    @classmethod
    def of(cls, epoch: str, companies: Sequence[dict]) -> Listing:
        """The listing of ``companies`` (in order) in the market run ``epoch``."""
        body = json.dumps(list(companies), separators=(",", ":"), allow_nan=False).encode()
        digest = hashlib.blake2b(digest_size=16)
        digest.update(epoch.encode())
        digest.update(b"\0")
        digest.update(body)
        # mtime=0: the same bytes on every worker, whenever it compressed them.
        gzipped = gzip.compress(body, compresslevel=_GZIP_LEVEL, mtime=0)
        return cls(f'W/"{digest.hexdigest()}"', body, gzipped)

    @property
    def opaque_tag(self) -> str:
        """The tag without ``W/`` and quotes, as ``If-None-Match`` is compared with it."""
        return self.etag[3:-1]
