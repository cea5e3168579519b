"""LB throughput: requests per second through the HAProxy configuration dkos renders, against
a minimal hand-written HAProxy configuration on the same backends, in the same run.

    .venv/bin/python bench/lb_throughput.py [--seconds 3] [--rounds 4] [--connections 64]

Four comparisons, each over keep-alive client connections (`wrk -t2 -c64`), plain HTTP and
HTTPS (SNI `web.default.localhost`, the same ECDSA certificate on both sides). Each is
`--rounds` rounds of one `--seconds` wrk run per side, the order rotated every round. The
figures are the medians per side; the ratio is the median of the rounds' dkos / minimal
ratios (goal ≥ 0.95). The whole run takes ≈ 2.5 minutes.

- A, demo: the HAProxy a `dkos server` runs and drives, in front of a 4-instance demo app,
  against a minimal config (`balance roundrobin`, one `server` line per container IP) on
  the same 4 containers. The demo app (busybox nc + a shell per connection, 0.25 CPU each)
  is the bottleneck here: these rows say what dkos' LB costs a slow app, not what HAProxy
  can do.
- B, nginx: two nginx processes on 127.0.0.1 serving a 2 KB file, fast enough for HAProxy
  to be the bottleneck. dkos only routes to its containers, so the dkos side is a copy of
  the config dkos rendered for the demo app (its `haproxy.cfg`, host map and certificates:
  the same frontends, headers, host routing and server options), with its listeners moved
  to free ports and its backend's servers pointed at the nginx ports, run by an HAProxy of
  its own; the other side is the minimal config on the same nginx processes.

The HTTP rows have a third side, "minimal+hdrs": the minimal config plus the three request
headers dkos' frontends set (X-Forwarded-For, X-Forwarded-Proto, X-Request-Id), to tell
what those cost from what the rest of dkos' config costs.

Every HAProxy runs 2 threads (`nbthread 2`, as dkos renders). Load generator, HAProxy and
the backends share the machine's cores, so the absolute figures are whole-box figures; the
ratio is what matters. Needs the demo images (`make setup`), a Docker engine, haproxy,
nginx and wrk.

wrk resolves the URL's host with getaddrinfo, which does not know `*.localhost` here: its
script connects to 127.0.0.1 and keeps `web.default.localhost` for SNI and the Host header.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

# The dkos server, ports and process helpers are shared with the zero-downtime benchmark.
from zero_downtime import HAPROXY, HOST, SPEC, Dkos, answers, free_port, minimal_config, require, run

NGINX = "/usr/sbin/nginx"
BODY_BYTES = 2048

WRK_SCRIPT = """
-- Connect to 127.0.0.1 whatever the URL says; the URL's host still goes into SNI and Host.
function wrk.resolve(host, service)
  wrk.addrs = wrk.lookup("127.0.0.1", service)
end
"""


@dataclass
class Run:
    rps: float
    requests: int
    errors: int
    """Socket errors plus responses with status ≥ 400 (wrk's "Non-2xx or 3xx responses")."""


async def wrk(url: str, *, seconds: int, connections: int, script: Path) -> Run:
    output = await run(
        "wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--timeout", "2s", "-s", str(script), url
    )  # fmt: skip
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    requests = re.search(r"(\d+) requests in ", output)
    if rps is None or requests is None:
        raise RuntimeError(f"unexpected wrk output:\n{output}")
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    status = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors = (sum(int(n) for n in sockets.groups()) if sockets else 0) + (int(status.group(1)) if status else 0)
    return Run(rps=float(rps.group(1)), requests=int(requests.group(1)), errors=errors)


class Process:
    """A foreground server process of ours (HAProxy or nginx), stopped by its pid."""

    def __init__(self, argv: list[str], log: Path) -> None:
        self.name, self.log = Path(argv[0]).name, log
        with log.open("wb") as out:
            self.process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    async def listening(self, *ports: int) -> None:
        deadline = time.perf_counter() + 10
        for port in ports:
            while not await answers("127.0.0.1", port):
                if self.process.poll() is not None or time.perf_counter() > deadline:
                    raise RuntimeError(f"{self.name} did not listen on {port}:\n{self.log.read_text()}")
                await asyncio.sleep(0.05)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def dkos_config_copy(dkos: Dkos, copy_dir: Path, servers: list[str], http_port: int, https_port: int) -> str:
    """dkos' rendered haproxy.cfg, with its run dir (sockets, state file, maps) moved to
    `copy_dir`, its listeners on the given ports, and the app backend's servers at `servers`
    with the options dkos gives every server."""
    run_dir = dkos.data_dir / "lb"
    for name in ("hosts.map", "redirect.map"):
        shutil.copy(run_dir / name, copy_dir / name)
    text = (run_dir / "haproxy.cfg").read_text().replace(f"{run_dir}/", f"{copy_dir}/")
    text = text.replace(f"bind 127.0.0.1:{dkos.http_port}\n", f"bind 127.0.0.1:{http_port}\n")
    text = text.replace(f"bind 127.0.0.1:{dkos.https_port} ssl", f"bind 127.0.0.1:{https_port} ssl")
    server_lines = re.findall(r"^    server \S+ \S+ (.*)$", text, flags=re.MULTILINE)
    if not server_lines or f"127.0.0.1:{http_port}" not in text or f"127.0.0.1:{https_port}" not in text:
        raise RuntimeError(f"dkos' haproxy.cfg is not as expected:\n{text}")
    options = server_lines[0]
    text = re.sub(r"^    server .*\n", "", text, flags=re.MULTILINE)
    new_servers = "".join(f"    server nginx-{n} {address} {options}\n" for n, address in enumerate(servers, 1))
    return text.replace("    balance roundrobin\n", f"    balance roundrobin\n{new_servers}", 1)


def nginx_config(root: Path, port: int, n: int) -> str:
    return f"""daemon off;
worker_processes 1;
pid {root}/nginx-{n}.pid;
error_log {root}/nginx-{n}.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path {root}/tmp-{n};
    proxy_temp_path {root}/tmp-{n};
    fastcgi_temp_path {root}/tmp-{n};
    uwsgi_temp_path {root}/tmp-{n};
    scgi_temp_path {root}/tmp-{n};
    server {{
        listen 127.0.0.1:{port};
        root {root}/www;
    }}
}}
"""


@dataclass
class Comparison:
    title: str
    runs: dict[str, list[Run]]
    """Side ("dkos", "minimal", ...) → its runs, round by round."""

    def rps(self, side: str) -> float:
        return statistics.median(r.rps for r in self.runs[side])

    def ratio(self, side: str, to: str = "minimal") -> float:
        """The median of the rounds' ratios: each round's runs are next to each other in time,
        so a neighbour's load burst moves both sides of a ratio more than the medians'."""
        return statistics.median(a.rps / b.rps for a, b in zip(self.runs[side], self.runs[to], strict=True))

    def errors(self, side: str) -> int:
        return sum(r.errors for r in self.runs[side])


async def compare(
    title: str, urls: dict[str, str], *, rounds: int, seconds: int, connections: int, script: Path
) -> Comparison:
    """`rounds` rounds of one wrk run per side, the order rotated every round."""
    result = Comparison(title, {side: [] for side in urls})
    # One second each to warm caches and TLS session tickets, not counted.
    for url in urls.values():
        await wrk(url, seconds=1, connections=connections, script=script)
    sides = list(urls)
    for round_no in range(rounds):
        order = sides[round_no % len(sides) :] + sides[: round_no % len(sides)]
        for side in order:
            result.runs[side].append(await wrk(urls[side], seconds=seconds, connections=connections, script=script))
        figures = ", ".join(f"{side} {result.runs[side][-1].rps:,.0f}" for side in sides)
        print(f"  {title}, round {round_no + 1}: {figures} req/s", file=sys.stderr, flush=True)
    return result


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=3, help="seconds per wrk run (default 3)")
    parser.add_argument("--rounds", type=int, default=4, help="rounds per comparison (default 4)")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections (default 64)")
    args = parser.parse_args()
    require("docker", HAPROXY, NGINX, "wrk")

    processes: list[Process] = []

    async def haproxy(config: Path, text: str, *ports: int) -> None:
        config.write_text(text)
        processes.append(Process([HAPROXY, "-f", str(config)], config.with_suffix(".log")))
        await processes[-1].listening(*ports)

    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="dkos-bench-") as tmp_name:
        tmp = Path(tmp_name)
        script = tmp / "resolve.lua"
        script.write_text(WRK_SCRIPT)

        async def measure(title: str, urls: dict[str, str]) -> Comparison:
            return await compare(
                title, urls, rounds=args.rounds, seconds=args.seconds, connections=args.connections, script=script
            )

        (tmp / "dkos").mkdir()
        dkos = Dkos(tmp / "dkos")
        try:
            client = await dkos.start()
            await dkos.wait(await client.post("/v1/apps", json=SPEC))
            instances = (await client.get("/v1/apps/web/instances")).json()["instances"]
            containers = sorted(i["address"] for i in instances if i["state"] == "healthy")
            certificates = sorted((dkos.data_dir / "tls" / "issued").glob("_.default.localhost-*.pem"))
            if len(containers) != SPEC["instances"] or len(certificates) != 1:
                raise RuntimeError(f"unexpected app state: {containers}, {certificates}")
            certificate = certificates[0]

            # The minimal config on the demo containers, and the same with dkos' three headers.
            demo_http, demo_https, demo_headers = free_port(), free_port(), free_port()
            await haproxy(
                tmp / "minimal-demo.cfg",
                minimal_config(containers, demo_http, demo_https, certificate),
                demo_http,
                demo_https,
            )
            await haproxy(
                tmp / "minimal-demo-headers.cfg",
                minimal_config(containers, demo_headers, None, certificate, forwarded_headers=True),
                demo_headers,
            )

            # Two nginx processes serving 2 KB. Their workers run as nobody: they must be able to
            # reach the file (the temporary directory is 0700).
            tmp.chmod(0o711)
            (tmp / "www").mkdir(mode=0o755)
            (tmp / "www" / "index.html").write_text("x" * (BODY_BYTES - 1) + "\n")
            (tmp / "www" / "index.html").chmod(0o644)
            nginx_ports = [free_port(), free_port()]
            for n, port in enumerate(nginx_ports, 1):
                (tmp / f"tmp-{n}").mkdir()
                (tmp / f"nginx-{n}.conf").write_text(nginx_config(tmp, port, n))
                argv = [NGINX, "-e", str(tmp / f"nginx-{n}.log"), "-c", str(tmp / f"nginx-{n}.conf")]
                processes.append(Process(argv, tmp / f"nginx-{n}.out"))
                await processes[-1].listening(port)
            nginx = [f"127.0.0.1:{port}" for port in nginx_ports]

            # A copy of dkos' rendered config and the minimal one, on the nginx processes.
            copy_dir = tmp / "dkos-copy"
            copy_dir.mkdir()
            copy_http, copy_https, fast_http, fast_https = free_port(), free_port(), free_port(), free_port()
            await haproxy(
                copy_dir / "haproxy.cfg",
                dkos_config_copy(dkos, copy_dir, nginx, copy_http, copy_https),
                copy_http,
                copy_https,
            )
            await haproxy(
                tmp / "minimal-nginx.cfg",
                minimal_config(nginx, fast_http, fast_https, certificate),
                fast_http,
                fast_https,
            )
            fast_headers = free_port()
            await haproxy(
                tmp / "minimal-nginx-headers.cfg",
                minimal_config(nginx, fast_headers, None, certificate, forwarded_headers=True),
                fast_headers,
            )

            print("setup done; measuring", file=sys.stderr, flush=True)
            demo_http_row = await measure(
                "demo, HTTP",
                {
                    "dkos": f"http://{HOST}:{dkos.http_port}/",
                    "minimal": f"http://{HOST}:{demo_http}/",
                    "minimal+headers": f"http://{HOST}:{demo_headers}/",
                },
            )
            demo_https_row = await measure(
                "demo, HTTPS",
                {"dkos": f"https://{HOST}:{dkos.https_port}/", "minimal": f"https://{HOST}:{demo_https}/"},
            )
            nginx_http_row = await measure(
                "nginx, HTTP",
                {
                    "dkos": f"http://{HOST}:{copy_http}/",
                    "minimal": f"http://{HOST}:{fast_http}/",
                    "minimal+headers": f"http://{HOST}:{fast_headers}/",
                },
            )
            nginx_https_row = await measure(
                "nginx, HTTPS",
                {"dkos": f"https://{HOST}:{copy_https}/", "minimal": f"https://{HOST}:{fast_https}/"},
            )
        finally:
            for process in processes:
                process.stop()
            await dkos.close()

    rows = [
        ("A  demo app, HTTP", demo_http_row),
        ("A  demo app, HTTPS", demo_https_row),
        ("B  2 nginx, HTTP", nginx_http_row),
        ("B  2 nginx, HTTPS", nginx_https_row),
    ]
    print(
        f"lb_throughput: wrk -t2 -c{args.connections} over keep-alive connections, {args.seconds} s runs,"
        f" {args.rounds} rounds alternating the sides ({time.perf_counter() - began:.0f} s in all)"
    )
    print(
        f"  {'':<19} {'dkos':>8} {'minimal':>8} {'ratio':>6}   {'minimal+hdrs':>12} {'dkos/that':>9}"
        "   errors dkos/minimal(/+hdrs)"
    )
    for name, row in rows:
        line = f"  {name:<19} {row.rps('dkos'):>8,.0f} {row.rps('minimal'):>8,.0f} {row.ratio('dkos'):>6.2f}"
        errors = f"{row.errors('dkos')}/{row.errors('minimal')}"
        if "minimal+headers" in row.runs:
            line += f"   {row.rps('minimal+headers'):>12,.0f} {row.ratio('dkos', 'minimal+headers'):>9.2f}"
            errors += f"/{row.errors('minimal+headers')}"
        else:
            line += f"   {'—':>12} {'—':>9}"
        print(f"{line}   {errors}")
    print(
        "  req/s: medians of the runs; ratio: median of the rounds' dkos/minimal ratios (goal ≥ 0.95);"
        " errors: socket errors + statuses ≥ 400, all runs"
    )
    print(
        "  A: the HAProxy dkos runs (its rendered config, servers set through the runtime API) vs a minimal"
        " config, on the same 4 demo containers. The demo app (busybox nc + a shell per connection,"
        " 4 × 0.25 CPU) is the bottleneck, not HAProxy"
    )
    print(
        "  B: HAProxy as the bottleneck: a copy of dkos' rendered haproxy.cfg (same frontends, host map,"
        " headers, TLS certificate, server options), servers pointed at 2 nginx processes on the host, vs the"
        " minimal config on the same nginx; load generator, HAProxy and nginx share the machine's cores"
    )
    print(
        "  minimal+hdrs: the minimal config plus the three request headers dkos' frontends set"
        " (X-Forwarded-For, X-Forwarded-Proto, X-Request-Id); dkos/that is what remains of the gap without them"
    )


if __name__ == "__main__":
    asyncio.run(main())
