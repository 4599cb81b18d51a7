"""The one place that turns SIGTERM/SIGINT into a request to stop at the next safe point.

The trainer stops after the current step with a checkpoint; lab's worker records the run's
status from that; the classifier server shuts down. Each passes its own ``on_stop``.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def stop_signals(on_stop: Callable[[str], None], *, sigint: bool = True,
                 pending: Callable[[], bool] | None = None) -> Iterator[None]:
    """Route SIGTERM (and SIGINT unless ``sigint=False``) to ``on_stop(name)``, e.g. "SIGTERM".

    A SIGINT while a stop is pending raises KeyboardInterrupt at once (a second Ctrl-C aborts).
    ``pending()`` says whether one is; by default, whether a signal came already. Handlers can
    only be set from the main thread: elsewhere this does nothing. The previous handlers come
    back on exit.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    seen: list[str] = []

    def handler(signum: int, frame: object) -> None:
        name = signal.Signals(signum).name
        if name == "SIGINT" and (pending() if pending is not None else bool(seen)):
            raise KeyboardInterrupt
        seen.append(name)
        on_stop(name)

    sigs = [signal.SIGTERM] + ([signal.SIGINT] if sigint else [])
    previous = {sig: signal.signal(sig, handler) for sig in sigs}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old if old is not None else signal.SIG_DFL)
