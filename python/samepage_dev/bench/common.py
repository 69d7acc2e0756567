"""What every benchmark shares: paths, samepage, the KSM knobs guard, the
processes we started (stopped by PID, never by name), load notes, tables.

KSM is only ever read or written through samepage or the C helpers linked with
libksm (build/bench/ksm-sample): nothing here opens /sys/kernel/mm/ksm or a
/proc/PID/ksm_* file.
"""
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time

from samepage_dev import cli, knobs, procs


class BenchError(Exception):
    """A benchmark could not run (its table says why); others still run."""


class PeerAbsent(BenchError):
    """A peer is not on this machine (its row says why and how to get it):
    never a failure, samepage's own figures stand without it."""


class Env:
    """Paths of what the benchmarks run, filled by setup()."""
    build = None
    samepage = None
    census_speed = None
    ksm_sample = None
    qemu = None
    qemu_version = None
    kernel = None
    initrd = None
    debian = None       # scripts/make-guest --image debian --print: kernel, initrd, disk, append
    out = None
    smoke = False
    cache = os.environ.get('SAMEPAGE_CACHE', '/var/cache/samepage')


ENV = Env()


def log(msg):
    print(f'[{time.strftime("%H:%M:%S")}] {msg}', file=sys.stderr, flush=True)


# ---- processes we started ---------------------------------------------------

_children = {}          # pid -> (Popen, description)
_children_lock = threading.Lock()


def spawn(args, what, **kw):
    """Popen that is registered for cleanup (stopped by PID at exit)."""
    p = subprocess.Popen(args, **kw)
    with _children_lock:
        _children[p.pid] = (p, what)
    return p


def stop(p, timeout=5.0, sig=signal.SIGTERM):
    """Stop one process we started, by its PID; wait for it."""
    if p is None:
        return
    if p.poll() is None:
        try:
            p.send_signal(sig)
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout)
        except ProcessLookupError:
            pass
    with _children_lock:
        _children.pop(p.pid, None)


_pids = {}             # pid -> description: processes we started that are not our children


def register_pid(pid, what):
    with _children_lock:
        _pids[pid] = what


def stop_pid(pid, timeout=5.0):
    """Stop a process we started that is not our child (a daemon that forked),
    by its PID: SIGTERM, then SIGKILL after timeout."""
    procs.stop_pid(pid, timeout)
    with _children_lock:
        _pids.pop(pid, None)


def stop_all():
    with _children_lock:
        procs = list(_children.values())
        pids = list(_pids)
    for pid in pids:
        stop_pid(pid, timeout=2.0)
    for p, _ in procs:
        try:
            stop(p, timeout=3.0)
        except Exception as e:   # keep stopping the others
            log(f'could not stop pid {p.pid}: {e}')


# ---- samepage -----------------------------------------------------------------

def samepage(*args, check=True, timeout=120):
    """This run's samepage (ENV.samepage, also $SAMEPAGE_CLI); BenchError
    when it fails."""
    return cli.samepage(*args, check=check, timeout=timeout, error=BenchError)


def ksm_set(*assignments, check=True):
    return samepage('set', *assignments, check=check)


def ksm_stats():
    return json.loads(samepage('stats', '--json').stdout)


def ksm_clean():
    """A clean KSM state: every KSM page broken by a safe run=2 (samepage
    unmerge --all: host lock, disposable writer, deadline), ksmd stopped with
    run=2.  Returns samepage's outcome (dict: duration_ms, counters before and
    after, ...)."""
    r = samepage('unmerge', '--all', '--force', '--json', '--lock-timeout', '60', check=False,
               timeout=900)
    out = None
    for line in r.stdout.splitlines():
        try:
            out = json.loads(line)
        except ValueError:
            pass
    if r.returncode != 0:
        raise BenchError(f'samepage unmerge --all --force failed: {r.stderr.strip() or r.stdout}')
    return out


class KnobGuard:
    """Saves every KSM knob (samepage save) and restores it on exit, on failure,
    on SIGINT/SIGTERM.  The saved file survives a crash for `samepage restore`."""

    def __init__(self):
        try:
            self.path = knobs.save(prefix='samepage-bench-knobs-')
        except AssertionError as e:
            raise BenchError(str(e)) from None
        self.restored = False
        log(f'saved the KSM knobs in {self.path}')

    def restore(self):
        if self.restored:
            return
        r = knobs.restore(self.path)
        if r.returncode == 0:
            self.restored = True
            log('restored the KSM knobs')
        else:
            log(f'WARNING: could not restore the KSM knobs ({r.stderr.strip()}); '
                f'run: samepage restore --file {self.path}')


def install_signal_handlers():
    def handler(signum, frame):
        raise KeyboardInterrupt(f'signal {signum}')
    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGHUP, handler)


# ---- load -------------------------------------------------------------------

def load_note():
    """'load 1.23' plus what else uses KSM now (other QEMUs, other mergeable
    processes): the numbers beside it are only as quiet as this."""
    la = os.getloadavg()[0]
    others = 0
    try:
        mine = set(_children)
        for p in ksm_stats().get('processes', []):
            if p.get('pid') not in mine and (p.get('ksm_stat') or {}).get('ksm_mergeable'):
                others += 1
    except Exception:
        pass
    return f'load {la:.2f}, {others} other mergeable QEMU' + ('' if others == 1 else 's')


# ---- statistics and tables --------------------------------------------------

def percentile(values, p):
    if not values:
        return float('nan')
    v = sorted(values)
    k = (len(v) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def median(values):
    return statistics.median(values) if values else float('nan')


def fmt(v, spec='.2f', none='-'):
    if v is None:
        return none
    if isinstance(v, float) and v != v:
        return none
    return format(v, spec)


def table(title, headers, rows, notes=()):
    """A plain text table; returns it as a string."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = [title, '']
    for n, r in enumerate(cells):
        lines.append('  ' + '  '.join(c.rjust(w) if i else c.ljust(w)
                                      for i, (c, w) in enumerate(zip(r, widths))))
        if n == 0:
            lines.append('  ' + '  '.join('-' * w for w in widths))
    for note in notes:
        lines.append('  ' + note)
    return '\n'.join(lines) + '\n'

