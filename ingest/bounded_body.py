"""Reading an HTTP body from outside (a request a channel pushes, an answer a store
sends) with a bound: refused before reading when the declared length is over it, cut
off as soon as the bytes read (after decompression) pass it. Shared by the server side
(WeChat callbacks) and the client side (app-store answers), so both stop at the first
byte too many instead of buffering what a broken or hostile peer sends.
"""

from __future__ import annotations

from aiohttp import StreamReader

READ_CHUNK_BYTES = 64 << 10


class TooLarge(Exception):
    """The body is over the bound: `size` bytes declared (`read` False) or read so far."""

    def __init__(self, size: int, *, read: bool) -> None:
        super().__init__(f"{size} bytes {'read' if read else 'declared'}")
        self.size = size
        self.read = read


async def read_at_most(content: StreamReader, declared: int | None, limit: int) -> bytes:
    """The whole body if it is at most `limit` bytes, else `TooLarge`."""
    if declared is not None and declared > limit:
        raise TooLarge(declared, read=False)
    body = bytearray()
    async for chunk in content.iter_chunked(READ_CHUNK_BYTES):
        body += chunk
        if len(body) > limit:
            raise TooLarge(len(body), read=True)
    return bytes(body)
