"""LB throughput: requests per second through the HAProxy configuration dkos renders, against
a minimal hand-written HAProxy configuration on the same backends, in the same run.

    .venv/bin/python bench/lb_throughput.py [--seconds 5] [--rounds 3] [--connections 64]

Four comparisons, each over keep-alive client connections (`wrk -t2 -c64`), plain HTTP and
HTTPS (SNI `web.default.localhost`, the same ECDSA certificate on both sides). Each is
`--rounds` rounds of one `--seconds` wrk run per side, the order swapped every round; the
figure is the median per side, and the ratio dkos / minimal (goal ≥ 0.95).

- demo: the HAProxy a `dkos server` runs and drives, in front of a 4-instance demo app,
  against a minimal config (`balance roundrobin`, one `server` line per container IP) on
  the same 4 containers. The demo app (busybox nc + a shell per connection, 0.25 CPU each)
  is the bottleneck here, so this row shows that dkos' LB takes nothing from a slow app,
  not what HAProxy can do.
- nginx: two nginx processes on 127.0.0.1 serving a 2 KB file, fast enough for HAProxy to
  be the bottleneck. dkos only routes to its containers, so the dkos side is a copy of the
  config dkos rendered for the demo app (its `haproxy.cfg`, host map and certificates: the
  same frontends, headers, host routing and server options), with its listeners moved to
  free ports and its backend's servers pointed at the nginx ports, run by an HAProxy of its
  own; the other side is the minimal config on the same nginx processes.

Both sides run 2 threads (`nbthread 2`, as dkos renders). Load generator, HAProxy and the
backends share the machine's cores, so the absolute figures are whole-box figures; the
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
from zero_downtime import HAPROXY, HOST, SPEC, Dkos, answers, free_port, run

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


def minimal_config(servers: list[str], http_port: int, https_port: int, certificate: Path) -> str:
    lines = "".join(f"    server s{n} {address}\n" for n, address in enumerate(servers, 1))
    return (
        "global\n"
        "    nbthread 2\n"
        "defaults\n"
        "    mode http\n"
        "    timeout connect 5s\n"
        "    timeout client 60s\n"
        "    timeout server 60s\n"
        "frontend fe\n"
        f"    bind 127.0.0.1:{http_port}\n"
        f"    bind 127.0.0.1:{https_port} ssl crt {certificate}\n"
        "    default_backend be\n"
        "backend be\n"
        "    balance roundrobin\n"
        f"{lines}"
    )


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
    dkos_url: str
    minimal_url: str
    dkos_runs: list[Run]
    minimal_runs: list[Run]

    @property
    def dkos_rps(self) -> float:
        return statistics.median(r.rps for r in self.dkos_runs)

    @property
    def minimal_rps(self) -> float:
        return statistics.median(r.rps for r in self.minimal_runs)

    @property
    def errors(self) -> tuple[int, int]:
        return sum(r.errors for r in self.dkos_runs), sum(r.errors for r in self.minimal_runs)


async def compare(
    title: str, dkos_url: str, minimal_url: str, *, rounds: int, seconds: int, connections: int, script: Path
) -> Comparison:
    result = Comparison(title, dkos_url, minimal_url, [], [])
    # One second each to warm caches and session tickets, not counted.
    for url in (dkos_url, minimal_url):
        await wrk(url, seconds=1, connections=connections, script=script)
    for round_no in range(rounds):
        sides = [(dkos_url, result.dkos_runs), (minimal_url, result.minimal_runs)]
        if round_no % 2:
            sides.reverse()
        for url, runs in sides:
            runs.append(await wrk(url, seconds=seconds, connections=connections, script=script))
        print(
            f"  {title}, round {round_no + 1}: dkos {result.dkos_runs[-1].rps:,.0f} req/s,"
            f" minimal {result.minimal_runs[-1].rps:,.0f} req/s",
            file=sys.stderr,
            flush=True,
        )
    return result


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=5, help="seconds per wrk run (default 5)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per comparison (default 3)")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections (default 64)")
    args = parser.parse_args()
    measure = {"rounds": args.rounds, "seconds": args.seconds, "connections": args.connections}

    processes: list[Process] = []
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="dkos-bench-") as tmp_name:
        tmp = Path(tmp_name)
        script = tmp / "resolve.lua"
        script.write_text(WRK_SCRIPT)
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

            # Minimal config on the demo containers.
            demo_http, demo_https = free_port(), free_port()
            (tmp / "minimal-demo.cfg").write_text(minimal_config(containers, demo_http, demo_https, certificate))
            processes.append(Process([HAPROXY, "-f", str(tmp / "minimal-demo.cfg")], tmp / "minimal-demo.log"))
            await processes[-1].listening(demo_http, demo_https)

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

            # dkos' rendered config and the minimal one, on the nginx processes.
            copy_dir = tmp / "dkos-copy"
            copy_dir.mkdir()
            copy_http, copy_https = free_port(), free_port()
            (copy_dir / "haproxy.cfg").write_text(dkos_config_copy(dkos, copy_dir, nginx, copy_http, copy_https))
            processes.append(Process([HAPROXY, "-f", str(copy_dir / "haproxy.cfg")], tmp / "dkos-copy.log"))
            await processes[-1].listening(copy_http, copy_https)
            fast_http, fast_https = free_port(), free_port()
            (tmp / "minimal-nginx.cfg").write_text(minimal_config(nginx, fast_http, fast_https, certificate))
            processes.append(Process([HAPROXY, "-f", str(tmp / "minimal-nginx.cfg")], tmp / "minimal-nginx.log"))
            await processes[-1].listening(fast_http, fast_https)

            print("setup done; measuring", file=sys.stderr, flush=True)
            comparisons = [
                await compare(
                    "demo app (4 containers), HTTP ",
                    f"http://{HOST}:{dkos.http_port}/",
                    f"http://{HOST}:{demo_http}/",
                    script=script,
                    **measure,
                ),
                await compare(
                    "demo app (4 containers), HTTPS",
                    f"https://{HOST}:{dkos.https_port}/",
                    f"https://{HOST}:{demo_https}/",
                    script=script,
                    **measure,
                ),
                await compare(
                    "2 nginx (2 KB body), HTTP     ",
                    f"http://{HOST}:{copy_http}/",
                    f"http://{HOST}:{fast_http}/",
                    script=script,
                    **measure,
                ),
                await compare(
                    "2 nginx (2 KB body), HTTPS    ",
                    f"https://{HOST}:{copy_https}/",
                    f"https://{HOST}:{fast_https}/",
                    script=script,
                    **measure,
                ),
            ]
        finally:
            for process in processes:
                process.stop()
            await dkos.close()

    print(
        f"lb_throughput: wrk -t2 -c{args.connections}, keep-alive, {args.seconds} s runs,"
        f" median of {args.rounds} alternating rounds ({time.perf_counter() - began:.0f} s in all)"
    )
    print(f"  {'backends, protocol':<32} {'dkos req/s':>11} {'minimal req/s':>14} {'ratio':>6}  errors dkos/minimal")
    for c in comparisons:
        print(
            f"  {c.title:<32} {c.dkos_rps:>11,.0f} {c.minimal_rps:>14,.0f} {c.dkos_rps / c.minimal_rps:>6.2f}"
            f"  {c.errors[0]}/{c.errors[1]}"
        )
    print("  goal: ratio ≥ 0.95")
    print(
        "  demo rows: the HAProxy dkos runs (rendered config, servers set through the runtime API) vs a minimal"
        " config on the same 4 demo containers; the app (busybox nc + a shell per connection, 4 × 0.25 CPU)"
        " is the bottleneck, so these rows show the LB costs a slow app nothing, not HAProxy's speed"
    )
    print(
        "  nginx rows: a copy of dkos' rendered haproxy.cfg (same frontends, host map, headers, server options),"
        " servers pointed at 2 host nginx processes, vs the minimal config on the same nginx: HAProxy is the"
        " bottleneck here; load generator, HAProxy and nginx share the machine's cores"
    )


if __name__ == "__main__":
    asyncio.run(main())
