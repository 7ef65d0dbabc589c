"""The node's process tuning: asyncio's socket reads stay under glibc's fixed mmap threshold."""

from __future__ import annotations

import asyncio
import os
from asyncio import selector_events

import node


def _restore(cls: type, own: dict) -> None:
    """Put the class attribute back as it was: its own value, or inherited from asyncio's base."""
    if "max_size" in own:
        cls.max_size = own["max_size"]
    elif "max_size" in cls.__dict__:
        del cls.max_size


def test_socket_reads_are_capped_and_a_larger_message_still_arrives_whole():
    cls = selector_events._SelectorSocketTransport
    own = {k: v for k, v in cls.__dict__.items() if k == "max_size"}
    payload = os.urandom(5 * node.SOCKET_READ_BYTES + 123)

    async def exchange() -> tuple[bytes, int]:
        got: list[bytes] = []
        sizes: list[int] = []

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            sizes.append(writer.transport.max_size)
            got.append(await reader.readexactly(len(payload)))
            writer.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(payload)
        await writer.drain()
        await reader.read()  # the server closes once it has the whole message
        writer.close()
        server.close()
        await server.wait_closed()
        return got[0], sizes[0]

    try:
        node._small_socket_reads()
        assert cls.max_size == node.SOCKET_READ_BYTES < 128 * 1024  # under the mmap threshold node.py fixes
        received, max_size = asyncio.run(exchange())
        assert max_size == node.SOCKET_READ_BYTES
        assert received == payload
    finally:
        _restore(cls, own)


def test_socket_reads_are_left_alone_when_asyncio_is_not_what_the_tuning_expects():
    cls = selector_events._SelectorSocketTransport
    own = {k: v for k, v in cls.__dict__.items() if k == "max_size"}
    try:
        cls.max_size = 1000  # another Python's default: not ours to change
        node._small_socket_reads()
        assert cls.max_size == 1000
    finally:
        _restore(cls, own)
