"""``python -m fake_moodle --port PORT --token TOKEN [...]``: serve the simulator over HTTP with uvicorn."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging

import uvicorn

from .app import DroppedConnection, FakeMoodle


class _HideInjectedDrops(logging.Filter):
    """uvicorn logs an "Exception in ASGI application" for every connection the simulator drops on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, DroppedConnection | ConnectionRefusedError) and not _is_injected(exc)


def _is_injected(exc: BaseException | None) -> bool:
    import httpx

    return isinstance(exc, httpx.ConnectError) and str(exc) == "Connection refused"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m fake_moodle", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--token", required=True)
    parser.add_argument("--limited-token", default=None)
    parser.add_argument("--extended-token", default=None,
                        help="a token whose service also has the optional role and enrolment functions")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--fail-rate", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--debug", action="store_true", help="add debuginfo to exceptions (site debug NORMAL)"
    )
    return parser.parse_args(argv)


async def serve(fake: FakeMoodle, host: str, port: int) -> None:
    config = uvicorn.Config(fake, host=host, port=port, log_level="warning", lifespan="on", access_log=False)
    server = uvicorn.Server(config)
    logging.getLogger("uvicorn.error").addFilter(_HideInjectedDrops())
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            await task
            return
        await asyncio.sleep(0.02)
    print(f"fake Moodle listening on http://{host}:{port}", flush=True)
    await task


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    url = f"http://{args.host}:{args.port}"
    fake = FakeMoodle(
        token=args.token,
        limited_token=args.limited_token,
        extended_token=args.extended_token,
        latency_ms=args.latency_ms,
        fail_rate=args.fail_rate,
        seed=args.seed,
        debug=args.debug,
        site_url=url,
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(fake, args.host, args.port))


if __name__ == "__main__":
    main()
