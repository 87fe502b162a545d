"""The ceiling for bench/scale.py's aws.status figures: a bare Starlette app that answers
POST /stable/ with a constant JSON envelope, without reading the body, touching a database or
checking a signature. uvicorn runs it with the settings `vod2s3 api` uses (see
vod2s3.cli._run_api), so the difference between the two is vod2s3's own work.

    .venv/bin/python bench/ceiling_app.py --port 8090
"""

from __future__ import annotations

import argparse

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

# The envelope's shape with an empty data list: what a bare JSON endpoint answers.
BODY = {"status": "success", "message": "Found AWS Status", "handle_time": 0.0, "data": []}


async def stable(_request: Request) -> Response:
    return JSONResponse(BODY)


async def healthz(_request: Request) -> Response:
    return JSONResponse({"status": "ok"})


app = Starlette(
    routes=[
        Route("/stable/", stable, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
    ]
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    args = parser.parse_args()
    # The same uvicorn.run arguments as vod2s3.cli._run_api.
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level="warning",
        timeout_keep_alive=5,
        server_header=False,
    )


if __name__ == "__main__":
    main()
