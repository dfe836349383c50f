"""The lane service under load: throughput and latency, micro-batching on vs off, and a soak.

A real ``xscan serve`` process on loopback, driven by async httpx clients from this process.
Two servers are started side by side, one micro-batching (``--max-batch 8 --max-delay-ms 5``)
and one not (``--max-batch 1``); for each client count (1, 4, 16, 64) both are measured back
to back, in alternating order, ``--rounds`` times (median throughput, pooled latencies), so
that the noise of a shared machine hits both alike. The server's CPU time per answered
request is reported too: it is far less sensitive to other load than throughput is. Every
answered request is checked against the audit log at the end. Before the servers start, the
CPU cost of the decode stage per payload is measured in-process, old path against new
(``decode_cpu_ms_per_payload``).

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_service.py [--model M.onnx] \\
        [--duration 10] [--soak-minutes 10] [--out results.json]

Without ``--model`` it takes the first FP32 detector ONNX in ``models/`` or ``runs/`` and falls back
to the toy detector of the tests at 320x320 (it says which). Payloads are the real dev scans
(``../shared/data/xray-real-dev/sixray/images``, JPEG) when present, else generated scan-like
JPEGs; by default they are re-encoded with the long side at most ``2 x`` the model input's
shorter side (``--payload-max-side``; 0 sends the files as they are, re-encoded at their own
size). Scans large enough for the model to tile them run alone, outside the micro-batches.

The soak (``--soak-minutes``) runs the batching server at 64 clients with a queue small enough
that backpressure (503) can occur, samples the server's resident memory every 5 s and checks:
RSS growth < 10 % (first sample after one minute vs last), no status other than 200 and 503,
audit records == answered requests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import httpx
import numpy as np
from _models import find_model

ROOT = Path(__file__).resolve().parents[1]
SIXRAY = ROOT.parent / "shared" / "data" / "xray-real-dev" / "sixray" / "images"
XSCAN = ROOT / ".venv" / "bin" / "xscan"


def payloads(
    input_hw: tuple[int, int], n: int = 32, seed: int = 0, max_side: int | None = None
) -> tuple[list[bytes], str]:
    """``n`` JPEG scans, long side at most ``max_side`` pixels (default: twice the model
    input's shorter side; 0: no limit)."""
    limit = 2 * min(input_hw) if max_side is None else (max_side or 1 << 30)
    files = sorted(SIXRAY.glob("*.jpg"))[:n] if SIXRAY.is_dir() else []
    rng = np.random.default_rng(seed)
    images = []
    for f in files:
        images.append(cv2.imread(str(f), cv2.IMREAD_COLOR))
    source = f"SIXray dev scans ({len(files)})"
    if not images:
        source = f"generated scan-like JPEGs ({n})"
        for _ in range(n):
            img = np.full((480, 640, 3), 250, np.uint8)
            for _ in range(8):
                y, x = rng.integers(0, 380), rng.integers(0, 540)
                img[y : y + 100, x : x + 100] //= 2
            images.append(img)
    out = []
    for img in images:
        s = min(1.0, limit / max(img.shape[:2]))
        if s < 1.0:
            img = cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
        out.append(cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes())
    return out, source


def decode_cost(model_path: Path, data: list[bytes], rounds: int = 3) -> dict[str, float]:
    """CPU ms per payload (one thread, in this process, rounds interleaved) of the service's
    decode stage (hash, decode, preprocess): the full decode + ``prepare`` it used before,
    full decode + integer shrink, and what it does now (reduced JPEG decode + integer shrink,
    ``xscan.serve.app._decode_and_prepare``)."""
    import hashlib

    from xscan.imageio import decode_image
    from xscan.runtime import load_model
    from xscan.serve.app import _decode_and_prepare
    from xscan.serve.engine import ServedModel

    cv2.setNumThreads(1)
    model = load_model(model_path, threads=1)
    served = ServedModel(model, model_path, 1, "now", 0.0)
    ways = {
        "full_decode_prepare": lambda b: (
            hashlib.sha256(b).hexdigest(),
            model.prepare(decode_image(b)),
        ),
        "full_decode_prepare_fast": lambda b: _decode_and_prepare(b, served, 10**9, "bench"),
        "reduced_decode_prepare_fast": lambda b: _decode_and_prepare(
            b, served, 10**9, "bench", reduce_margin=2.0
        ),
    }
    times: dict[str, list[float]] = {k: [] for k in ways}
    for _ in range(rounds):
        for k, fn in ways.items():
            t0 = time.process_time()
            for b in data:
                fn(b)
            times[k].append((time.process_time() - t0) * 1000.0 / len(data))
    cv2.setNumThreads(-1)
    return {k: round(float(np.median(v)), 2) for k, v in times.items()}


# ------------------------------------------------------------------------ server
class Server:
    def __init__(self, model: Path, tmp: Path, name: str, *args: str, threads: int) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.audit = tmp / f"audit-{name}.jsonl"
        self.log = open(tmp / f"server-{name}.log", "wb")  # noqa: SIM115 - lives with the server
        cmd = [str(XSCAN), "serve", str(model), "--port", str(self.port)]
        cmd += ["--threads", str(threads), "--audit-log", str(self.audit), *args]
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        t_end = time.monotonic() + 120
        while time.monotonic() < t_end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server {name} exited; see {self.log.name}")
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"server {name} not ready")

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
        return float("nan")

    def batch_stats(self) -> tuple[float, float]:
        text = httpx.get(self.url + "/metrics", timeout=30).text
        vals = {}
        for line in text.splitlines():
            if line.startswith("xscan_batch_size_sum") or line.startswith("xscan_batch_size_count"):
                k, v = line.split()
                vals[k] = float(v)
        return vals.get("xscan_batch_size_sum", 0.0), vals.get("xscan_batch_size_count", 0.0)

    def cpu_s(self) -> float:
        """User + system CPU seconds of the server process so far (all its threads)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def audit_records(self) -> int:
        from xscan.serve.audit import count_records

        return count_records(self.audit)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


# ------------------------------------------------------------------------ clients
async def load(url: str, data: list[bytes], clients: int, seconds: float) -> dict:
    """``clients`` concurrent loops posting scans for ``seconds``; latencies of 200s."""
    lat: list[float] = []
    codes: dict[int, int] = {}
    errors: dict[str, int] = {}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        t_end = time.perf_counter() + seconds

        async def one(k: int) -> None:
            i = k
            while time.perf_counter() < t_end:
                t0 = time.perf_counter()
                try:
                    r = await client.post(
                        url + "/v1/inspect",
                        content=data[i % len(data)],
                        params={"lane_id": f"lane{k % 8}", "scan_id": f"s{k}-{i}"},
                    )
                except httpx.TransportError as e:
                    errors[type(e).__name__] = errors.get(type(e).__name__, 0) + 1
                    continue
                codes[r.status_code] = codes.get(r.status_code, 0) + 1
                if r.status_code == 200:
                    lat.append((time.perf_counter() - t0) * 1000.0)
                elif r.status_code == 503:
                    await asyncio.sleep(float(r.headers.get("retry-after", "1")) / 10)
                i += clients

        t0 = time.perf_counter()
        await asyncio.gather(*(one(k) for k in range(clients)))
        wall = time.perf_counter() - t0
    p = np.percentile(lat, [50, 95, 99]) if lat else [float("nan")] * 3
    return {
        "clients": clients,
        "ok": len(lat),
        "rps": len(lat) / wall,
        "p50": float(p[0]),
        "p95": float(p[1]),
        "p99": float(p[2]),
        "codes": codes,
        "transport_errors": errors,
        "latencies": np.asarray(lat),
    }


def measure(server: Server, data: list[bytes], clients: int, seconds: float) -> dict:
    s0, c0 = server.batch_stats()
    cpu0 = server.cpu_s()
    res = asyncio.run(load(server.url, data, clients, seconds))
    res["server_cpu_s"] = server.cpu_s() - cpu0
    s1, c1 = server.batch_stats()
    res["batches"] = c1 - c0
    res["batched_items"] = s1 - s0
    return res


def combine(parts: list[dict]) -> dict:
    """Rounds of one (mode, clients) cell: median throughput, pooled latencies."""
    lat = np.concatenate([p.pop("latencies") for p in parts]) if parts else np.zeros(0)
    pct = np.percentile(lat, [50, 95, 99]) if len(lat) else [float("nan")] * 3
    ok = sum(p["ok"] for p in parts)
    codes: dict[int, int] = {}
    errors: dict[str, int] = {}
    for p in parts:
        for k, v in p["codes"].items():
            codes[k] = codes.get(k, 0) + v
        for k, v in p["transport_errors"].items():
            errors[k] = errors.get(k, 0) + v
    return {
        "clients": parts[0]["clients"],
        "ok": ok,
        "rps": float(np.median([p["rps"] for p in parts])),
        "rps_rounds": [round(p["rps"], 1) for p in parts],
        "p50": float(pct[0]),
        "p95": float(pct[1]),
        "p99": float(pct[2]),
        "mean_batch": sum(p["batched_items"] for p in parts)
        / max(1.0, sum(p["batches"] for p in parts)),
        "server_cpu_ms_per_req": 1000.0 * sum(p["server_cpu_s"] for p in parts) / max(1, ok),
        "codes": codes,
        "transport_errors": errors,
    }


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


# ------------------------------------------------------------------------- runs
def run_comparison(model: Path, data: list[bytes], tmp: Path, args: argparse.Namespace) -> dict:
    common = ["--queue-size", "512", "--timeout-ms", "60000"]
    common += ["--decode-margin", str(args.decode_margin)]
    servers = {
        "batched": Server(
            model,
            tmp,
            "batched",
            "--max-batch",
            "8",
            "--max-delay-ms",
            "5",
            *common,
            threads=args.threads,
        ),  # fmt: skip
        "unbatched": Server(
            model, tmp, "unbatched", "--max-batch", "1", *common, threads=args.threads
        ),  # fmt: skip
    }
    rows = []
    warm = {}
    try:
        for mode, srv in servers.items():  # warm the connections and the code paths
            warm[mode] = asyncio.run(load(srv.url, data, 16, 3.0))["ok"]
        for clients in args.clients:
            parts: dict[str, list[dict]] = {mode: [] for mode in servers}
            for r in range(args.rounds):  # alternate the order: drift hits both modes alike
                for mode in list(servers)[:: 1 if r % 2 == 0 else -1]:
                    parts[mode].append(measure(servers[mode], data, clients, args.duration))
            for mode, cell in parts.items():
                res = combine(cell)
                res["mode"] = mode
                rows.append(res)
                print(
                    f"{mode:9s} c={clients:3d} {res['rps']:7.1f} req/s {res['rps_rounds']} "
                    f"p50 {res['p50']:7.1f}  p95 {res['p95']:7.1f}  p99 {res['p99']:7.1f} ms  "
                    f"batch {res['mean_batch']:.2f}  cpu {res['server_cpu_ms_per_req']:.1f} "
                    f"ms/req  codes {res['codes']} {res['transport_errors']}",
                    flush=True,
                )
        audit = {}
        for mode, srv in servers.items():
            answered = warm[mode] + sum(r["ok"] for r in rows if r["mode"] == mode)
            audit[mode] = {"answered": answered, "audit_records": srv.audit_records()}
    finally:
        for srv in servers.values():
            srv.stop()
    return {"rows": rows, "audit": audit}


def run_soak(model: Path, data: list[bytes], tmp: Path, args: argparse.Namespace) -> dict:
    srv = Server(model, tmp, "soak", "--max-batch", "8", "--max-delay-ms", "5",
                 "--queue-size", "32", threads=args.threads)  # fmt: skip
    samples: list[tuple[float, float]] = []
    la_start = loadavg()
    t_start = time.monotonic()
    total = {"codes": {}, "transport_errors": {}, "ok": 0}
    try:
        t_end = t_start + args.soak_minutes * 60
        while time.monotonic() < t_end:
            chunk = min(5.0, max(0.5, t_end - time.monotonic()))
            res = asyncio.run(load(srv.url, data, 64, chunk))
            res.pop("latencies")
            samples.append((time.monotonic() - t_start, srv.rss_mb()))
            total["ok"] += res["ok"]
            for key in ("codes", "transport_errors"):
                for k, v in res[key].items():
                    total[key][k] = total[key].get(k, 0) + v
        la_end = loadavg()
        records = srv.audit_records()
    finally:
        srv.stop()
    after_warm = [m for t, m in samples if t >= 60.0] or [m for _, m in samples]
    growth = (after_warm[-1] - after_warm[0]) / after_warm[0]
    bad = {k: v for k, v in total["codes"].items() if k not in (200, 503)}
    out = {
        "minutes": args.soak_minutes,
        "answered": total["ok"],
        "codes": total["codes"],
        "transport_errors": total["transport_errors"],
        "audit_records": records,
        "rss_mb_first_after_1min": after_warm[0],
        "rss_mb_last": after_warm[-1],
        "rss_mb_max": max(m for _, m in samples),
        "rss_growth": growth,
        "loadavg_start": la_start,
        "loadavg_end": la_end,
        "ok": growth < 0.10 and not bad and not total["transport_errors"]
        and records == total["ok"],
    }  # fmt: skip
    print(json.dumps(out, indent=1), flush=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model")
    ap.add_argument("--clients", default="1,4,16,64")
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per measurement")
    ap.add_argument("--rounds", type=int, default=3, help="measurements per mode and count")
    ap.add_argument("--threads", type=int, default=2, help="onnxruntime threads per server")
    ap.add_argument("--soak-minutes", type=float, default=0.0)
    ap.add_argument(
        "--payload-max-side",
        type=int,
        default=None,
        help="shrink payload scans to this long side in pixels (default: 2 x the model "
        "input's shorter side; 0: send them at their own size)",
    )
    ap.add_argument(
        "--decode-margin",
        type=float,
        default=0.0,
        help="the servers' --decode-margin (default 0: full decoding, the service default)",
    )
    ap.add_argument("--skip-comparison", action="store_true")
    ap.add_argument("--out", help="write the results as JSON here")
    args = ap.parse_args()
    args.clients = [int(c) for c in args.clients.split(",")]
    with tempfile.TemporaryDirectory(prefix="xscan-bench-serve-") as d:
        tmp = Path(d)
        model, kind = find_model(args.model, tmp)
        from xscan.runtime import read_spec

        spec = read_spec(model)
        data, source = payloads(spec.input_size, max_side=args.payload_max_side)
        info = {
            "model": str(model),
            "model_kind": kind,
            "input_size": list(spec.input_size),
            "payloads": source,
            "payload_kb_mean": round(sum(map(len, data)) / len(data) / 1024, 1),
            "payload_max_side": args.payload_max_side,
            "decode_margin": args.decode_margin,
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
            "loadavg_start": loadavg(),
            "threads": args.threads,
            "decode_cpu_ms_per_payload": decode_cost(model, data),
        }
        print(json.dumps(info), flush=True)
        results = {"info": info}
        if not args.skip_comparison:
            results["comparison"] = run_comparison(model, data, tmp, args)
            results["info"]["loadavg_after_comparison"] = loadavg()
            print("audit:", results["comparison"]["audit"], flush=True)
        if args.soak_minutes > 0:
            results["soak"] = run_soak(model, data, tmp, args)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
