"""A minimal synchronous QMP client over a unix socket, for what QEMU's own
qemu.qmp (through qemu.machine.QEMUMachine, which the guest tests use) does
not do: measure round trips with nothing in between (the benchmarks: one
sendall, then reading lines until the reply; no event loop), send several
requests before reading any answer (pipelined, or on several monitors at
once: tests/qemu), and run in any thread (LatencyProbe).  Events that arrive
meanwhile are kept in .events.

Also query_ksm_stats_fresh(), for either client.
"""
import json
import socket
import time

from samepage_dev.repeater import Repeater


class QMPError(Exception):
    pass


class QMP:
    def __init__(self, path, timeout=30.0):
        self.path = path
        self.sock = None
        self.buf = b''
        self.events = []
        self.timeout = timeout

    def connect(self, wait=30.0):
        deadline = time.monotonic() + wait
        while True:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(self.path)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                s.close()
                if time.monotonic() > deadline:
                    raise QMPError(f'cannot connect to QMP at {self.path}')
                time.sleep(0.05)
        s.settimeout(self.timeout)
        self.sock = s
        greeting = self._read_msg()
        if 'QMP' not in greeting:
            raise QMPError(f'not a QMP greeting: {greeting}')
        self.cmd('qmp_capabilities')
        return self

    def close(self):
        if self.sock:
            self.sock.close()
            self.sock = None

    def _read_msg(self):
        while b'\n' not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise QMPError('QMP connection closed')
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b'\n')
        return json.loads(line)

    def send(self, *msgs):
        """Send messages ({'execute': ...}) in one write, answers unread."""
        self.sock.sendall(b''.join(json.dumps(m).encode() + b'\n' for m in msgs))

    def read(self, timeout=None):
        """The next message that is not an event (kept in .events)."""
        if timeout is not None:
            self.sock.settimeout(timeout)
        try:
            while True:
                r = self._read_msg()
                if 'event' not in r:
                    return r
                self.events.append(r)
        finally:
            if timeout is not None:
                self.sock.settimeout(self.timeout)

    def raw(self, execute, **args):
        """Send a command; return the whole reply ({'return': ...} or {'error': ...})."""
        msg = {'execute': execute}
        if args:
            msg['arguments'] = args
        self.send(msg)
        return self.read()

    def cmd(self, execute, **args):
        r = self.raw(execute, **args)
        if 'error' in r:
            raise QMPError(f'{execute}: {r["error"].get("desc")}')
        return r['return']

    def timed(self, execute, **args):
        """(seconds, reply) of one round trip."""
        t = time.perf_counter()
        r = self.raw(execute, **args)
        return time.perf_counter() - t, r

    def wait_event(self, name, match=None, timeout=600.0):
        """The first event `name` (for which match(event) is true), waiting up
        to timeout seconds; events already received count."""
        deadline = time.monotonic() + timeout
        while True:
            for i, e in enumerate(self.events):
                if e.get('event') == name and (match is None or match(e)):
                    del self.events[:i + 1]
                    return e
            self.events.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                raise QMPError(f'no {name} event within {timeout:.0f} s')
            self.sock.settimeout(left)
            try:
                r = self._read_msg()
            finally:
                self.sock.settimeout(self.timeout)
            if 'event' in r:
                self.events.append(r)


class LatencyProbe(Repeater):
    """Round trips of one command on its own QMP connection, in a thread:
    start(), stop() -> list of seconds."""

    def __init__(self, qmp, command='query-status', pause=0.005):
        super().__init__(pause)
        self.qmp = qmp
        self.command = command
        self.rtts = []

    def once(self):
        t, r = self.qmp.timed(self.command)
        if 'error' in r:
            raise QMPError(f'{self.command}: {r["error"]}')
        self.rtts.append(t)

    def stop(self):
        super().stop()
        return self.rtts


def query_ksm_stats_fresh(query, timeout=120):
    """query-ksm-stats with exact counts from a walk that started after this
    call.  Walks run in QEMU's worker thread; an exact answer carries the
    latest finished walk's counts and their age, and starts a walk when they
    are older than max-age.  query(**args) returns the answer's "return".
    No walk is running when it returns: a poll that came a little late may
    have started one more, which a caller counting walks must not meet."""
    t0 = time.monotonic()
    while True:
        elapsed_ms = int((time.monotonic() - t0) * 1000)
        r = query(exact=True, **{'max-age': elapsed_ms})
        age = r['count'].get('age')
        if age is not None and age <= elapsed_ms and not r['count'].get('counting'):
            return r
        if elapsed_ms > timeout * 1000:
            raise AssertionError(f'no walk of query-ksm-stats finished in {timeout} s: {r["count"]}')
        time.sleep(0.005)
