"""Triton's logging and trace settings extensions, as its clients read and write them.

Logging is offered: ``log_info`` / ``log_warning`` / ``log_error`` / ``log_verbose_level`` set
the server's log levels at run time (uvicorn's and singleshot's loggers); ``log_format``
``default`` and ``log_file`` empty (logs go to the process's stderr) are the only values taken.
Tracing is not offered: its settings read as Triton's with ``trace_level`` ``["OFF"]``, and
setting any other level is refused with 400 naming why. Unknown keys and wrong types: 400.
"""

from __future__ import annotations

import logging
import threading

from .service import ServiceError

LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "singleshot")
LOG_DEFAULTS = {"log_file": "", "log_info": True, "log_warning": True, "log_error": True,
                "log_verbose_level": 0, "log_format": "default"}
TRACE_DEFAULTS = {"trace_level": ["OFF"], "trace_rate": "1000", "trace_count": "-1",
                  "log_frequency": "0", "trace_file": "", "trace_mode": "triton"}


class Settings:
    def __init__(self) -> None:
        self.log = dict(LOG_DEFAULTS)
        self.lock = threading.Lock()

    def update_log(self, new: dict) -> dict:
        """Apply ``new`` (a subset of :data:`LOG_DEFAULTS`' keys); the settings after."""
        if not isinstance(new, dict):
            raise ServiceError(400, "log settings must be an object")
        for key, value in new.items():
            if key not in LOG_DEFAULTS:
                raise ServiceError(400, f"unknown log setting {key!r} (known: "
                                        f"{', '.join(LOG_DEFAULTS)})")
            kind = type(LOG_DEFAULTS[key])
            if kind is int:
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise ServiceError(400, f"{key} must be a non-negative integer")
            elif not isinstance(value, kind):
                raise ServiceError(400, f"{key} must be {kind.__name__}")
        if new.get("log_file", "") != "":
            raise ServiceError(400, "log_file is not offered: the server logs to its stderr")
        if new.get("log_format", "default") != "default":
            raise ServiceError(400, "log_format: only 'default' is offered")
        with self.lock:
            self.log.update(new)
            level = (logging.DEBUG if self.log["log_verbose_level"] > 0 else
                     logging.INFO if self.log["log_info"] else
                     logging.WARNING if self.log["log_warning"] else
                     logging.ERROR if self.log["log_error"] else logging.CRITICAL + 1)
            for name in LOGGERS:
                logging.getLogger(name).setLevel(level)
            return dict(self.log)

    @staticmethod
    def trace(new: dict | None = None) -> dict:
        """The trace settings (``new``: an update, refused unless it keeps tracing off)."""
        if new:
            if not isinstance(new, dict):
                raise ServiceError(400, "trace settings must be an object")
            unknown = [k for k in new if k not in TRACE_DEFAULTS]
            if unknown:
                raise ServiceError(400, f"unknown trace setting {unknown[0]!r}")
            level = new.get("trace_level", ["OFF"])
            if level not in (["OFF"], "OFF", None):
                raise ServiceError(400, "tracing is not offered by this server (trace_level "
                                        "OFF only; /metrics and the statistics extension "
                                        "time every stage)")
        return dict(TRACE_DEFAULTS)
