"""The sweeper's writes (``ticker/writes.py``) over real sockets: what a stream is written
through, what a full socket takes, and what a closed one does."""

from __future__ import annotations

import ssl

import gevent.ssl
import pytest
from gevent import socket

from ticker import writes


@pytest.fixture
def pair():
    server, peer = socket.socketpair()
    yield server, peer
    server.close()
    peer.close()


def test_a_plain_socket_is_written_through_its_os_socket_and_its_wrapper_is_left_as_it_was(
        pair):
    server, peer = pair
    raw = writes.nonblocking(server)
    assert raw is not server and raw.fileno() == server.fileno()
    assert server.gettimeout() is None, "gunicorn's socket still blocks"
    assert writes.send(raw, b"price") == 5
    assert peer.recv(16) == b"price"
    writes.hand_back(raw)
    assert server.gettimeout() is None


def test_a_full_plain_socket_takes_what_it_can_in_one_call_and_never_waits(pair):
    server, peer = pair
    server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    raw = writes.nonblocking(server)
    data = b"x" * (1 << 20)
    taken = writes.send(raw, data)
    assert 0 < taken < len(data), "a part, at once"
    assert writes.send(raw, data) == 0, "full: nothing, at once"


def test_a_write_after_the_socket_closed_fails_even_if_its_number_went_to_another(pair):
    server, peer = pair
    raw = writes.nonblocking(server)
    number = server.fileno()
    server.close()
    newcomer, newcomer_peer = socket.socketpair()
    with newcomer, newcomer_peer:
        if newcomer.fileno() != number:
            newcomer_peer.close()
            newcomer.close()
            pytest.fail(f"descriptor {number} was not reused; the test cannot show anything")
        assert writes.send(raw, b"someone else's price") == -1
        newcomer_peer.setblocking(False)
        with pytest.raises(BlockingIOError):
            newcomer_peer.recv(64)


def test_a_tls_socket_is_written_through_its_tls_layer_with_a_zero_timeout(pair):
    server, _ = pair
    context = gevent.ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with context.wrap_socket(server, server_side=True, do_handshake_on_connect=False) as tls:
        assert writes.nonblocking(tls) is tls
        assert tls.gettimeout() == 0.0
        writes.hand_back(tls)
        assert tls.gettimeout() is None

