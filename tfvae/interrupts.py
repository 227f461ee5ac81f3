"""Ctrl-C and SIGTERM: raised when they arrive, and raised again where it is safe if that first raise was lost.

Python raises a signal handler's exception in whatever frame runs at that
moment. When that frame is a finalizer or a weakref callback (TensorFlow and
TFP run many), Python prints "Exception ignored in ..." and carries on: a
Ctrl-C would then be lost and training would run to its end. So each signal
is also noted, and `raise_pending` (called by a training callback after every
graph call) raises it again at a point where it propagates.
"""

from __future__ import annotations

import signal

__all__ = ["Terminated", "install", "raise_pending"]


class Terminated(BaseException):
    """SIGTERM, as an exception, so that `finally` blocks and atomic writes clean up."""


_pending: list = []  # signals received, oldest first


def _exception(signum: int) -> BaseException:
    return KeyboardInterrupt() if signum == signal.SIGINT else Terminated()


def _handler(signum, frame):
    _pending.append(signum)
    raise _exception(signum)


def install() -> None:
    """Handle SIGINT and SIGTERM in this process (the main thread), noting each one."""
    _pending.clear()
    signal.signal(signal.SIGINT, _handler)
    signal.signal(signal.SIGTERM, _handler)


def raise_pending() -> None:
    """Raise the first signal received, if any: its first raise was swallowed (or is propagating now)."""
    if _pending:
        raise _exception(_pending[0])
