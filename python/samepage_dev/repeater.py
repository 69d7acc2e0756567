"""Something done again and again in a thread of its own until stopped: the
QMP latency probe (qmp.LatencyProbe), the web poller (web.WebPoller)."""
import threading


class Repeater:
    """once() in a daemon thread, `pause` seconds apart, from start() until
    stop(), which waits up to join_timeout seconds for the thread."""

    def __init__(self, pause=0.0, name=None, join_timeout=10):
        self.pause = pause
        self.join_timeout = join_timeout
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def once(self):
        raise NotImplementedError

    def _run(self):
        while not self._stop.is_set():
            self.once()
            if self.pause:
                self._stop.wait(self.pause)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join(self.join_timeout)
        return self
