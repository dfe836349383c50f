"""The lane inference service: ``xscan serve`` (Starlette on uvicorn, torch-free).

``create_app(engine, settings)`` in :mod:`xscan.serve.app`; the micro-batcher, model engine,
audit log, metrics and request guards live in their own modules. Nothing here imports torch.
"""
