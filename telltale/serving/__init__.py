"""``telltale serve``: the guardrail API over HTTP (FastAPI on uvicorn), and ``--all``.

``POST /v1/score`` takes one generation event (``event_id`` and ``timestamp`` optional) and
returns every applied signal's score and flag with a verdict; concurrent requests share model
calls through the micro-batcher. ``?record=true`` also stores the scored event with its vectors
(straight to storage, or through Kafka to the worker). ``/healthz``, ``/readyz``, ``/metrics``
(Prometheus) and ``/openapi.json`` come with it; ``--all`` adds the worker, the monitor and the
read routes (the live report, rates and detections).

Why FastAPI: the request and response models are the pydantic models the rest of telltale
already uses, the OpenAPI schema that schemathesis tests against is generated from them, and it
runs on uvicorn, whose graceful shutdown drains requests in flight on SIGTERM. Litestar would
do the same; FastAPI's wider use (and its test client, dependency injection for the API key)
tipped it.

The scoring itself knows nothing of HTTP (:mod:`streams.scoring`, shared with the worker). Here:

* :mod:`~telltale.serving.models`: request and response models (the OpenAPI schema);
* :mod:`~telltale.serving.auth`: API keys; :mod:`~telltale.serving.metrics`: Prometheus;
* :mod:`~telltale.serving.batcher`: the micro-batcher; :mod:`~telltale.serving.service`: the
  scorer, batcher and recorder behind the score route;
* :mod:`~telltale.serving.score`: ``POST /v1/score``; :mod:`~telltale.serving.reads`: the read
  routes; :mod:`~telltale.serving.app`: the app around them;
* :mod:`~telltale.serving.protocol`: the request-head deadline on uvicorn's connections;
* :mod:`~telltale.serving.server`: what ``telltale serve`` and ``serve --all`` assemble and run.
"""

from __future__ import annotations

from telltale.serving.app import create_app
from telltale.serving.server import build_server, serve
from telltale.serving.service import GuardrailService

__all__ = ["GuardrailService", "build_server", "create_app", "serve"]
