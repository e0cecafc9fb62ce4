"""The guardrail service behind ``POST /v1/score``: scorer, micro-batcher, recorder, metrics.

It knows nothing of HTTP (the routes are :mod:`telltale.serving.score`); it owns the scoring
thread the model runs on, batch by batch, and the state the endpoints report.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import TYPE_CHECKING

from signals import ImagePolicy
from streams import GenerationEvent, Recorder, Rejected, Scored, Scorer, ScoreRequest
from telltale import wiring
from telltale.serving.batcher import MicroBatcher
from telltale.serving.metrics import ServeMetrics
from telltale.settings import ImagesSettings

if TYPE_CHECKING:
    from signals import Embedder, EmbeddingCache, FieldEmbedders, SignalBank
    from telltale.settings import ServeSettings

__all__ = ["MAINTENANCE_INTERVAL_S", "GuardrailService"]

log = logging.getLogger(__name__)

MAINTENANCE_INTERVAL_S = 10.0
"""How often the API alone (``telltale serve`` without ``--all``) retrains stale signals, as the
worker does between its batches (``TELLTALE_WORKER_MAINTENANCE_INTERVAL_S`` in ``serve``)."""


class GuardrailService:
    """Scorer + micro-batcher + optional recorder, and the state the endpoints report.

    ``recorder`` is called on the scoring thread with the batch's ``record=true`` events; if it
    raises, those responses say ``recorded: false`` with the reason (the verdict still stands).
    ``maintenance`` (retraining signals of another embedder,
    :meth:`~signals.live.LiveSignals.retrain_stale`) runs on the scoring thread at start and
    every ``maintenance_interval_s``: between batches, never inside one, as in the worker.
    """

    def __init__(
        self,
        embedder: Embedder | FieldEmbedders,
        bank: Callable[[], SignalBank],
        settings: ServeSettings,
        *,
        recorder: Recorder | None = None,
        cache: EmbeddingCache | None = None,
        image_policy: ImagePolicy | None = None,
        maintenance: Callable[[], object] | None = None,
        maintenance_interval_s: float = MAINTENANCE_INTERVAL_S,
        metrics: ServeMetrics | None = None,
    ) -> None:
        self.settings = settings
        self._maintenance = maintenance
        self._maintenance_interval_s = maintenance_interval_s
        self._maintainer: asyncio.Task[None] | None = None
        if image_policy is None:  # the API's policy under the TELLTALE_IMAGES_* settings
            image_policy = wiring.image_policy(ImagesSettings(), api=True)
        self.scorer = Scorer(embedder, bank, image_policy, cache)
        self.metrics = metrics or ServeMetrics()
        self._recorder = recorder
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="telltale-score")
        self.batcher: MicroBatcher[ScoreRequest, Scored | Rejected] = MicroBatcher(
            self._run, self._executor, max_batch=settings.batch_max_size,
            max_wait_s=settings.batch_max_wait_ms / 1000, on_batch=self.metrics.observe_batch,
        )  # fmt: skip
        self.ready = False

    def _run(self, requests: list[ScoreRequest]) -> list[Scored | Rejected]:
        saved = self.scorer.cache_counts().saved
        results = self.scorer.score(requests)
        self.metrics.cache_hits.inc(self.scorer.cache_counts().saved - saved)
        wanted = {
            i: result for i, (request, result) in enumerate(zip(requests, results, strict=True))
            if request.record and isinstance(result, Scored)
        }  # fmt: skip
        if not wanted:
            return results
        error = "recording is not configured"
        if self._recorder is not None:
            try:
                self._recorder(list(wanted.values()))
                error = ""
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
        if error:
            log.error("recording %d scored events failed: %s", len(wanted), error)
            self.metrics.record_failures.inc(len(wanted))
        for i, scored in wanted.items():
            results[i] = replace(scored, recorded=not error, record_error=error)
        return results

    async def start(self) -> None:
        """Load the model's signals off the loop, then take requests."""
        bank = await asyncio.get_running_loop().run_in_executor(self._executor, self.scorer.signals)
        self.batcher.start()
        if self._maintenance is not None:
            self._maintainer = asyncio.create_task(self._maintain(self._maintenance))
        self.ready = True
        log.info("guardrail ready: %d signals on %s", len(bank), self.scorer.embedder_id)

    async def _maintain(self, maintenance: Callable[[], object]) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                await loop.run_in_executor(self._executor, maintenance)
            except Exception as exc:  # storage trouble: the next round tries again
                log.warning("signal maintenance failed, tried again in %.0f s: %s",
                            self._maintenance_interval_s, exc)  # fmt: skip
            await asyncio.sleep(self._maintenance_interval_s)

    async def stop(self) -> None:
        """Finish every queued request, then release the scoring thread."""
        self.ready = False
        if self._maintainer is not None:
            self._maintainer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._maintainer
        await self.batcher.stop()
        self._executor.shutdown(wait=True)
        stats = self.batcher.stats
        log.info("guardrail stopped after %d requests in %d batches", stats.items, stats.batches)

    @property
    def signal_count(self) -> int:
        return self.scorer.signal_count

    async def score(self, event: GenerationEvent, record: bool) -> Scored | Rejected:
        result = await self.batcher.submit(ScoreRequest(event, record))
        if isinstance(result, Scored):
            self.metrics.observe(result)
        return result
