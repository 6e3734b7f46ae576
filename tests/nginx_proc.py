"""nginx as the tests run it: the shipped ``deploy/nginx/ticker.conf``, unchanged, in front
of a gunicorn on a free loopback port.

The shipped file takes what differs from site to site from ``ticker/upstream.conf`` and
``ticker/site.conf`` beside the main ``nginx.conf``; here all three are written under a
temporary prefix (with the pid file, logs and temp directories), so nginx runs without
touching ``/etc`` or ``/var``. It listens on two free ports: HTTPS with HTTP/2 (a
certificate made for the test), and plain HTTP for the clients in ``tests.observers``,
which speak no TLS. Both ports serve the same server block. Stopped by PID: SIGTERM (a
fast shutdown), then SIGKILL for the master and its workers.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from tests.servers import ROOT, free_port

__all__ = ["SHIPPED", "Nginx", "check_config", "make_certificate", "run_nginx",
           "site_conf"]

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
SHIPPED = ROOT / "deploy" / "nginx"


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key, valid for a day."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=30,
    )
    return cert, key


class Nginx:
    """A running nginx master and what the tests need to reach it."""

    def __init__(self, proc: subprocess.Popen, prefix: Path, tls_port: int, plain_port: int,
                 cert: Path) -> None:
        self.proc = proc
        self.prefix = prefix
        self.tls_port = tls_port
        self.plain_port = plain_port
        self.url = f"https://127.0.0.1:{tls_port}"
        self.plain_url = f"http://127.0.0.1:{plain_port}"
        self.cert = cert

    def trusting(self) -> ssl.SSLContext:
        """A new client context that trusts exactly nginx's certificate (a new one each
        time: HTTP/2 clients set their ALPN protocols on the context they are given)."""
        return ssl.create_default_context(cafile=str(self.cert))

    def output(self) -> str:
        """Its error log so far (startup messages included)."""
        path = self.prefix / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def access_log(self) -> str:
        path = self.prefix / "access.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def worker_pids(self) -> list[int]:
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        with contextlib.suppress(OSError):
            return [int(pid) for pid in children.read_text().split()]
        return []

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Until both ports accept connections."""
        deadline = time.monotonic() + timeout
        for port in (self.tls_port, self.plain_port):
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"nginx exited with {self.proc.returncode}:\n"
                                       f"{self.output()}")
                with contextlib.suppress(OSError), socket.create_connection(
                        ("127.0.0.1", port), timeout=1):
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"nginx not ready in {timeout} s:\n{self.output()}")
                time.sleep(0.02)

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, then SIGKILL (master and workers) if it does not end in ``timeout``."""
        if self.proc.poll() is None:
            workers = self.worker_pids()
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                for pid in [self.proc.pid, *workers]:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                self.proc.wait()
        return self.proc.returncode


def _main_conf(prefix: Path) -> str:
    """A main nginx.conf with Debian's http-wide settings, all paths under ``prefix``."""
    # As root, the workers run as this same user (nginx's default, nobody, could not
    # reach a test's private temporary directory).
    user = f"user {pwd.getpwuid(os.geteuid()).pw_name};" if os.geteuid() == 0 else ""
    temp = "\n".join(f"    {kind}_temp_path {prefix}/temp/{kind};"
                     for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return f"""{user}
worker_processes 1;
# Each proxied stream holds two connections, the client's and gunicorn's (Debian's 768
# would cap a worker at 384 streams); deploy/README.md says so for production.
worker_rlimit_nofile 8192;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log notice;
events {{
    worker_connections 4096;
}}
http {{
    sendfile on;
    tcp_nopush on;
    default_type application/octet-stream;
    ssl_protocols TLSv1 TLSv1.1 TLSv1.2 TLSv1.3;
    ssl_prefer_server_ciphers on;
    gzip on;
{temp}
    include {SHIPPED / "ticker.conf"};
}}
"""


def site_conf(prefix: Path, tls_port: int, plain_port: int, cert: Path, key: Path,
               read_timeout: str) -> str:
    """The test's ticker/site.conf: the shipped one's settings, on loopback ports."""
    return f"""listen 127.0.0.1:{tls_port} ssl http2;
listen 127.0.0.1:{plain_port};
server_name 127.0.0.1;
ssl_certificate {cert};
ssl_certificate_key {key};
access_log {prefix}/access.log ticker;
error_log {prefix}/error.log notice;
proxy_read_timeout {read_timeout};
"""


def _lay_out(prefix: Path, site: str, upstream: str) -> None:
    """The main nginx.conf and the shipped file's two includes, under ``prefix``."""
    (prefix / "ticker").mkdir(parents=True, exist_ok=True)
    (prefix / "temp").mkdir(exist_ok=True)
    (prefix / "nginx.conf").write_text(_main_conf(prefix))
    (prefix / "ticker" / "site.conf").write_text(site)
    (prefix / "ticker" / "upstream.conf").write_text(upstream)


def check_config(prefix: Path, site: str, upstream: str) -> subprocess.CompletedProcess:
    """``nginx -t`` of the shipped ticker.conf with these two includes: binds nothing,
    starts nothing."""
    _lay_out(prefix, site, upstream)
    return subprocess.run(
        [NGINX, "-t", "-p", str(prefix), "-e", str(prefix / "error.log"), "-c", "nginx.conf"],
        capture_output=True, text=True, timeout=30)


@contextlib.contextmanager
def run_nginx(tmp_path: Path, upstream_port: int, *, read_timeout: str = "60s",
              wait: bool = True) -> Iterator[Nginx]:
    """nginx with the shipped configuration in front of ``127.0.0.1:upstream_port``,
    stopped when the block ends. ``read_timeout`` is the site's ``proxy_read_timeout``."""
    prefix = Path(tmp_path) / f"nginx-{time.monotonic_ns()}"
    prefix.mkdir(parents=True)
    cert, key = make_certificate(prefix)
    tls_port, plain_port = free_port(), free_port()
    _lay_out(prefix, site_conf(prefix, tls_port, plain_port, cert, key, read_timeout),
             f"server 127.0.0.1:{upstream_port};\n")
    with open(prefix / "error.log", "ab") as log:
        proc = subprocess.Popen(
            [NGINX, "-p", str(prefix), "-e", str(prefix / "error.log"), "-c", "nginx.conf",
             "-g", "daemon off;"],
            stdout=log, stderr=subprocess.STDOUT,
        )
    server = Nginx(proc, prefix, tls_port, plain_port, cert)
    try:
        if wait:
            server.wait_ready()
        yield server
    finally:
        server.stop()
