"""A scripted, possibly hostile token endpoint on a real loopback socket, and a clock driver."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import parse_qsl

from freshtoken import ManualClock

T = TypeVar("T")

Behaviour = Callable[["ScriptedEndpoint", asyncio.StreamWriter], Awaitable[None]]


@dataclass
class SeenRequest:
    """One request the endpoint read completely (head and body)."""

    head: str
    headers: dict[str, str]
    form: dict[str, str]


@dataclass
class ScriptedEndpoint:
    """Answers each request with the next behaviour of ``script`` (then with ``default``).

    A behaviour runs after the whole request was read, so everything it does happens after the
    request "may have been processed". ``sent`` counts the body bytes a flood got out.
    """

    script: list[Behaviour]
    default: Behaviour | None = None
    requests: list[SeenRequest] = field(default_factory=list)
    url: str = ""
    sent: int = 0
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            lines = head.split("\r\n")
            headers = {
                k.strip().lower(): v.strip()
                for k, _, v in (line.partition(":") for line in lines[1:] if line)
            }
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            self.requests.append(
                SeenRequest(lines[0], headers, dict(parse_qsl(body.decode("latin-1"))))
            )
            behaviour = self.script.pop(0) if self.script else self.default
            if behaviour is not None:
                await behaviour(self, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            self.tasks.discard(task)


@asynccontextmanager
async def scripted_endpoint(
    *script: Behaviour, default: Behaviour | None = None
) -> AsyncIterator[ScriptedEndpoint]:
    endpoint = ScriptedEndpoint(list(script), default)
    server = await asyncio.start_server(endpoint.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    endpoint.url = f"http://127.0.0.1:{port}/token"
    try:
        yield endpoint
    finally:
        server.close()
        # A handler still dripping or flooding is stopped with its connection.
        for task in list(endpoint.tasks):
            task.cancel()
        await asyncio.gather(*endpoint.tasks, return_exceptions=True)
        await server.wait_closed()


def respond(status: int, body: Any, headers: dict[str, str] | None = None) -> Behaviour:
    """A complete HTTP/1.1 answer (a dict body is sent as JSON)."""
    payload = json.dumps(body).encode() if isinstance(body, dict) else bytes(body)
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())

    async def behaviour(endpoint: ScriptedEndpoint, writer: asyncio.StreamWriter) -> None:
        writer.write(
            f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\nConnection: close\r\n{extra}\r\n".encode()
            + payload
        )
        await writer.drain()

    return behaviour


def token_response(access: str = "at-1", refresh: str | None = None, **extra: Any) -> Behaviour:
    body: dict[str, Any] = {"access_token": access, "token_type": "Bearer", **extra}
    if refresh is not None:
        body["refresh_token"] = refresh
    return respond(200, body)


async def hang_up(endpoint: ScriptedEndpoint, writer: asyncio.StreamWriter) -> None:
    """Close the connection without an answer, after the request was read whole."""


def drip(*, head_too: bool, interval: float = 0.05, limit: int = 2000) -> Behaviour:
    """One byte every ``interval`` seconds: of the head (``head_too``) or of a declared body."""

    async def behaviour(endpoint: ScriptedEndpoint, writer: asyncio.StreamWriter) -> None:
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 4096\r\n\r\n"
        data = head + b" " * 4096
        if not head_too:
            writer.write(head)
            data = data[len(head) :]
        for byte in data[:limit]:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(interval)  # the hostile pace itself, not a wait for a task

    return behaviour


def flood(*, total: int, declare: bool) -> Behaviour:
    """A 200 whose body is ``total`` bytes (declared in Content-Length or not), counted as sent."""

    async def behaviour(endpoint: ScriptedEndpoint, writer: asyncio.StreamWriter) -> None:
        length = f"Content-Length: {total}\r\n" if declare else ""
        writer.write(
            f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{length}"
            "Connection: close\r\n\r\n".encode()
        )
        chunk = b"x" * 65536
        while endpoint.sent < total:
            writer.write(chunk)
            await writer.drain()
            endpoint.sent += len(chunk)

    return behaviour


async def drive(clock: ManualClock, awaitable: Awaitable[T], *, step: float = 60.0) -> T:
    """Run ``awaitable``, advancing ``clock`` by ``step`` whenever something sleeps on it."""
    task = asyncio.ensure_future(awaitable)
    try:
        async with asyncio.timeout(20):
            while True:
                sleeper = asyncio.ensure_future(clock.wait_for_sleepers(1, timeout=20))
                done, _ = await asyncio.wait({task, sleeper}, return_when=asyncio.FIRST_COMPLETED)
                if task in done:
                    sleeper.cancel()
                    return task.result()
                sleeper.result()
                clock.advance(step)
    finally:
        task.cancel()


def private_pem(key: Any) -> bytes:
    """``key`` (a ``cryptography`` private key) as an unencrypted PKCS#8 PEM."""
    from cryptography.hazmat.primitives import serialization

    return bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def public_pem(key: Any) -> str:
    """The public half of ``key`` as a SubjectPublicKeyInfo PEM."""
    from cryptography.hazmat.primitives import serialization

    return str(
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
