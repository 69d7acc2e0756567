"""A guest's serial console, read by a thread of ours into whole lines, each
with the monotonic time it arrived (\\r and ANSI escapes stripped), for both
Guest classes: the tests' (samepage_dev.guest, QEMUMachine's console socket)
and the benchmarks' (samepage_dev.bench.guest, a serial socket of its own,
whose marker times are what bench_overhead measures)."""
import codecs
import re
import socket
import threading
import time

_ANSI = re.compile(r'\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][0-9A-Za-z]')


class Console:
    """lines[i] arrived at times[i]; eof is set once QEMU closed the socket.
    Waiters wait on `cond`, which the reader notifies at every line."""

    def __init__(self, sock, name):
        self.sock = sock
        self.name = name
        self.lines = []
        self.times = []
        self.partial = ''
        self.eof = False
        self.cond = threading.Condition()
        self._stop = threading.Event()
        self.sock.settimeout(0.2)       # to see stop() between reads
        self._thread = threading.Thread(target=self._read, name=f'console-{name}', daemon=True)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)

    def _read(self):
        decoder = codecs.getincrementaldecoder('utf-8')('replace')
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                break
            if not data:
                break
            now = time.monotonic()
            text = self.partial + decoder.decode(data)
            *complete, rest = text.split('\n')
            with self.cond:
                for line in complete:
                    self.lines.append(_ANSI.sub('', line).replace('\r', ''))
                    self.times.append(now)
                self.partial = rest
                self.cond.notify_all()
        with self.cond:
            self.eof = True
            self.cond.notify_all()

    def tail(self, n=15):
        with self.cond:
            return '\n'.join(self.lines[-n:] + [_ANSI.sub('', self.partial)])

    def wait_line(self, pattern, timeout, since=0, search=False, alive=lambda: True):
        """The first console line from index `since` that matches the regex
        `pattern` as a whole (stripped; or anywhere, with search=True):
        (index, match).  AssertionError at the timeout, or once the console
        closed or alive() says QEMU is gone with no such line."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self.cond:
            i = since
            while True:
                while i < len(self.lines):
                    m = rx.search(self.lines[i]) if search else rx.fullmatch(self.lines[i].strip())
                    if m:
                        return i, m
                    i += 1
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                if self.eof or not alive():
                    raise AssertionError(f'{self.name}: QEMU exited while waiting for '
                                         f'{pattern!r}; console:\n{self.tail()}')
                self.cond.wait(min(left, 0.5))
        raise AssertionError(f'{self.name}: no console line {pattern!r} within {timeout}s; '
                             f'console:\n{self.tail()}')
