"""A requests adapter that acknowledges a server's answer at once (Linux's TCP_QUICKACK).

Why: ``mlflow server`` with more than one worker (its default is 4, uvicorn) answers on
sockets without ``TCP_NODELAY``: it writes the headers, then holds the body back (Nagle's
algorithm) until the client acknowledges the headers, and Linux delays that
acknowledgement by 40 ms. Every request then takes at least 44 ms, even ``/health`` (about
1 ms on a one-worker server). Asking the kernel for an immediate acknowledgement once the
request is sent lets the body follow at once. Measured by ``make bench`` against its
4-worker server (`docs/benchmark.md`): ten ``experiments/get`` in 55 ms instead of 484 ms.

Elsewhere (no ``TCP_QUICKACK``: macOS, Windows) the adapter is requests' own.

Example:
    >>> session = mount_quick_ack(requests.Session())
    >>> session.get("http://127.0.0.1:5000/health").text
    'OK'
"""

from __future__ import annotations

import contextlib
import socket
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

# None where the platform has no such option; the adapter then changes nothing.
QUICK_ACK: int | None = getattr(socket, "TCP_QUICKACK", None)


def ask_quick_ack(sock: socket.socket | None) -> None:
    """Ask the kernel to acknowledge what ``sock`` receives next without delay.

    Linux keeps the setting for a few segments only, so it is asked again after each
    request is sent; a socket that refuses it (closed, not TCP) is left as it is.
    """
    if sock is None or QUICK_ACK is None:
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, QUICK_ACK, 1)


class _QuickAck:
    """A urllib3 connection's `getresponse`, asking for a quick acknowledgement first."""

    sock: socket.socket | None

    def getresponse(self, *args: Any, **kwargs: Any) -> Any:
        ask_quick_ack(self.sock)
        return super().getresponse(*args, **kwargs)  # type: ignore[misc]


class QuickAckHTTPConnection(_QuickAck, HTTPConnection):
    """urllib3's connection, asking for quick acknowledgements before each answer."""


class QuickAckHTTPSConnection(_QuickAck, HTTPSConnection):
    """`QuickAckHTTPConnection` over TLS."""


class QuickAckHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = QuickAckHTTPConnection


class QuickAckHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = QuickAckHTTPSConnection


class QuickAckAdapter(HTTPAdapter):
    """requests' `HTTPAdapter` whose direct connections use `ask_quick_ack`.

    Connections through a proxy keep urllib3's own classes.
    """

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        if QUICK_ACK is not None:
            self.poolmanager.pool_classes_by_scheme = {
                "http": QuickAckHTTPConnectionPool,
                "https": QuickAckHTTPSConnectionPool,
            }


def mount_quick_ack(session: requests.Session) -> requests.Session:
    """Mount `QuickAckAdapter` on ``session`` for http and https; return the session."""
    adapter = QuickAckAdapter()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
