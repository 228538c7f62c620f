"""A counting pass-through in front of a real Moodle, for the benchmark's real-Moodle mode.

    python bench/moodle_proxy.py --port PORT --upstream https://moodle.example.com

Forwards every request unchanged to the upstream and counts the web-service calls by function (the
``wsfunction`` form field; the token is never read or logged), with the number in flight and its peak:
a real Moodle has no ``/_fake/state``. ``GET /_bench/state`` returns the counts, ``POST /_bench/reset_peak``
resets the peak.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections import Counter
from typing import Any
from urllib.parse import parse_qsl

import httpx
import uvicorn

_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding", "host"}


class Proxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.calls: Counter[str] = Counter()
        self.in_flight = 0
        self.peak_in_flight = 0
        self.http = httpx.AsyncClient(timeout=httpx.Timeout(900.0),
                                      limits=httpx.Limits(max_connections=None, max_keepalive_connections=100))

    def state(self) -> dict[str, Any]:
        return {"calls_by_function": dict(self.calls), "call_count": sum(self.calls.values()),
                "in_flight": self.in_flight, "peak_in_flight": self.peak_in_flight}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        path, method = scope["path"], scope["method"]
        if path == "/_bench/state":
            await _respond(send, 200, json.dumps(self.state()).encode(), "application/json")
            return
        if path == "/_bench/reset_peak" and method == "POST":
            self.peak_in_flight = self.in_flight
            await _respond(send, 200, json.dumps(self.state()).encode(), "application/json")
            return
        query = scope.get("query_string", b"").decode("latin-1")
        function = ""
        if path.endswith("/webservice/rest/server.php"):
            fields = dict(parse_qsl(query)) | dict(parse_qsl(body.decode("utf-8", "replace")))
            function = fields.get("wsfunction", "")
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]
                   if k.decode("latin-1").lower() not in _HOP]
        url = self.upstream + path + (f"?{query}" if query else "")
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            response = await self.http.request(method, url, content=body, headers=headers)
        except httpx.TransportError:
            await _respond(send, 502, b"upstream unreachable", "text/plain")
            return
        finally:
            self.in_flight -= 1
            if function:
                self.calls[function] += 1
        out = [(k.encode(), v.encode()) for k, v in response.headers.items() if k.lower() not in _HOP]
        out.append((b"content-length", str(len(response.content)).encode()))
        await send({"type": "http.response.start", "status": response.status_code, "headers": out})
        await send({"type": "http.response.body", "body": response.content})


async def _respond(send: Any, status: int, body: bytes, content_type: str) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    args = parser.parse_args()
    proxy = Proxy(args.upstream)
    config = uvicorn.Config(proxy, host="127.0.0.1", port=args.port, log_level="warning", access_log=False,
                            lifespan="off")
    print(f"counting proxy on http://127.0.0.1:{args.port} -> {args.upstream}", flush=True)

    async def serve() -> None:
        try:
            await uvicorn.Server(config).serve()
        finally:
            await proxy.http.aclose()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
