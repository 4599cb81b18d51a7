"""Loopback ports (lab.runs.ports): the free one binds, a taken one is reported taken."""

import socket

from lab.runs.ports import free_port, port_free


def test_free_port_is_bindable():
    port = free_port()
    assert port_free("127.0.0.1", port)
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_a_listening_port_is_not_free():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        assert not port_free("127.0.0.1", s.getsockname()[1])
