"""The HTTP protocol the service's uvicorn runs: h11, with Nagle's algorithm off on every
connection.

asyncio turns Nagle's algorithm off (``TCP_NODELAY``) only on sockets it knows to be TCP. A
socket handed over by descriptor (``serve --fd``, as systemd socket activation and process
managers do) reaches uvicorn as a Unix socket, so its connections would keep Nagle's algorithm:
each small answer on a kept-alive connection would then wait for the client's delayed
acknowledgement, about 40 ms. Setting the option on each connection, whatever the listening
socket claims to be, keeps every answer as quick as with ``--host``/``--port``.
"""

from __future__ import annotations

import contextlib
import socket
from asyncio import Transport

from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["NoDelayHTTPProtocol"]


class NoDelayHTTPProtocol(H11Protocol):
    """uvicorn's h11 protocol, with ``TCP_NODELAY`` set on the connection."""

    def connection_made(self, transport: Transport) -> None:  # type: ignore[override]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):  # a Unix socket has no such option
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)
