"""Waiting for a condition, by polling."""
import time

from samepage_dev.cli import host_value


def wait_for(predicate, timeout, interval=0.2, what='condition'):
    """Poll predicate() until it returns a true value (returned); fail after
    timeout seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f'timed out after {timeout}s waiting for {what} (last: {last!r})')


def wait_full_scans(n, timeout=120):
    """Wait until ksmd has finished n more full scans."""
    start = host_value('full_scans')
    wait_for(lambda: host_value('full_scans') >= start + n, timeout,
             what=f'{n} full KSM scans from {start}')
