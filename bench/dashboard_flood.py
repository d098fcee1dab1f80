"""Dashboard flood: does a normal viewer still get the wall while others hold idle or slow connections?

    python -m fervi.bench.dashboard_flood [--seconds 30] [--connections 1000] [--out bench/results/dashboard_flood.json]

A real `fervi dashboard` on 0.0.0.0 with a token, on the embedded Redis. Two runs, each on a fresh dashboard:
`one_address` (every flood connection from 127.0.0.2) and `fifty_addresses` (spread over 127.0.0.2 ...
127.0.0.51; Linux routes all of 127/8 to loopback). The flood, without the token, a quarter each:
- idle TCP: connect and send nothing;
- slowloris: a request line, then one header line every 10 s;
- WebSocket: an Engine.IO WebSocket handshake, then only answers the server's pings;
- polling: Engine.IO long-polling handshakes, one a second each, never polled again.
Each flood connection opens again when the server closes it, as an attacker's would. Meanwhile a normal
viewer on 127.0.0.1 loads the wall once a second: GET / with the token cookie, its static assets, a Socket.IO
connection (polling, then the WebSocket upgrade); and /healthz. Reported per run: the viewer's load times
(median, 90th percentile, largest, share under 2 s, failures), /healthz's, and what the flood saw (how
often the server cut it, HTTP statuses). Prints one JSON object and writes it to --out.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import tempfile
import threading
import time
from collections import Counter
from datetime import date
from pathlib import Path

import numpy as np
import requests
import socketio  # type: ignore[import-untyped]  # python-socketio ships no types
from fervi.bench.harness import machine_info, spawn_quiet
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Message, RejectConnection, Request, TextMessage

from fervi.embedded import EmbeddedRedis, free_port
from fervi.service import stop_processes

TOKEN = "flood-bench-token"
KINDS = ("idle", "slowloris", "websocket", "polling")
SLOW_HEADER_EVERY_S = 10.0
REOPEN_AFTER_S = 1.0  # a refused or cut flood connection opens again after this
RAMP_S = 5.0
LOAD_TIMEOUT_S = 10.0


class Flood:
    """Flood connections of the four kinds from given source addresses; counts what the server did to them."""

    def __init__(self, port: int, addresses: list[str], connections: int):
        self.port, self.addresses, self.connections = port, addresses, connections
        self.seen: Counter[str] = Counter()  # "<kind>:<what>"
        self.open: Counter[str] = Counter()
        self.open_at_end: dict[str, int] = {}
        self.stopping = False

    async def run(self, seconds: float) -> None:
        tasks = [
            asyncio.create_task(self.attacker(KINDS[i % len(KINDS)], self.addresses[i % len(self.addresses)]))
            for i in range(self.connections)
        ]
        await asyncio.sleep(seconds)
        self.open_at_end = dict(self.open)
        self.stopping = True
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def attacker(self, kind: str, address: str) -> None:
        attack = {"idle": self.idle, "slowloris": self.slowloris, "websocket": self.websocket, "polling": self.poll}
        while not self.stopping:
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection("127.0.0.1", self.port, local_addr=(address, 0)), 5
                )
            except (OSError, TimeoutError):
                self.seen[f"{kind}:connect_failed"] += 1
                await asyncio.sleep(1)
                continue
            self.open[kind] += 1
            try:
                await attack[kind](reader, writer)
            except (OSError, TimeoutError):
                self.seen[f"{kind}:error"] += 1
            finally:
                self.open[kind] -= 1
                writer.close()
            await asyncio.sleep(REOPEN_AFTER_S)

    async def idle(self, reader, _writer) -> None:
        await reader.read(4096)  # until the server closes (or answers something)
        self.seen["idle:closed_by_server"] += 1

    async def slowloris(self, reader, writer) -> None:
        writer.write(b"GET / HTTP/1.1\r\nHost: dashboard\r\n")
        while True:
            try:
                data = await asyncio.wait_for(reader.read(4096), SLOW_HEADER_EVERY_S)
            except TimeoutError:
                writer.write(b"X-Slow: 1\r\n")
                await writer.drain()
                continue
            self.seen["slowloris:" + (status_of(data) or "closed_by_server")] += 1
            return

    async def poll(self, reader, writer) -> None:
        request = f"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n\r\n"
        while True:
            writer.write(request.encode())
            data = await asyncio.wait_for(reader.read(65536), 15)
            self.seen["polling:" + (status_of(data) or "closed_by_server")] += 1
            if not data or b"Connection: close" in data:
                return
            await asyncio.sleep(1)

    async def websocket(self, reader, writer) -> None:
        ws = WSConnection(ConnectionType.CLIENT)
        writer.write(ws.send(Request(host=f"127.0.0.1:{self.port}", target="/socket.io/?EIO=4&transport=websocket")))
        while True:
            data = await reader.read(65536)
            if not data:
                self.seen["websocket:closed_by_server"] += 1
                return
            ws.receive_data(data)
            for event in ws.events():
                if isinstance(event, AcceptConnection):
                    self.seen["websocket:opened"] += 1
                elif isinstance(event, RejectConnection):
                    self.seen[f"websocket:{event.status_code}"] += 1
                    return
                elif isinstance(event, TextMessage) and event.data == "2":  # Engine.IO ping: answer, nothing else
                    writer.write(ws.send(Message(data="3")))
                elif isinstance(event, CloseConnection):
                    self.seen["websocket:closed_by_server"] += 1
                    return


def status_of(data: bytes) -> str:
    match = re.match(rb"HTTP/1\.[01] (\d{3})", data)
    return match.group(1).decode() if match else ""


def load_wall(url: str) -> float:
    """Seconds a fresh viewer with the token cookie takes to load the wall: page, assets, Socket.IO connected."""
    started = time.perf_counter()
    with requests.Session() as session:
        session.cookies.set("fervi_token", TOKEN)
        page = session.get(url + "/", timeout=LOAD_TIMEOUT_S)
        page.raise_for_status()
        for asset in sorted(set(re.findall(r'(?:src|href)="(/static/[^"]+)"', page.text))):
            session.get(url + asset, timeout=LOAD_TIMEOUT_S).raise_for_status()
    sio = socketio.Client(reconnection=False)
    try:  # python-socketio without websocket-client: long-polling, as a browser's first transport
        sio.connect(
            url, headers={"Cookie": f"fervi_token={TOKEN}"}, transports=["polling"], wait_timeout=LOAD_TIMEOUT_S
        )
        return time.perf_counter() - started
    finally:  # a polling client's disconnect waits for its pending poll: not part of the load
        threading.Thread(target=sio.disconnect, daemon=True).start()


def healthz(url: str) -> float:
    started = time.perf_counter()
    requests.get(url + "/healthz", timeout=LOAD_TIMEOUT_S).raise_for_status()
    return time.perf_counter() - started


def viewer(url: str, seconds: float) -> dict:
    """Load the wall and /healthz once a second for `seconds`; their times and failures."""
    times: dict[str, list[float]] = {"wall": [], "healthz": []}
    failures: Counter[str] = Counter()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        tick = time.monotonic()
        for name, probe in (("healthz", healthz), ("wall", load_wall)):
            try:
                times[name].append(probe(url))
            except Exception as err:  # any failure is the viewer's failure: counted by kind, not raised
                failures[f"{name}:{type(err).__name__}"] += 1
                times[name].append(float(LOAD_TIMEOUT_S))
        time.sleep(max(0.0, 1.0 - (time.monotonic() - tick)))
    return {name: summary(values) for name, values in times.items()} | {"failures": dict(failures)}


def summary(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "p50_s": round(float(np.percentile(values, 50)), 3),
        "p90_s": round(float(np.percentile(values, 90)), 3),
        "max_s": round(max(values), 3),
        "under_2s": round(sum(v < 2.0 for v in values) / len(values), 3),
    }


def flood_run(redis_url: str, addresses: list[str], connections: int, seconds: float) -> dict:
    """A fresh dashboard, the flood from `addresses`, and the viewer once the flood is up."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    dashboard = spawn_quiet(
        ["dashboard", "--host", "0.0.0.0", "--port", str(port)], redis_url, FERVI_DASHBOARD_TOKEN=TOKEN
    )
    try:
        wait_healthy(url)
        quiet = viewer(url, 3)
        flood = Flood(port, addresses, connections)
        result: dict = {}
        thread = threading.Thread(target=lambda: result.update(viewer_after(url, RAMP_S, seconds)))
        thread.start()
        asyncio.run(flood.run(RAMP_S + seconds))
        thread.join()
        return {
            # the machine's load (1 min) at the end: a shared machine's other work slows the dashboard too
            "load_average_1m": round(os.getloadavg()[0], 2),
            "without_flood": quiet,
            "under_flood": result,
            "flood_open_at_end": flood.open_at_end,
            "flood_seen": dict(sorted(flood.seen.items())),
        }
    finally:
        stop_processes([dashboard], 20)


def viewer_after(url: str, delay_s: float, seconds: float) -> dict:
    time.sleep(delay_s)
    return viewer(url, seconds)


def wait_healthy(url: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if requests.get(url + "/healthz", timeout=2).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"the dashboard at {url} did not come up in {timeout_s:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30.0, help="the viewer's window under flood, per run")
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument(
        "--out", default="bench/results/dashboard_flood.json", help="committed as dashboard_flood-<date>-<machine>"
    )
    args = parser.parse_args()
    report: dict = {
        "date": date.today().isoformat(),
        "machine": machine_info(),
        "seconds": args.seconds,
        "connections": args.connections,
    }
    home = Path(tempfile.mkdtemp(prefix="fervi-flood-"))
    redis = EmbeddedRedis(home / "redis").start()
    try:
        runs = {"one_address": ["127.0.0.2"], "fifty_addresses": [f"127.0.0.{i}" for i in range(2, 52)]}
        for name, addresses in runs.items():
            report[name] = flood_run(redis.url, addresses, args.connections, args.seconds)
            print(json.dumps({name: report[name]}), flush=True)
    finally:
        redis.stop()
        shutil.rmtree(home, ignore_errors=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "machine"}))


if __name__ == "__main__":
    main()
