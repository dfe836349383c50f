"""The service's parts in-process: settings, guards, audit log, micro-batcher, OpenAPI."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from concurrent.futures import CancelledError
from pathlib import Path

import numpy as np
import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse

from xscan.preprocess import LetterboxInfo
from xscan.serve.app import ROUTES, create_app
from xscan.serve.audit import AuditError, AuditLog, count_records
from xscan.serve.batcher import InspectItem, MicroBatcher, QueueFull
from xscan.serve.engine import ModelEngine, ModelLoadError, ServedModel
from xscan.serve.metrics import MAX_LANES, ServiceMetrics
from xscan.serve.openapi import openapi_document
from xscan.serve.security import BodyLimitMiddleware, BodyTooLarge, TokenChecker, validate_id
from xscan.serve.settings import ServeSettings, SettingsError, load_settings

# ---------------------------------------------------------------------- settings


def test_settings_flags_override_environment_override_defaults():
    env = {"XSCAN_PORT": "9000", "XSCAN_MAX_BATCH": "4", "XSCAN_PROVIDERS": "cpu"}
    s = load_settings({"port": 9100, "host": None}, environ=env)
    assert s.port == 9100 and s.max_batch == 4 and s.providers == ("cpu",)
    assert s.host == "127.0.0.1" and s.is_loopback
    assert load_settings({}, environ={}) == ServeSettings()


def test_settings_errors_name_the_variable_and_token_is_never_shown():
    with pytest.raises(SettingsError, match="XSCAN_PORT"):
        load_settings({}, environ={"XSCAN_PORT": "eighty"})
    with pytest.raises(SettingsError, match="--max-batch"):
        load_settings({"max_batch": 0}, environ={})
    with pytest.raises(SettingsError, match="LANE_TOKEN"):
        load_settings({}, environ={}, token_env="LANE_TOKEN")
    with pytest.raises(SettingsError, match="16 characters"):
        load_settings({}, environ={"XSCAN_API_TOKEN": "short"})
    secret = "s3cret-token-value-123456"
    s = load_settings({}, environ={"LANE_TOKEN": secret}, token_env="LANE_TOKEN")
    assert s.token == secret
    assert secret not in repr(s) and secret not in json.dumps(s.public_dict())
    assert s.public_dict()["auth"] is True


# ------------------------------------------------------------------------ guards


def test_token_checker_accepts_bearer_or_header_and_nothing_else():
    t = TokenChecker("a" * 20)
    assert t.check({"authorization": "Bearer " + "a" * 20})
    assert t.check({"authorization": "bearer " + "a" * 20})
    assert t.check({"x-api-token": "a" * 20})
    assert not t.check({})
    assert not t.check({"authorization": "Basic " + "a" * 20})
    assert not t.check({"x-api-token": "a" * 19})
    assert TokenChecker(None).check({})


def test_ids_are_short_safe_strings():
    assert validate_id("lane_id", "Lane-3.A:1") == "Lane-3.A:1"
    assert validate_id("lane_id", None) is None and validate_id("lane_id", "") is None
    for bad in ("../x", "a b", "x" * 65, "-lead", "a/b", "é"):
        with pytest.raises(ValueError, match="lane_id"):
            validate_id("lane_id", bad)


def test_body_limit_refuses_while_streaming():
    """The limit stops reading after ``limit`` bytes, long before the body ends."""
    pulled = 0

    async def inner(scope, receive, send):
        try:
            await Request(scope, receive).body()
            resp = JSONResponse({"ok": True})
        except BodyTooLarge:
            resp = JSONResponse({"too_large": True}, status_code=413)
        await resp(scope, receive, send)

    async def receive():
        nonlocal pulled
        pulled += 1
        return {"type": "http.request", "body": b"x" * 1000, "more_body": pulled < 1000}

    sent = []

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/", "headers": [], "query_string": b""}
    asyncio.run(BodyLimitMiddleware(inner, max_bytes=10_000)(scope, receive, send))
    assert sent[0]["status"] == 413
    assert pulled == 11  # 11 000 bytes > 10 000: stopped there, not at 1 000 000


# --------------------------------------------------------------------- audit log


def test_audit_log_appends_rotates_and_counts(tmp_path):
    path = tmp_path / "audit" / "decisions.jsonl"
    log = AuditLog(path, max_bytes=400, keep=0)
    for i in range(20):
        log.write_batch([{"i": i, "decision": "clear"}, {"i": i, "decision": "alarm"}])
    log.close()
    rotated = sorted(path.parent.glob("decisions.jsonl.*"))
    assert len(rotated) >= 2
    assert count_records(path) == 40
    lines = [json.loads(x) for f in [*rotated, path] for x in f.read_text().splitlines()]
    assert [r["i"] for r in lines] == [i for i in range(20) for _ in range(2)]
    # Reopening appends; keep=1 prunes older rotated files.
    log = AuditLog(path, max_bytes=100, keep=1)
    log.write_batch([{"i": 99, "pad": "x" * 120}])
    log.close()
    assert len(list(path.parent.glob("decisions.jsonl.*"))) == 1


# ------------------------------------------------------------------ micro-batcher


class FakeModel:
    """Records batch sizes; image score = mean of the input."""

    def __init__(self, delay: float = 0.0, fail: bool = False):
        self.batches: list[int] = []
        self.delay = delay
        self.fail = fail
        self.model_sha256 = "0" * 64
        self.providers = ["CPUExecutionProvider"]
        from toy_models import toy_detector_spec

        self.spec = toy_detector_spec()

    def infer_prepared(self, batch, infos, threshold=None):
        from xscan.runtime import Prediction

        if self.fail:
            raise RuntimeError("model exploded")
        time.sleep(self.delay)
        self.batches.append(len(batch))
        out = []
        for x in batch:
            s = float(x.mean())
            z = np.zeros((0,))
            out.append(Prediction(np.zeros((0, 4)), z, z.astype(np.int64), [], s, s >= 0.5, 0.5))
        return out


def _served(model, gen=1) -> ServedModel:
    return ServedModel(model, Path("fake.onnx"), gen, "now", 0.0)


def _item(served, value=0.3) -> InspectItem:
    x = np.full((3, 8, 8), value, np.float32)
    info = LetterboxInfo(1, 1, 0, 0, 8, 8)
    return InspectItem(served, x, info, {"request_id": "r"}, time.perf_counter())


def test_batcher_groups_up_to_max_batch_and_audits_before_answering(tmp_path):
    model = FakeModel()
    served = _served(model)
    audit = AuditLog(tmp_path / "a.jsonl")
    b = MicroBatcher(4, max_delay_s=0.2, queue_size=16, metrics=ServiceMetrics(), audit=audit)
    items = [_item(served, v) for v in (0.1, 0.2, 0.6, 0.7, 0.8)]
    for it in items:
        b.submit(it)
    b.start()
    results = [it.future.result(5) for it in items]
    b.stop()
    assert model.batches == [4, 1]
    assert [r.batch_size for r in results] == [4, 4, 4, 4, 1]
    assert [r.prediction.alarm for r in results] == [False, False, True, True, True]
    assert all(r.audited for r in results)
    records = [json.loads(x) for x in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert [r["decision"] for r in records] == ["clear", "clear", "alarm", "alarm", "alarm"]


def test_batcher_waits_for_company_only_while_requests_are_being_decoded():
    model = FakeModel()
    served = _served(model)
    b = MicroBatcher(8, max_delay_s=30.0, queue_size=16, metrics=ServiceMetrics())
    b.start()
    lone = _item(served)
    b.submit(lone)
    assert lone.future.result(10).batch_size == 1  # nobody else coming: no 30 s wait
    assert b.begin_prepare() and b.begin_prepare()
    first = _item(served)
    b.submit(first, prepared=True)
    time.sleep(0.2)
    assert not first.future.done()  # one more request is still being decoded
    second = _item(served)
    b.submit(second, prepared=True)
    assert first.future.result(10).batch_size == 2
    b.stop()
    assert model.batches == [1, 2]


def test_batcher_never_mixes_models_and_skips_cancelled_items():
    old, new = FakeModel(), FakeModel()
    s_old, s_new = _served(old, 1), _served(new, 2)
    b = MicroBatcher(8, max_delay_s=0.05, queue_size=16, metrics=ServiceMetrics())
    items = [_item(s_old), _item(s_old), _item(s_new), _item(s_old)]
    cancelled = _item(s_new)
    for it in [*items, cancelled]:
        b.submit(it)
    assert cancelled.future.cancel()
    b.start()
    results = [it.future.result(5) for it in items]
    b.stop()
    assert old.batches == [2, 1] and new.batches == [1]
    assert [r.served.generation for r in results] == [1, 1, 2, 1]
    with pytest.raises(CancelledError):
        cancelled.future.result(0)


def test_batcher_queue_is_bounded_and_failures_reach_the_requests():
    b = MicroBatcher(2, max_delay_s=0.0, queue_size=2, metrics=ServiceMetrics())
    served = _served(FakeModel(fail=True))
    first, second = _item(served), _item(served)
    b.submit(first)
    b.submit(second)
    with pytest.raises(QueueFull):
        b.submit(_item(served))
    assert not b.begin_prepare()  # admission counts what is queued too
    b.start()
    with pytest.raises(RuntimeError, match="exploded"):
        first.future.result(5)
    b.stop()


def test_batcher_fails_requests_whose_audit_commit_fails(tmp_path):
    class FullDisk(AuditLog):
        def write_batch(self, records):
            list(records)
            raise AuditError(f"{self.path}: audit write failed (No space left on device)")

    served = _served(FakeModel())
    b = MicroBatcher(4, 0.0, 8, metrics=ServiceMetrics(), audit=FullDisk(tmp_path / "a.jsonl"))
    items = [_item(served), _item(served)]
    for it in items:
        b.submit(it)
    b.start()
    for it in items:
        with pytest.raises(AuditError, match="No space left"):
            it.future.result(10)
    assert not b.full  # nothing is left counted as waiting
    b.stop()


def test_metrics_bound_the_number_of_lane_labels():
    m = ServiceMetrics()
    labels = {m.lane_label(f"lane{i}") for i in range(MAX_LANES + 50)}
    assert len(labels) == MAX_LANES + 1 and "other" in labels
    assert m.lane_label(None) == "none"


# ------------------------------------------------------------------------ engine


def test_engine_keeps_the_old_model_when_a_reload_fails(toy_detector_onnx, tmp_path):
    engine = ModelEngine(toy_detector_onnx, threads=1, warmup_batches=(1, 2))
    first = engine.load()
    assert engine.ready and first.info()["name"] == "toy-detector"
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"\x08\x01garbage")
    with pytest.raises(ModelLoadError, match="broken.onnx"):
        engine.reload(broken)
    assert engine.current is first and "broken.onnx" in engine.last_error
    second = engine.reload()
    assert second is engine.current and second.generation == 2


def test_concurrent_reloads_are_serialised(toy_detector_onnx):
    engine = ModelEngine(toy_detector_onnx, threads=1, warmup_batches=(1,))
    engine.load()
    errors: list[str] = []
    with engine._lock:  # a reload is running

        def other():
            try:
                engine.reload()
            except Exception as e:
                errors.append(type(e).__name__)

        t = threading.Thread(target=other)
        t.start()
        t.join()
    assert errors == ["ReloadInProgress"]


# ----------------------------------------------------------------------- openapi


def test_openapi_describes_every_route(toy_detector_onnx):
    app = create_app(ModelEngine(toy_detector_onnx), ServeSettings())
    paths = {r.path for r in app.routes}
    assert paths == set(ROUTES) == set(openapi_document()["paths"])
    json.dumps(openapi_document())


# ------------------------------------------------------------------- in-process app


def test_anomaly_model_is_served_through_the_same_app(toy_anomaly_onnx, tmp_path):
    import httpx
    from serve_procs import encode, scan_image

    settings = ServeSettings(audit_log=tmp_path / "audit.jsonl", max_batch=4)
    app = create_app(ModelEngine(toy_anomaly_onnx, threads=1, warmup_batches=(1,)), settings)

    async def run():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://lane") as client:
                for _ in range(200):  # the model loads in the background after start-up
                    if (await client.get("/readyz")).status_code == 200:
                        break
                    await asyncio.sleep(0.05)
                dark = await client.post(
                    "/v1/inspect?scan_id=a1", content=encode(scan_image(64, 64, dark=0.9))
                )
                light = await client.post(
                    "/v1/inspect", content=encode(scan_image(64, 64, dark=0.05))
                )
                spec = (await client.get("/v1/model")).json()["spec"]
        return dark, light, spec

    dark, light, spec = asyncio.run(run())
    assert dark.status_code == 200 and light.status_code == 200, dark.text
    assert spec["task"] == "anomaly"
    d, li = dark.json(), light.json()
    assert d["model"]["task"] == "anomaly" and d["detections"] == []
    assert d["decision"] == "alarm" and li["decision"] == "clear"
    assert d["anomaly_map_shape"] == [64, 64] and d["image_score"] > li["image_score"]
    assert count_records(tmp_path / "audit.jsonl") == 2
