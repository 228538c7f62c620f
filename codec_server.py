"""Codec server: lets the Temporal Web UI and CLI show payloads encrypted with PAYLOAD_ENCRYPTION_KEY.

    python codec_server.py --port 8888 [--origin http://localhost:8233]

It reads PAYLOAD_ENCRYPTION_KEY from the environment or ``.env`` (as the worker does) and answers Temporal's
codec server protocol: ``POST /encode`` and ``POST /decode`` (also under a namespace segment,
``/{namespace}/decode``, for ``temporal --codec-endpoint 'http://localhost:8888/{namespace}'``), each taking
and returning ``{"payloads": [...]}`` in proto3 JSON (metadata values and data in base64). Browsers may call
it from the allowed UI origins (CORS). Then either:

- start the dev server with ``temporal server start-dev --ui-codec-endpoint http://localhost:8888``, or
- in the Web UI, open the data-encoder settings and set ``http://localhost:8888``, or
- ``temporal workflow show -w moodle-deploy-42 --codec-endpoint http://localhost:8888``.

It holds the key: bind it to localhost (the default) or put it behind your authentication.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from google.protobuf import json_format
from temporalio.api.common.v1 import Payloads
from temporalio.converter import PayloadCodec

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

DEFAULT_ORIGINS = ("http://localhost:8233", "http://127.0.0.1:8233")
MAX_BODY = 64 * 1024 * 1024
log = logging.getLogger("codec_server")


class CodecServer:
    """The ASGI application around a `PayloadCodec`."""

    def __init__(self, codec: PayloadCodec, origins: tuple[str, ...] | list[str] = DEFAULT_ORIGINS) -> None:
        self.codec = codec
        self.origins = tuple(origins)

    def _cors(self, scope: Scope) -> list[tuple[bytes, bytes]]:
        origin = dict(scope.get("headers") or []).get(b"origin", b"").decode("latin-1")
        if not origin or ("*" not in self.origins and origin not in self.origins):
            return []
        return [
            (b"access-control-allow-origin", origin.encode("latin-1")),
            (b"access-control-allow-credentials", b"true"),
            (b"access-control-allow-methods", b"POST, OPTIONS"),
            (b"access-control-allow-headers", b"Content-Type, X-Namespace, Authorization"),
            (b"access-control-max-age", b"600"),
            (b"vary", b"Origin"),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        cors = self._cors(scope)
        path = scope["path"].rstrip("/")
        operation = path.rsplit("/", 1)[-1]
        if operation not in ("encode", "decode") or path.count("/") > 2:
            await _respond(send, 404, {"error": "not found: POST /encode or /decode"}, cors)
            return
        if scope["method"] == "OPTIONS":
            await _respond(send, 204 if cors else 403, None, cors)
            return
        if scope["method"] != "POST":
            await _respond(send, 405, {"error": "use POST"}, [*cors, (b"allow", b"POST, OPTIONS")])
            return
        body = await _read_body(receive)
        if body is None:
            await _respond(send, 413, {"error": "body too large"}, cors)
            return
        try:
            payloads = json_format.Parse(body or b"{}", Payloads())
        except (json_format.ParseError, UnicodeDecodeError) as error:
            await _respond(send, 400, {"error": f"body is not a JSON Payloads message: {error}"}, cors)
            return
        try:
            if operation == "encode":
                done = await self.codec.encode(payloads.payloads)
            else:
                done = await self.codec.decode(payloads.payloads)
        except Exception as error:
            log.warning("%s failed: %s", operation, error)
            await _respond(send, 400, {"error": f"{operation} failed: {error}"}, cors)
            return
        await _respond(send, 200, json_format.MessageToDict(Payloads(payloads=done)), cors)


async def _read_body(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            break
    return b"".join(chunks)


async def _respond(send: Send, status: int, body: Any, headers: list[tuple[bytes, bytes]]) -> None:
    data = b"" if body is None else json.dumps(body).encode()
    extra = [(b"content-type", b"application/json")] if body is not None else []
    await send({"type": "http.response.start", "status": status,
                "headers": [*extra, (b"content-length", str(len(data)).encode()), *headers]})
    await send({"type": "http.response.body", "body": data})


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python codec_server.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=8888)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--origin", action="append", default=None,
                        help="origin of the Web UI allowed to call (repeatable; '*' for any); "
                             f"default: {', '.join(DEFAULT_ORIGINS)}")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    from codec import payload_codec
    from settings import ConfigError, load_settings

    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        # The environment alone suffices (a codec server needs no Moodle settings); else .env, as the worker.
        key = os.environ.get("PAYLOAD_ENCRYPTION_KEY")
        if key is None:
            secret = load_settings().payload_encryption_key
            key = None if secret is None else secret.get_secret_value()
        if key is None:
            log.warning("PAYLOAD_ENCRYPTION_KEY is not set: serving only the decompression of large payloads")
        codec = payload_codec(key)
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 2
    origins = args.origin or list(DEFAULT_ORIGINS)
    log.info("codec server on http://%s:%d (CORS origins: %s)", args.host, args.port, ", ".join(origins))
    uvicorn.run(CodecServer(codec, origins), host=args.host, port=args.port, log_level="warning",
                access_log=False, lifespan="on")
    return 0


if __name__ == "__main__":
    sys.exit(main())
