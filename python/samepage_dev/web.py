"""A Debian guest's web server (nginx, forwarded to 127.0.0.1 by QEMU's user
network) seen from the host: one GET, or a poller in a thread."""
import http.client
import socket
import time

from samepage_dev.repeater import Repeater


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on now (for hostfwd)."""
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def http_get(port, path='/', timeout=5):
    """GET http://127.0.0.1:port/path; returns (HTTP status, seconds)."""
    t0 = time.monotonic()
    conn = http.client.HTTPConnection('127.0.0.1', port, timeout=timeout)
    try:
        conn.request('GET', path, headers={'Connection': 'close'})
        r = conn.getresponse()
        r.read()
        return r.status, time.monotonic() - t0
    finally:
        conn.close()


class WebPoller(Repeater):
    """Polls a guest's web server from the host, one request after the
    other (each with its own connection and a 5 s timeout), in a thread,
    recording (start, seconds, error or None) of every request, until
    stop().  A request fails when it raises or answers other than 200."""

    def __init__(self, port, path='/', timeout=5, pause=0.0):
        super().__init__(pause, name=f'poll-{port}', join_timeout=timeout + 5)
        self.port, self.path, self.timeout = port, path, timeout
        self.samples = []

    def once(self):
        t = time.monotonic()
        try:
            status, took = http_get(self.port, self.path, self.timeout)
            err = None if status == 200 else f'HTTP {status}'
        except (OSError, http.client.HTTPException) as e:
            took, err = time.monotonic() - t, f'{type(e).__name__}: {e}'
        self.samples.append((t, took, err))

    def window(self, t0=None, t1=None):
        """Requests that started in [t0, t1)."""
        return [s for s in self.samples
                if (t0 is None or s[0] >= t0) and (t1 is None or s[0] < t1)]

    @staticmethod
    def summary(samples):
        """{'requests', 'failed', 'p50_ms', 'p99_ms', 'max_ms', 'errors'} of samples."""
        lat = sorted(s[1] * 1000 for s in samples)

        def pct(p):
            return round(lat[min(len(lat) - 1, int(len(lat) * p))], 1) if lat else None
        return {'requests': len(samples), 'failed': sum(1 for s in samples if s[2]),
                'p50_ms': pct(0.5), 'p99_ms': pct(0.99),
                'max_ms': round(lat[-1], 1) if lat else None,
                'errors': sorted({s[2] for s in samples if s[2]})[:3]}

    @staticmethod
    def describe(st):
        if not st['requests']:
            return 'no requests'
        return (f'{st["requests"]} requests, {st["failed"]} failed, latency p50 {st["p50_ms"]} '
                f'ms, p99 {st["p99_ms"]} ms, max {st["max_ms"]} ms'
                + (f' ({"; ".join(st["errors"])})' if st['errors'] else ''))
