"""Hearing a few of torch's loggers for the length of a check, and putting them back."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Iterator


class _Relay(logging.Handler):
    def __init__(self, level: int, hear: Callable[[logging.LogRecord], None]) -> None:
        super().__init__(level)
        self._hear = hear

    def emit(self, record: logging.LogRecord) -> None:
        self._hear(record)


@contextlib.contextmanager
def listening(
    loggers: Iterable[logging.Logger],
    level: int,
    hear: Callable[[logging.LogRecord], None],
    *,
    pin_level: bool = False,
) -> Iterator[None]:
    """Pass each record of ``loggers`` at ``level`` or above to ``hear``.

    A logger the user left below ``level`` is raised to it and stops propagating: its
    records are heard, not shown. One the user enabled keeps showing them as before;
    ``pin_level`` sets ``level`` on it as well. Every logger's level, propagation and
    handlers are put back on exit."""
    relay = _Relay(level, hear)
    saved = []
    for logger in loggers:
        saved.append((logger, logger.level, logger.propagate))
        if not logger.isEnabledFor(level):
            logger.setLevel(level)
            logger.propagate = False
        elif pin_level:
            logger.setLevel(level)
        logger.addHandler(relay)
    try:
        yield
    finally:
        for logger, previous, propagate in saved:
            logger.removeHandler(relay)
            logger.setLevel(previous)
            logger.propagate = propagate
