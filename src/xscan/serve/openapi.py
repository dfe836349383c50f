"""The service's hand-written OpenAPI 3.1 document and a self-contained ``/docs`` page.

Written by hand (the service is Starlette, not FastAPI) and kept next to the routes; a test
checks that every route of the app is described here.
"""

from __future__ import annotations

from typing import Any

from xscan import __version__

_ERROR = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "status": {"type": "integer"},
                "code": {"type": "string"},
                "message": {"type": "string"},
            },
        },
        "request_id": {"type": "string"},
    },
}

_DETECTION = {
    "type": "object",
    "properties": {
        "box": {
            "type": "array",
            "items": {"type": "number"},
            "description": "xyxy, original image pixels",
        },
        "score": {"type": "number"},
        "class_id": {"type": "integer"},
        "label": {"type": "string"},
    },
}

_INSPECTION = {
    "type": "object",
    "properties": {
        "request_id": {"type": "string"},
        "lane_id": {"type": ["string", "null"]},
        "scan_id": {"type": ["string", "null"]},
        "decision": {"type": "string", "enum": ["alarm", "clear"]},
        "alarm": {"type": "boolean"},
        "image_score": {"type": "number"},
        "threshold": {"type": "number", "description": "the operating point's threshold"},
        "operating_point": {"type": ["string", "null"]},
        "detections": {"type": "array", "items": _DETECTION},
        "tiles": {"type": "integer"},
        "image": {"type": "object", "description": "width, height, format, dtype, sha256"},
        "model": {"type": "object", "description": "name, version, task, sha256, generation"},
        "audited": {"type": "boolean", "description": "true: on disk before this response"},
        "batch": {"type": "object", "description": "size of the batch, queue depth"},
        "timing_ms": {"type": "object", "description": "read, decode, queue, inference"},
        "latency_ms": {"type": "number", "description": "server-side, arrival to response"},
    },
}

_ID_PARAM = {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._:\\-]{0,63}$"}


def _errors(*codes: int) -> dict[str, Any]:
    text = {
        400: "empty body",
        401: "missing or wrong API token",
        403: "not allowed",
        409: "a reload is already running",
        413: "body or image too large",
        415: "not an image (format sniffed from the bytes)",
        422: "undecodable image or invalid parameter",
        503: "not ready, overloaded (Retry-After) or audit log unavailable",
        504: "request deadline exceeded",
    }
    return {
        str(c): {
            "description": text[c],
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
        for c in codes
    }


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 description of every route."""
    auth = [{"bearer": []}, {"apiToken": []}]
    inspect = {
        "summary": "Inspect one scan: alarm or clear, with detections",
        "security": auth,
        "parameters": [
            {"name": "lane_id", "in": "query", "required": False, "schema": _ID_PARAM},
            {"name": "scan_id", "in": "query", "required": False, "schema": _ID_PARAM},
        ],
        "requestBody": {
            "required": True,
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["image"],
                        "properties": {
                            "image": {"type": "string", "format": "binary"},
                            "lane_id": _ID_PARAM,
                            "scan_id": _ID_PARAM,
                        },
                    }
                },
            },
        },
        "responses": {
            "200": _json({"$ref": "#/components/schemas/Inspection"}, "the decision"),
            **_errors(400, 401, 413, 415, 422, 503, 504),
        },
    }
    reload = {
        "summary": "Load, warm and atomically swap in a model (default: re-read MODEL)",
        "security": auth,
        "requestBody": {
            "required": False,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "path": {
                                "type": "string",
                                "description": "file name inside --admin-model-dir",
                            }
                        },
                    }
                }
            },
        },
        "responses": {
            "200": _json({"type": "object"}, "reloaded; previous and new model"),
            "422": _json({"type": "object"}, "new model rejected; old one still serving"),
            **_errors(401, 403, 409),
        },
    }
    plain = {"type": "object"}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "xscan lane inference service",
            "version": __version__,
            "description": "Threat detection / anomaly scoring for X-ray inspection lanes.",
        },
        "paths": {
            "/v1/inspect": {"post": inspect},
            "/v1/model": {
                "get": {
                    "summary": "The served model and its spec",
                    "security": auth,
                    "responses": {"200": _json(plain, "model and spec"), **_errors(401, 503)},
                }
            },
            "/v1/admin/reload": {"post": reload},
            "/healthz": {"get": {"summary": "Alive", "responses": {"200": _json(plain, "ok")}}},
            "/readyz": {
                "get": {
                    "summary": "Model loaded and warmed",
                    "responses": {
                        "200": _json(plain, "ready"),
                        "503": _json(plain, "not ready"),
                    },
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "security": auth,
                    "responses": {"200": {"description": "text exposition format"}},
                }
            },
            "/openapi.json": {
                "get": {"summary": "This document", "responses": {"200": _json(plain, "")}}
            },
            "/docs": {"get": {"summary": "API documentation page", "responses": {"200": {}}}},
        },
        "components": {
            "schemas": {"Error": _ERROR, "Inspection": _INSPECTION, "Detection": _DETECTION},
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiToken": {"type": "apiKey", "in": "header", "name": "X-API-Token"},
            },
        },
    }


# No external scripts or styles: lane boxes often have no internet access.
DOCS_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>xscan service API</title>
<style>body{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em}
code,pre{background:#f4f4f4;padding:0 .3em}h2{border-bottom:1px solid #ccc}</style></head>
<body><h1>xscan lane inference service</h1>
<p>Machine-readable description: <a href="openapi.json">openapi.json</a>.</p>
<pre>curl -sS --data-binary @scan.jpg "http://127.0.0.1:8080/v1/inspect?lane_id=L1&amp;scan_id=S1"
curl -sS -F image=@scan.jpg -F lane_id=L1 http://127.0.0.1:8080/v1/inspect</pre>
<div id="paths">Loading…</div>
<script>
fetch("openapi.json").then(r => r.json()).then(doc => {
  const out = [];
  for (const [path, ops] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(ops)) {
      const codes = Object.entries(op.responses || {})
        .map(([c, r]) => `<li><code>${c}</code> ${r.description || ""}</li>`).join("");
      const params = (op.parameters || []).map(p => `<code>${p.name}</code>`).join(", ");
      out.push(`<h2><code>${method.toUpperCase()} ${path}</code></h2><p>${op.summary}</p>` +
        (params ? `<p>Parameters: ${params}</p>` : "") +
        (op.security ? "<p>Needs the API token when one is configured.</p>" : "") +
        `<ul>${codes}</ul>`);
    }
  }
  document.getElementById("paths").innerHTML = out.join("");
});
</script></body></html>
"""
