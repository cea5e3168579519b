"""`make run`: dkos in the foreground with the demo app deployed.

Starts the server, waits for its API, deploys `examples/web.yaml` (two instances of the
busybox demo image) through the public API like any client would, waits until both are
healthy and prints where to go next. Ctrl-C stops the server; the instances keep running
and the next start adopts them.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import httpx

from dkos.core.settings import Settings
from dkos.server import configure_logging, serve

DEMO_SPEC = Path(__file__).resolve().parents[2] / "examples" / "web.yaml"


async def _deploy_demo(settings: Settings) -> None:
    host, port = settings.host_port
    url = f"http://{host}:{port}"
    token_file = settings.data_dir / "admin.token"
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        for _ in range(300):
            if token_file.exists():
                try:
                    headers = {"Authorization": f"Bearer {token_file.read_text().strip()}"}
                    if (await client.get("/v1/health", headers=headers)).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
            await asyncio.sleep(0.1)
        answer = await client.post(
            "/v1/apps",
            content=DEMO_SPEC.read_bytes(),
            headers={**headers, "Content-Type": "application/yaml"},
        )
        answer.raise_for_status()
        healthy = 0
        for _ in range(600):
            app = (await client.get("/v1/apps/web", headers=headers)).json()
            healthy = app["counts"]["healthy"]
            if healthy >= app["desired_instances"]:
                break
            await asyncio.sleep(0.1)
    env = f"DKOS_URL={url} DKOS_TOKEN=$(cat {token_file.resolve()})"
    ca = settings.data_dir / "tls" / "ca" / "ca.pem"
    print(
        f"""
  dkos is running, with the demo app `web` ({healthy} healthy instances).

    API          {url}/v1   (OpenAPI: {url}/docs)
    admin token  {token_file.resolve()}
    the app      http://web.default.{settings.base_domain}:{settings.lb_http_port}/
                 https://web.default.{settings.base_domain}:{settings.lb_https_port}/ (CA: {ca.resolve()})

  Try, in another terminal:

    {env} .venv/bin/dkos instances web

  Ctrl-C stops the server; the instances keep running and are adopted at the next start.
""",
        flush=True,
    )


async def _main() -> None:
    settings = Settings()
    deploy = asyncio.create_task(_deploy_demo(settings))
    try:
        await serve(settings)
    finally:
        deploy.cancel()


def main() -> None:
    configure_logging()
    try:
        asyncio.run(_main())
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
