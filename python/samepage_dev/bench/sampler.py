"""build/bench/ksm-sample in the background: one JSON line per interval
(KSM counters and knobs, ksmd CPU seconds, exact pages saved inside the
given guests), collected by a thread."""
import json
import subprocess
import threading

from samepage_dev.bench.common import BenchError, ENV, spawn, stop


class Sampler:
    def __init__(self, targets, interval_ms=250):
        """targets: list of (pid, start, end); start = end = 0 for the whole process."""
        args = [ENV.ksm_sample, '--interval-ms', str(interval_ms)]
        for pid, start, end in targets:
            args.append(f'{pid}:{start:x}-{end:x}' if end else str(pid))
        self.proc = spawn(args, 'ksm-sample', stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)
        self.samples = []
        self.lock = threading.Lock()
        self.cv = threading.Condition(self.lock)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        for line in self.proc.stdout:
            try:
                s = json.loads(line)
            except ValueError:
                continue
            with self.cv:
                self.samples.append(s)
                self.cv.notify_all()

    def since(self, t0):
        with self.lock:
            return [s for s in self.samples if s['t'] >= t0]

    def last(self):
        with self.lock:
            return self.samples[-1] if self.samples else None

    def wait_next(self, timeout=5.0):
        with self.cv:
            n = len(self.samples)
            self.cv.wait_for(lambda: len(self.samples) > n or self.proc.poll() is not None,
                             timeout)
            if self.proc.poll() is not None and len(self.samples) == n:
                raise BenchError(f'ksm-sample exited: {self.proc.stderr.read().strip()}')
            return self.samples[-1]

    def close(self):
        stop(self.proc)
        self.thread.join(2)


def crossing(samples, key, level, t0):
    """Interpolated (time since t0, sample index) when samples[key] first
    reaches level, or (None, None)."""
    prev = None
    for i, s in enumerate(samples):
        v = s.get(key)
        if v is None:
            continue
        if v >= level:
            if prev is None or prev[1] >= level:
                return s['t'] - t0, i
            (pt, pv) = prev
            frac = (level - pv) / (v - pv) if v != pv else 1.0
            return pt + frac * (s['t'] - pt) - t0, i
        prev = (s['t'], v)
    return None, None


def value_at(samples, key, t_abs):
    """samples[key] linearly interpolated at absolute time t_abs."""
    prev = None
    for s in samples:
        if key not in s:
            continue
        if s['t'] >= t_abs:
            if prev is None:
                return s[key]
            frac = (t_abs - prev['t']) / (s['t'] - prev['t']) if s['t'] != prev['t'] else 1.0
            return prev[key] + frac * (s[key] - prev[key])
        prev = s
    return prev[key] if prev else None
