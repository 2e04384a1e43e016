"""Running the app under uvicorn, with a shutdown that loses no stream: on the first
SIGINT or SIGTERM the platform drains at once (Platform.drain: batch lines cut unwritten,
every open request ended with what it has), so uvicorn's wait for open connections ends
in a moment instead of running out its timeout and cancelling them mid-answer."""

import asyncio
import logging
from types import FrameType

import uvicorn
from fastapi import FastAPI

log = logging.getLogger(__name__)


class _DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, app: FastAPI):
        super().__init__(config)
        self._app = app

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if not self.should_exit:
            loop = getattr(self._app.state, "loop", None)
            if loop is not None:  # a signal handler: hand the drain to the event loop
                loop.call_soon_threadsafe(self._start_drain)
        super().handle_exit(sig, frame)

    def _start_drain(self) -> None:
        log.info("shutting down: ending open requests")
        task = asyncio.ensure_future(self._app.state.platform.drain())
        self._app.state.drain_task = task  # keep a reference until it is done


def run(app: FastAPI, host: str, port: int, log_level: str, grace_s: float = 5, own_log_config: bool = True) -> None:
    """Serves until SIGINT/SIGTERM. KeyboardInterrupt (uvicorn raises the signal again once
    it has shut down) is left to the caller. Without its own log config, uvicorn's lines go
    through the root logger (JSON lines, api/logs.py)."""
    extra = {} if own_log_config else {"log_config": None}
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=grace_s,
                            access_log=False, **extra)  # api/request_id.py writes one richer line per request
    _DrainingServer(config, app).run()
