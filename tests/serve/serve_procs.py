"""Helpers for the service tests: real ``xscan serve`` processes, test images, a slow model."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import httpx
import numpy as np
import onnx
from onnx import helper, numpy_helper

REPO = Path(__file__).resolve().parents[2]
XSCAN = REPO / ".venv" / "bin" / "xscan"
TOKEN = "serve-test-token-0123456789abcdef"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ServerProc:
    """A running ``xscan serve`` process on a loopback port."""

    proc: subprocess.Popen
    url: str
    log_path: Path
    audit: Path | None = None
    token: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


def start_server(
    model: Path,
    tmp: Path,
    *args: str,
    token: str | None = None,
    audit: bool = True,
    wait_ready: bool = True,
) -> ServerProc:
    """Start ``xscan serve MODEL`` on a free port and wait until ``/readyz`` answers 200."""
    port = free_port()
    tmp.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("XSCAN_")}
    env.update({"OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"})
    if token:
        env["XSCAN_API_TOKEN"] = token
    cmd = [str(XSCAN), "serve", str(model), "--port", str(port), "--threads", "1", *args]
    audit_path = None
    if audit:
        audit_path = tmp / f"audit-{port}.jsonl"
        cmd += ["--audit-log", str(audit_path)]
    log_path = tmp / f"server-{port}.log"
    with open(log_path, "wb") as logf:
        proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, env=env, cwd=tmp)
    srv = ServerProc(proc, f"http://127.0.0.1:{port}", log_path, audit_path, token)
    if wait_ready:
        wait_until_ready(srv)
    return srv


def wait_until_ready(srv: ServerProc, timeout: float = 60.0) -> None:
    t_end = time.monotonic() + timeout
    while time.monotonic() < t_end:
        if srv.proc.poll() is not None:
            raise RuntimeError(f"server exited with {srv.proc.returncode}:\n{srv.log()}")
        try:
            r = httpx.get(srv.url + "/readyz", timeout=2.0)
            if r.status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    srv.stop(signal.SIGKILL)
    raise RuntimeError(f"server not ready within {timeout} s:\n{srv.log()}")


# ------------------------------------------------------------------------ images
def scan_image(h: int = 48, w: int = 64, seed: int = 0, dark: float = 0.2) -> np.ndarray:
    """A small RGB uint8 image; ``dark`` in [0, 1] drives the toy models' score."""
    rng = np.random.default_rng(seed)
    base = np.full((h, w, 3), 255.0 * (1.0 - dark), np.float32)
    noise = rng.normal(0.0, 8.0, (h, w, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def encode(img: np.ndarray, ext: str = ".png") -> bytes:
    ok, buf = cv2.imencode(ext, img[..., ::-1] if img.ndim == 3 else img)
    assert ok
    return buf.tobytes()


def png_bomb_header(width: int = 30000, height: int = 30000) -> bytes:
    """PNG signature and an IHDR chunk claiming ``width x height``, then garbage."""
    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + (13).to_bytes(4, "big") + b"IHDR" + ihdr + b"\0" * 4 + b"x" * 64


# -------------------------------------------------------------------- slow model
def make_slow_detector(src: Path, dst: Path, layers: int = 12, channels: int = 48) -> Path:
    """The toy detector plus a chain of 3x3 convolutions whose result enters the scores
    multiplied by zero: same outputs, real compute time (tens of ms per image)."""
    model = onnx.load(str(src))
    g = model.graph
    for node in g.node:
        if "scores" in node.output:
            node.output[list(node.output).index("scores")] = "scores_base"
    rng = np.random.default_rng(0)
    c_in = g.input[0].type.tensor_type.shape.dim[1].dim_value
    prev, inits, nodes = "images", [], []
    for i in range(layers):
        w = rng.normal(0, 0.05, (channels, c_in if i == 0 else channels, 3, 3)).astype(np.float32)
        inits.append(numpy_helper.from_array(w, f"slow_w{i}"))
        nodes.append(helper.make_node("Conv", [prev, f"slow_w{i}"], [f"slow_c{i}"], pads=[1] * 4))
        nodes.append(helper.make_node("Relu", [f"slow_c{i}"], [f"slow_r{i}"]))
        prev = f"slow_r{i}"
    inits.append(numpy_helper.from_array(np.array([0.0], np.float32), "slow_zero"))
    nodes += [
        helper.make_node("ReduceMean", [prev], ["slow_m"], axes=[1, 2, 3], keepdims=0),
        helper.make_node("Unsqueeze", ["slow_m", "ax1"], ["slow_m1"]),
        helper.make_node("Mul", ["slow_m1", "slow_zero"], ["slow_z"]),
        helper.make_node("Add", ["scores_base", "slow_z"], ["scores"]),
    ]
    g.initializer.extend(inits)
    g.node.extend(nodes)
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))
    return dst


def python() -> str:
    return sys.executable
