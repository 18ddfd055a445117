"""Which local ports a process holds, from /proc."""

from __future__ import annotations

import os
import socket
import sys

import pytest

from mediagen.chaos.sockets import local_ports, ports_of, socket_inodes

TABLE = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1538 00000000:0000 0A 00000000:00000000 00:00000000 00000000   0        0 4242 1
   1: 0100007F:D431 0100007F:1538 01 00000000:00000000 00:00000000 00000000   0        0 777 1
"""


def test_parsing() -> None:
    assert socket_inodes(["socket:[777]", "pipe:[5]", "/dev/null", "socket:[4242]"]) == {777, 4242}
    assert local_ports(TABLE, {777}) == {0xD431}
    assert local_ports(TABLE, {1}) == set()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_connected_socket_of_this_process() -> None:
    with socket.socket() as server, socket.socket() as client:
        server.bind(("127.0.0.1", 0))
        server.listen()
        client.connect(server.getsockname())
        assert client.getsockname()[1] in ports_of(os.getpid())
    assert ports_of(2**22 + 12345) == set()  # no such process
