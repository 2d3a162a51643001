"""A small upstream for the proxy's tests, run as its own process: `python upstream_app.py NAME PORT [--tls CERT KEY]`.

It prints its port on stdout once listening (PORT may be 0). Behaviour by path:
  /            200, body NAME, header x-upstream: NAME
  /echo        200, JSON of the method, path, headers (lower-cased names) and body length it received
  /slow?s=S    waits S seconds, then like /
  /status/N    answers N (no body for 204/304)
  /big?n=N     N bytes of body, streamed; &chunked=1 for chunked encoding
  /upload      reads the body as it streams, answers its length
  /ws          WebSocket echo (upgrade)
Mirrored copies (x-switchover-shadow: 1) to a process started with --shadow-delay S wait S seconds.
With --max-requests N, /echo's N-th answer on a connection closes it (as nginx's keepalive_requests).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import ssl
import sys
from urllib.parse import parse_qs, urlsplit

NAME = sys.argv[1]
SHADOW_DELAY = float(sys.argv[sys.argv.index("--shadow-delay") + 1]) if "--shadow-delay" in sys.argv else 0.0
FAIL_ALL = "--fail" in sys.argv  # every answer is 503
# Keep-alive in words, but the second request on a connection is met by a close: an upstream whose
# keep-alive timeout fires just as the proxy reuses the connection.
CLOSE_SECOND = "--close-second" in sys.argv
# As nginx's keepalive_requests: the N-th answer on a connection says "connection: close", then the
# connection closes; requests pipelined behind it are never read.
MAX_REQUESTS = int(sys.argv[sys.argv.index("--max-requests") + 1]) if "--max-requests" in sys.argv else 0


async def read_head(reader: asyncio.StreamReader) -> tuple[str, str, dict[str, str]] | None:
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    lines = raw.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return method, target, headers


async def body_chunks(reader: asyncio.StreamReader, headers: dict[str, str]):  # type: ignore[no-untyped-def]
    if headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                return
            yield await reader.readexactly(size)
            await reader.readexactly(2)
    else:
        left = int(headers.get("content-length", "0"))
        while left > 0:
            chunk = await reader.read(min(left, 1 << 16))
            if not chunk:
                return
            left -= len(chunk)
            yield chunk


def answer(status: int, body: bytes, extra: str = "") -> bytes:
    return (f"HTTP/1.1 {status} X\r\nx-upstream: {NAME}\r\ncontent-length: {len(body)}\r\n{extra}\r\n").encode() + body


async def websocket(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, headers: dict[str, str]) -> None:
    accept = base64.b64encode(hashlib.sha1((headers["sec-websocket-key"] + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")
                                           .encode()).digest()).decode()
    writer.write(f"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n"
                 f"sec-websocket-accept: {accept}\r\nx-upstream: {NAME}\r\n\r\n".encode())
    while True:  # echo text frames back, prefixed with NAME (client frames are masked, ours are not)
        b0, b1 = await reader.readexactly(2)
        length = b1 & 0x7F
        if length == 126:
            length = int.from_bytes(await reader.readexactly(2), "big")
        mask = await reader.readexactly(4)
        data = bytes(c ^ mask[i % 4] for i, c in enumerate(await reader.readexactly(length)))
        if b0 & 0x0F == 8:  # close
            writer.write(b"\x88\x00")
            await writer.drain()
            return
        payload = NAME.encode() + b":" + data
        writer.write(bytes([0x81, len(payload)]) + payload)
        await writer.drain()


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    served = 0
    try:
        while True:
            head = await read_head(reader)
            if head is None or (CLOSE_SECOND and served == 1):
                break
            served += 1
            method, target, headers = head
            url = urlsplit(target)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            size = 0
            if headers.get("expect", "").lower() == "100-continue":
                writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                await writer.drain()
            if url.path != "/upload":
                async for chunk in body_chunks(reader, headers):
                    size += len(chunk)
            if headers.get("x-switchover-shadow") == "1" and SHADOW_DELAY:
                await asyncio.sleep(SHADOW_DELAY)
            if FAIL_ALL:
                writer.write(answer(503, b"failing"))
            elif url.path == "/echo":
                last = "connection: close\r\n" if served == MAX_REQUESTS else ""
                writer.write(answer(200, json.dumps({"method": method, "path": target, "headers": headers,
                                                     "body_length": size, "upstream": NAME}).encode(),
                                    "content-type: application/json\r\n" + last))
            elif url.path == "/slow":
                await asyncio.sleep(float(query.get("s", "1")))
                writer.write(answer(200, NAME.encode()))
            elif url.path.startswith("/status/"):
                status = int(url.path.rsplit("/", 1)[1])
                if status in (204, 304):
                    writer.write(f"HTTP/1.1 {status} X\r\nx-upstream: {NAME}\r\n\r\n".encode())
                else:
                    writer.write(answer(status, NAME.encode()))
            elif url.path == "/big":
                n = int(query["n"])
                block = b"x" * (1 << 16)
                if query.get("chunked") == "1":
                    writer.write(f"HTTP/1.1 200 OK\r\nx-upstream: {NAME}\r\ntransfer-encoding: chunked\r\n\r\n".encode())
                else:
                    writer.write(f"HTTP/1.1 200 OK\r\nx-upstream: {NAME}\r\ncontent-length: {n}\r\n\r\n".encode())
                while n > 0:
                    piece = block[: min(n, len(block))]
                    n -= len(piece)
                    writer.write(b"%x\r\n%s\r\n" % (len(piece), piece) if query.get("chunked") == "1" else piece)
                    await writer.drain()
                if query.get("chunked") == "1":
                    writer.write(b"0\r\n\r\n")
            elif url.path == "/upload":
                async for chunk in body_chunks(reader, headers):
                    size += len(chunk)
                writer.write(answer(200, str(size).encode()))
            elif url.path == "/ws" and headers.get("upgrade", "").lower() == "websocket":
                await websocket(reader, writer, headers)
                break
            elif method == "HEAD":  # the length a GET would have, and no body
                writer.write(f"HTTP/1.1 200 OK\r\nx-upstream: {NAME}\r\ncontent-length: 1234\r\n\r\n".encode())
            else:
                writer.write(answer(200, NAME.encode()))
            await writer.drain()
            if headers.get("connection", "").lower() == "close" or served == MAX_REQUESTS:
                break
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


async def main() -> None:
    port = int(sys.argv[2])
    context = None
    if "--tls" in sys.argv:
        i = sys.argv.index("--tls")
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(sys.argv[i + 1], sys.argv[i + 2])
    server = await asyncio.start_server(handle, "127.0.0.1", port, ssl=context, backlog=512)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
