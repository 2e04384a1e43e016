"""Running the app under uvicorn, with a drain that loses no stream: on the first SIGINT or
SIGTERM the server keeps listening but admits nothing more (503 with Retry-After, /ready
503), lets running requests and streams finish for up to ALIZE_DRAIN_SECONDS, ends what
remains with a last error chunk (Platform.drain), and only then lets uvicorn shut down
(which then has nothing left to wait for) and exits 0. A second signal exits at once."""

import asyncio
import logging
from types import FrameType

import uvicorn
from fastapi import FastAPI

log = logging.getLogger(__name__)


class _DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, app: FastAPI, drain_s: float):
        super().__init__(config)
        self._app = app
        self._drain_s = drain_s
        self._draining = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        loop = getattr(self._app.state, "loop", None)
        if self._draining or loop is None:  # a second signal, or one before start-up finished
            if self._draining:
                log.warning("second signal: exiting now")
                self.force_exit = True
            self.should_exit = True
            return
        self._draining = True
        loop.call_soon_threadsafe(self._start_drain)  # a signal handler: hand the drain to the event loop

    def _start_drain(self) -> None:
        log.info("draining: no new requests; open ones may finish for up to %g s", self._drain_s)
        task = asyncio.ensure_future(self._drain())
        self._app.state.drain_task = task  # keep a reference until it is done

    async def _drain(self) -> None:
        try:
            await self._app.state.platform.drain(self._busy, self._drain_s)
        finally:
            self.should_exit = True

    def _busy(self) -> bool:
        """Whether any request is still open (a probe answered meanwhile counts for its moment)."""
        return any(not task.done() for task in self.server_state.tasks)


def run(app: FastAPI, host: str, port: int, log_level: str, drain_s: float = 30, grace_s: float = 5,
        own_log_config: bool = True) -> None:
    """Serves until SIGINT/SIGTERM, drained; returns normally then. Without its own log
    config, uvicorn's lines go through the root logger (JSON lines, api/logs.py)."""
    extra = {} if own_log_config else {"log_config": None}
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=grace_s,
                            access_log=False, **extra)  # api/request_id.py writes one richer line per request
    server = _DrainingServer(config, app, drain_s)
    server.run()
    if server.force_exit:
        raise KeyboardInterrupt  # the second signal: the caller exits at once, 130
