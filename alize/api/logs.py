"""Log set-up for `alize serve`: text lines, or one JSON object per line
(ALIZE_LOG_FORMAT=json) for log shippers; every line carries the request id of the request
it was written for (api/request_id.py), and access lines their fields as JSON keys."""

import json
import logging
from datetime import UTC, datetime

from alize.api.request_id import RequestIdFilter

TEXT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {"time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
                "level": record.levelname.lower(), "logger": record.name,
                "request_id": getattr(record, "request_id", "-"), "message": record.getMessage()}
        line |= getattr(record, "fields", None) or {}
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def configure(level: str, fmt: str) -> None:
    handler = logging.StreamHandler()
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
