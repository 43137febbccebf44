"""Connections the face service accepts: bounded idle time, a per-client cap, no secrets in logs.

uvicorn on its own lets a connection that never sends a complete request stay open forever (its
keep-alive timer only starts after a first response, and any byte cancels it), and every open
connection counts towards ``limit_concurrency``: 300 idle sockets without an API key make every
client get 503 for as long as they stay open. :class:`BoundedH11Protocol` closes a connection whose
request head has not arrived ``header_timeout`` seconds after the connection (or the previous
response), whose body has not arrived ``body_timeout`` seconds after its head, or that sits idle
``keep_alive`` seconds between requests; and it refuses (503, ``Connection: close``) a connection
beyond ``per_client`` open ones from the same client address. A client that opens many idle
sockets therefore holds at most ``per_client`` of the server's connection slots, each for at most
``header_timeout`` seconds.

The access log never shows a query string (where a client may have put a credential).
"""

from __future__ import annotations

import logging
import socket

_BUSY = (b'{"error": {"code": "too_many_connections", '
         b'"message": "too many open connections from this client"}}')
REFUSED = (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nconnection: close\r\n"
           b"content-length: %d\r\n\r\n%s" % (len(_BUSY), _BUSY))


def protocol_class(header_timeout: float, body_timeout: float, per_client: int):
    """A uvicorn h11 protocol class with these limits (``uvicorn.Config(http=...)``)."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class BoundedH11Protocol(H11Protocol):
        _timer = None
        _phase = None

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            host = self.client[0] if self.client else None
            same = sum(1 for c in self.connections if (getattr(c, "client", None) or (None,))[0] == host)
            if host is not None and same > per_client:
                transport.write(REFUSED)
                transport.close()
                return
            self._track()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            self._track()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._track()

        def connection_lost(self, exc) -> None:
            self._arm(None)
            super().connection_lost(exc)

        def _track(self) -> None:
            """Arm the deadline of the part of the request the client still owes (none while the
            app works on a complete request)."""
            if self.transport is None or self.transport.is_closing():
                return self._arm(None)
            state = self.conn.their_state
            phase = "head" if state is h11.IDLE else "body" if state is h11.SEND_BODY else None
            if phase != self._phase:
                self._arm(phase)

        def _arm(self, phase) -> None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._phase = phase
            if phase is not None:
                delay = header_timeout if phase == "head" else body_timeout
                self._timer = self.loop.call_later(delay, self._expire)

        def _expire(self) -> None:
            self._timer = None
            if not self.transport.is_closing():
                self.transport.close()

    return BoundedH11Protocol


class HideQueryString(logging.Filter):
    """Drop the query string from uvicorn's access-log lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str) and "?" in args[2]:
            record.args = (*args[:2], args[2].split("?", 1)[0] + "?<hidden>", *args[3:])
        return True


def make_server(app, *, header_timeout: float, body_timeout: float, keep_alive: float, per_client: int,
                max_connections: int, log_level: str = "info"):
    """A ``uvicorn.Server`` for ``app`` with the limits above (run it with ``sockets=[bound]``)."""
    import uvicorn

    config = uvicorn.Config(app, log_level=log_level, lifespan="on", timeout_keep_alive=keep_alive,
                            limit_concurrency=max_connections, server_header=False,
                            http=protocol_class(header_timeout, body_timeout, per_client))
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, HideQueryString) for f in access.filters):
        access.addFilter(HideQueryString())
    return uvicorn.Server(config)


def is_loopback(host: str) -> bool:
    """True when every address ``host`` resolves to is a loopback address."""
    import ipaddress

    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(i[4][0].split("%")[0]).is_loopback for i in infos)


def bind(host: str, port: int) -> socket.socket:
    """A bound TCP socket (listened on by the server); OSError (unresolvable, in use, denied) as is."""
    family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(addr)
    except BaseException:
        sock.close()
        raise
    return sock
