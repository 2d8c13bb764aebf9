"""One way for tests to wait: :func:`poll_until`, on tenacity (already locked), instead of a hand
rolled loop per test file."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from tenacity import RetryError, Retrying, retry_if_result, stop_after_delay, wait_fixed

T = TypeVar("T")


def poll_until(probe: Callable[[], T], done: Callable[[T], bool] = bool, *, what: str = "the condition",
               timeout_s: float = 30.0, interval_s: float = 0.1) -> T:
    """Call ``probe`` every ``interval_s`` until ``done(result)``; return that result. After
    ``timeout_s``, fail the test with ``what`` and the last value seen."""
    try:
        for attempt in Retrying(retry=retry_if_result(lambda r: not done(r)), stop=stop_after_delay(timeout_s),
                                wait=wait_fixed(interval_s), reraise=True):
            with attempt:
                result = probe()
            attempt.retry_state.set_result(result)  # a probe that raises fails at once (not retried)
    except RetryError as exc:
        last = exc.last_attempt.result() if not exc.last_attempt.failed else exc.last_attempt.exception()
        raise AssertionError(f"timed out after {timeout_s:g}s waiting for {what} (last: {last!r})") from None
    return result


def seconds_until(probe: Callable[[], T], want: T, *, timeout_s: float) -> float:
    """How long until ``probe()`` equals ``want`` (fails the test after ``timeout_s``)."""
    t0 = time.monotonic()
    poll_until(probe, lambda got: got == want, what=f"{want!r}", timeout_s=timeout_s, interval_s=0.05)
    return time.monotonic() - t0


def wait_for(probe: Callable[[], T], timeout_s: float = 60.0, interval_s: float = 0.5) -> T:
    """Call ``probe`` every ``interval_s`` until it returns something truthy, and return that; after
    ``timeout_s`` return its last answer (falsy), for the caller's own assertion to report."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = probe()
        if got:
            return got
        time.sleep(interval_s)
    return probe()

