"""Bearer-token authentication for everything under `/v1`, `/api` and `/metrics`, as ASGI middleware.

Done before routing on purpose: a caller without a valid token learns nothing, not even
whether a path exists (a route-level dependency would answer 404 or 405 first).
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Receive, Scope, Send

from dkos.core.errors import Unauthorized
from dkos.iam.tokens import TokenStore

PROTECTED_PREFIXES = ("/v1/", "/api/", "/metrics")
"""The dkos API, the OpenTSDB-compatible metrics API and dkos' own Prometheus metrics."""


class BearerAuth:
    def __init__(self, app: ASGIApp, tokens: TokenStore) -> None:
        self._app = app
        self._tokens = tokens

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not (scope["path"] + "/").startswith(PROTECTED_PREFIXES):
            await self._app(scope, receive, send)
            return
        header = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
        scheme, _, token = header.partition(" ")
        principal = await self._tokens.verify(token.strip()) if scheme.lower() == "bearer" and token else None
        if principal is None:
            body = json.dumps(Unauthorized().to_json()).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 401,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"www-authenticate", b'Bearer realm="dkos"'),
                        (b"content-length", str(len(body)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        scope.setdefault("state", {})["principal"] = principal
        await self._app(scope, receive, send)
