"""The service as a real ``xscan serve`` process on a loopback port."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import cv2
import httpx
import numpy as np
import pytest
from serve_procs import TOKEN, XSCAN, encode, png_bomb_header, scan_image, start_server

from xscan.serve.audit import count_records


def _inspect(srv, data: bytes, params=None, headers=None, timeout=30.0) -> httpx.Response:
    hdrs = dict(srv.headers if headers is None else headers)
    return httpx.post(
        srv.url + "/v1/inspect", content=data, params=params, headers=hdrs, timeout=timeout
    )


def _assert_json_error(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["error"]["status"] == status
    assert body["error"]["code"] == code, body
    assert body["error"]["message"]


def test_inspect_returns_decision_detections_and_model(main_server):
    img = scan_image(48, 64, dark=0.8)
    r = _inspect(main_server, encode(img), params={"lane_id": "L1", "scan_id": "S-0001"})
    assert r.status_code == 200, r.text
    body = r.json()
    # Toy detector: score = mean darkness of the letterboxed input, threshold 0.5 (far5).
    assert body["decision"] == "alarm" and body["alarm"] is True
    assert body["threshold"] == 0.5 and body["operating_point"] == "far5"
    assert body["lane_id"] == "L1" and body["scan_id"] == "S-0001"
    assert body["model"]["name"] == "toy-detector" and len(body["model"]["sha256"]) == 64
    assert body["image"]["width"] == 64 and body["image"]["height"] == 48
    assert body["image"]["format"] == "png"
    dets = body["detections"]
    assert [d["label"] for d in dets] == ["knife", "firearm"]
    assert all(0 <= v <= 64 for d in dets for v in d["box"])
    assert body["latency_ms"] > 0 and body["batch"]["size"] >= 1
    assert body["audited"] is True
    # The same scan as multipart, lighter: clear.
    light = encode(scan_image(48, 64, dark=0.1), ".jpg")
    r = httpx.post(
        main_server.url + "/v1/inspect",
        files={"image": ("x.bin", light, "text/plain")},  # the declared type is ignored
        data={"lane_id": "L2"},
        headers=main_server.headers,
    )
    assert r.status_code == 200, r.text
    assert r.json()["decision"] == "clear" and r.json()["lane_id"] == "L2"
    assert r.json()["image"]["format"] == "jpeg"


def test_bad_inputs_get_json_4xx_and_server_keeps_serving(main_server):
    good = encode(scan_image())
    jpeg = encode(scan_image(), ".jpg")
    cases = [
        (b"", 400, "empty_body"),
        (b"hello, this is plain text and not a scan", 415, "unsupported_media"),
        (jpeg[: len(jpeg) // 2], 422, "undecodable_image"),
        (png_bomb_header(30000, 30000), 413, "image_too_large"),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 10, 422, "undecodable_image"),
    ]
    for data, status, code in cases:
        _assert_json_error(_inspect(main_server, data), status, code)
    _assert_json_error(
        _inspect(main_server, good, params={"lane_id": "../../etc/passwd"}),
        422,
        "invalid_parameter",
    )
    r = httpx.post(
        main_server.url + "/v1/inspect",
        files={"other": ("a.png", good)},
        headers=main_server.headers,
    )
    _assert_json_error(r, 422, "missing_image")
    # Over the 1 MB body limit: refused from the declared length ...
    big = np.random.default_rng(0).integers(0, 255, (800, 800, 3), np.uint8)
    _assert_json_error(_inspect(main_server, encode(big)), 413, "body_too_large")

    # ... and while streaming a chunked body that declares no length: refused long before
    # the client has sent it all (the body is never read whole).
    sent = 0

    def chunks():
        nonlocal sent
        for _ in range(400):  # 26 MB
            sent += 1
            yield b"\0" * 65536

    try:
        r = httpx.post(
            main_server.url + "/v1/inspect", content=chunks(), headers=main_server.headers
        )
        _assert_json_error(r, 413, "body_too_large")
    except httpx.TransportError:
        pass  # the server closed the connection while the client was still sending
    assert sent < 400
    assert main_server.alive()
    r = _inspect(main_server, good)
    assert r.status_code == 200, r.text


def test_16bit_tiff_and_grayscale_are_accepted(main_server):
    rng = np.random.default_rng(1)
    img16 = (rng.random((40, 56)) * 65535).astype(np.uint16)
    ok, buf = cv2.imencode(".tiff", img16)
    assert ok and buf.tobytes()[:2] in (b"II", b"MM")
    r = _inspect(main_server, buf.tobytes())
    assert r.status_code == 200, r.text
    image = r.json()["image"]
    assert (image["format"], image["dtype"], image["width"]) == ("tiff", "uint16", 56)
    gray = encode(scan_image()[..., 0])
    assert _inspect(main_server, gray).status_code == 200


def test_token_required_on_protected_routes(main_server):
    data = encode(scan_image())
    _assert_json_error(_inspect(main_server, data, headers={}), 401, "unauthorized")
    bad = {"Authorization": "Bearer " + "x" * len(TOKEN)}
    _assert_json_error(_inspect(main_server, data, headers=bad), 401, "unauthorized")
    _assert_json_error(
        _inspect(main_server, data, headers={"X-API-Token": TOKEN[:-1]}), 401, "unauthorized"
    )
    assert _inspect(main_server, data, headers={"X-API-Token": TOKEN}).status_code == 200
    for path in ("/v1/model", "/metrics"):
        assert httpx.get(main_server.url + path).status_code == 401
    r = httpx.post(main_server.url + "/v1/admin/reload")
    _assert_json_error(r, 401, "unauthorized")
    # Liveness, readiness and the API description stay open for orchestrators.
    for path in ("/healthz", "/readyz", "/openapi.json", "/docs"):
        assert httpx.get(main_server.url + path).status_code == 200, path
    model = httpx.get(main_server.url + "/v1/model", headers=main_server.headers).json()
    assert model["spec"]["class_names"] == ["knife", "firearm"]
    assert model["model"]["operating_point"] == "far5"


def test_metrics_show_requests_batches_and_lanes(main_server):
    data = encode(scan_image(dark=0.9))
    for _ in range(3):
        assert _inspect(main_server, data, params={"lane_id": "lane-7"}).status_code == 200
    _inspect(main_server, b"")
    r = httpx.get(main_server.url + "/metrics", headers=main_server.headers)
    assert r.status_code == 200
    values = _metric_values(r.text)
    assert values['xscan_requests_total{route="/v1/inspect",status="200"}'] >= 3
    assert values['xscan_requests_total{route="/v1/inspect",status="400"}'] >= 1
    assert values['xscan_decisions_total{decision="alarm",lane="lane-7"}'] == 3
    assert values["xscan_batch_size_count"] >= 3
    assert values["xscan_audit_records_total"] >= 3
    assert values["xscan_ready"] == 1
    assert "xscan_queue_depth" in values
    assert 'xscan_request_latency_seconds_bucket{le="0.1",route="/v1/inspect"}' in values


def test_overload_gives_503_with_retry_after_not_a_hang(slow_detector_onnx, tmp_path):
    srv = start_server(
        slow_detector_onnx,
        tmp_path,
        "--queue-size",
        "1",
        "--max-batch",
        "1",
        "--max-delay-ms",
        "0",
    )
    try:
        data = encode(scan_image())
        barrier = threading.Barrier(16)

        def one(_):
            barrier.wait()
            return _inspect(srv, data, timeout=60)

        with ThreadPoolExecutor(16) as pool:
            responses = list(pool.map(one, range(16)))
        codes = sorted(r.status_code for r in responses)
        assert set(codes) <= {200, 503}, codes
        assert codes.count(503) >= 1 and codes.count(200) >= 1, codes
        for r in responses:
            if r.status_code == 503:
                assert r.headers["retry-after"] == "1"
                assert r.json()["error"]["code"] == "overloaded"
        assert _inspect(srv, data).status_code == 200  # and it recovers
        assert count_records(srv.audit) == codes.count(200) + 1
    finally:
        srv.stop()


def test_deadline_gives_504(slow_detector_onnx, tmp_path):
    srv = start_server(slow_detector_onnx, tmp_path, "--timeout-ms", "1", "--max-batch", "1")
    try:
        data = encode(scan_image())
        with ThreadPoolExecutor(4) as pool:
            responses = list(pool.map(lambda _: _inspect(srv, data), range(4)))
        for r in responses:
            _assert_json_error(r, 504, "deadline_exceeded")
        assert srv.alive()
    finally:
        srv.stop()


def test_sigkill_after_n_acknowledged_keeps_n_audit_records(toy_detector_onnx, tmp_path):
    srv = start_server(toy_detector_onnx, tmp_path, "--max-batch", "4")
    acked = []
    try:
        data = [encode(scan_image(seed=i)) for i in range(4)]

        def client(k):
            ids = []
            for i in range(6):
                r = _inspect(srv, data[(k + i) % 4], params={"scan_id": f"c{k}-{i}"})
                assert r.status_code == 200, r.text
                ids.append(r.json()["request_id"])
            return ids

        with ThreadPoolExecutor(4) as pool:
            for ids in pool.map(client, range(4)):
                acked += ids
    finally:
        srv.proc.send_signal(signal.SIGKILL)
        srv.proc.wait(10)
    assert srv.proc.returncode == -signal.SIGKILL
    lines = srv.audit.read_text().splitlines()
    records = [json.loads(x) for x in lines]
    assert len(records) == len(acked) == 24
    assert {r["request_id"] for r in records} == set(acked)
    rec = records[0]
    for key in ("time", "input_sha256", "model_sha256", "threshold", "decision", "latency_ms"):
        assert rec[key] is not None, key
    assert rec["operating_point"] == "far5" and rec["decision"] in ("alarm", "clear")


@pytest.mark.slow
def test_reload_under_load_fails_no_request(toy_detector_onnx, tmp_path):
    from toy_models import make_toy_detector, toy_detector_spec

    models = tmp_path / "models"
    models.mkdir()
    a = models / "a.onnx"
    a.write_bytes(toy_detector_onnx.read_bytes())
    # A different input size: a request prepared for one model must not run on the other.
    spec_b = toy_detector_spec(input_size=(96, 96)).replace(version="2")
    make_toy_detector(models / "b.onnx", spec_b)
    (models / "broken.onnx").write_bytes(b"not an onnx file at all")
    srv = start_server(a, tmp_path, "--admin-model-dir", str(models), "--max-batch", "4")
    stop = threading.Event()
    data = encode(scan_image(40, 40))

    def client(_):
        out = []
        while not stop.is_set():
            r = _inspect(srv, data)
            out.append((r.status_code, r.json().get("model", {}).get("version")))
        return out

    try:
        with ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(client, k) for k in range(4)]
            reloads = []
            for name in ("b.onnx", "broken.onnx", "a.onnx", "b.onnx"):
                time.sleep(0.3)
                r = httpx.post(srv.url + "/v1/admin/reload", json={"path": name}, timeout=60)
                reloads.append(r)
            time.sleep(0.3)
            os.kill(srv.proc.pid, signal.SIGHUP)  # re-reads b.onnx from disk
            time.sleep(1.0)
            stop.set()
            results = [x for f in futures for x in f.result()]
        assert [r.status_code for r in reloads] == [200, 422, 200, 200]
        assert reloads[0].json()["model"]["version"] == "2"
        assert "broken.onnx" in reloads[1].json()["error"]
        assert reloads[1].json()["model"]["version"] == "2"  # the old one keeps serving
        codes = [c for c, _ in results]
        assert codes and set(codes) == {200}, sorted(set(codes))
        assert {v for _, v in results} == {"1", "2"}
        info = httpx.get(srv.url + "/v1/model").json()["model"]
        assert info["version"] == "2" and info["generation"] == 5  # start, 3 reloads, SIGHUP
        for bad in ({"path": "../a.onnx"}, {"path": "/etc/passwd"}):
            r = httpx.post(srv.url + "/v1/admin/reload", json=bad)
            assert r.status_code in (403, 422), r.text
    finally:
        stop.set()
        srv.stop()


def test_reload_with_a_path_is_refused_without_admin_dir(main_server):
    r = httpx.post(
        main_server.url + "/v1/admin/reload",
        json={"path": "/tmp/evil.onnx"},
        headers=main_server.headers,
    )
    _assert_json_error(r, 403, "paths_disabled")
    r = httpx.post(main_server.url + "/v1/admin/reload", headers=main_server.headers, timeout=60)
    assert r.status_code == 200 and r.json()["reloaded"] is True


def _metric_values(text: str) -> dict[str, float]:
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


@pytest.mark.slow
def test_sigterm_drains_in_flight_requests(toy_detector_onnx, tmp_path):
    from serve_procs import make_slow_detector

    slower = make_slow_detector(toy_detector_onnx, tmp_path / "slower.onnx", layers=60)
    srv = start_server(slower, tmp_path, "--max-batch", "1")
    data = encode(scan_image())
    with ThreadPoolExecutor(6) as pool:
        futures = [pool.submit(_inspect, srv, data) for _ in range(6)]
        deadline, pending = time.monotonic() + 20, None
        while time.monotonic() < deadline:  # until all six have reached the server
            v = _metric_values(httpx.get(srv.url + "/metrics", timeout=10).text)
            inflight = v["xscan_inflight_requests"] - 1  # minus this /metrics request
            done = v.get('xscan_requests_total{route="/v1/inspect",status="200"}', 0.0)
            if inflight + done >= 6:
                pending = inflight
                break
        srv.proc.send_signal(signal.SIGTERM)
        codes = [f.result().status_code for f in futures]
    assert pending is not None and pending >= 1, "no request was in flight at SIGTERM"
    assert codes == [200] * 6
    srv.proc.wait(20)
    assert "drained and stopped" in srv.log()
    assert count_records(srv.audit) == 6


def test_unloadable_model_or_busy_port_exit_with_an_error(tmp_path):
    missing = subprocess.run(
        [str(XSCAN), "serve", str(tmp_path / "none.onnx")], capture_output=True, text=True
    )
    assert missing.returncode == 2 and "none.onnx: model file not found" in missing.stderr
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"\x08\x07 this is not a model")
    srv = start_server(broken, tmp_path, wait_ready=False)
    assert srv.proc.wait(60) == 2
    assert "broken.onnx" in srv.log() and "could not start" in srv.log()


def test_a_model_with_a_fixed_batch_of_one_is_served_one_by_one(toy_detector_onnx, tmp_path):
    import onnx

    model = onnx.load(str(toy_detector_onnx))
    for value in [*model.graph.input, *model.graph.output]:
        value.type.tensor_type.shape.dim[0].dim_value = 1  # a static-batch export
    fixed = tmp_path / "fixed_batch.onnx"
    onnx.save(model, str(fixed))
    srv = start_server(fixed, tmp_path, "--max-batch", "8")
    try:
        data = encode(scan_image())
        with ThreadPoolExecutor(6) as pool:
            responses = list(pool.map(lambda _: _inspect(srv, data), range(6)))
        assert [r.status_code for r in responses] == [200] * 6
        assert {r.json()["batch"]["size"] for r in responses} == {1}
    finally:
        srv.stop()
