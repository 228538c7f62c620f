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
import logging
import os
import sys
from collections.abc import Sequence

from google.protobuf import json_format
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from temporalio.api.common.v1 import Payloads
from temporalio.converter import PayloadCodec

DEFAULT_ORIGINS = ("http://localhost:8233", "http://127.0.0.1:8233")
MAX_BODY = 64 * 1024 * 1024
log = logging.getLogger("codec_server")


def codec_app(codec: PayloadCodec, origins: Sequence[str] = DEFAULT_ORIGINS) -> Starlette:
    """The ASGI application around a `PayloadCodec`: POST /encode and /decode, optionally under a namespace."""

    async def handle(request: Request) -> JSONResponse:
        operation = request.url.path.rstrip("/").rsplit("/", 1)[-1]
        body = await request.body()
        if len(body) > MAX_BODY:
            return JSONResponse({"error": "body too large"}, status_code=413)
        try:
            payloads = json_format.Parse(body or b"{}", Payloads())
        except (json_format.ParseError, UnicodeDecodeError) as error:
            return JSONResponse({"error": f"body is not a JSON Payloads message: {error}"}, status_code=400)
        try:
            coded = await (codec.encode if operation == "encode" else codec.decode)(payloads.payloads)
        except Exception as error:
            log.warning("%s failed: %s", operation, error)
            return JSONResponse({"error": f"{operation} failed: {error}"}, status_code=400)
        return JSONResponse(json_format.MessageToDict(Payloads(payloads=coded)))

    routes = [Route(path, handle, methods=["POST"])
              for path in ("/encode", "/decode", "/{namespace}/encode", "/{namespace}/decode")]
    cors = Middleware(CORSMiddleware, allow_origins=list(origins), allow_methods=["POST"], allow_credentials=True,
                      allow_headers=["Content-Type", "X-Namespace", "Authorization"], max_age=600)
    return Starlette(routes=routes, middleware=[cors])


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

    from openvle_moodle_sync.codec import payload_codec
    from openvle_moodle_sync.settings import ConfigError, load_settings

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
    uvicorn.run(codec_app(codec, origins), host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
