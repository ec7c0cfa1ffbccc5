"""Ports for tests that start servers of their own, safe with several pytest workers at once.

A port found by binding to 0 and closing is free only for an instant: another worker's server,
or any outgoing connection, may take it before our process binds it (seen here: a dialer that
was to find "Asterisk down" logged in to another test's AMI server). So: ports handed out for a
later bind come from below the kernel's ephemeral range (which bind(0) and connect() draw from),
in a block of their own per pytest-xdist worker; and a port that must refuse connections stays
bound, without listening, until the test releases it.
"""

from __future__ import annotations

import itertools
import os
import random
import socket
from collections.abc import Iterator
from contextlib import contextmanager

_BLOCK = 1000
_FIRST = 20000  # ephemeral ports start at 32768 here (ip_local_port_range): twelve blocks fit


def _worker_index() -> int:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    digits = worker.removeprefix("gw")
    return int(digits) % 12 if digits.isdigit() else 0


_own_block = range(_FIRST + _worker_index() * _BLOCK, _FIRST + (_worker_index() + 1) * _BLOCK)
_candidates = itertools.cycle(random.sample(_own_block, _BLOCK))


def _bindable(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(count: int) -> list[int]:
    """Distinct ports nothing listens on, from this worker's own block."""
    ports: list[int] = []
    for port in _candidates:
        if port not in ports and _bindable(port):
            ports.append(port)
            if len(ports) == count:
                return ports
    raise AssertionError("unreachable: the candidate cycle is endless")


def free_cluster_ports(count: int) -> list[int]:
    """Ports for Redis Cluster nodes, each with its bus port (10000 above) free too."""
    ports: list[int] = []
    for port in _candidates:
        if port not in ports and _bindable(port) and _bindable(port + 10000):
            ports.append(port)
            if len(ports) == count:
                return ports
    raise AssertionError("unreachable: the candidate cycle is endless")


def free_port() -> int:
    return free_ports(1)[0]


@contextmanager
def refusing_port() -> Iterator[socket.socket]:
    """A port that refuses connections (bound, not listening) and that nobody else can take.

    Close the yielded socket right before starting the server that should answer there.
    """
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.bind(("127.0.0.1", 0))
    try:
        yield holder
    finally:
        holder.close()
