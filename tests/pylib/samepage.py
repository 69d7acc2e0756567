"""Shared helpers for samepage's Python test suites (QEMU-level, guests, libvirt).

KSM itself is only ever touched through ksmctl (libksm): these helpers read
and set knobs with it, and save/restore them around every test.  The one
exception is independent_range_count(), which reads pagemap/kpageflags
directly: it exists to check libksm's own count against a second opinion.
"""
import contextlib
import json
import os
import shutil
import struct
import subprocess
import tempfile
import time
import unittest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
BUILD = os.environ.get('SAMEPAGE_BUILD', os.path.join(ROOT, 'build'))
QEMU_VERSIONS = ('7.2', '10.0')
PAGE = os.sysconf('SC_PAGE_SIZE')


def ksmctl_path():
    return os.environ.get('SAMEPAGE_KSMCTL', os.path.join(BUILD, 'ksmctl', 'ksmctl'))


def ksmctl(*args, check=True, timeout=60):
    """Run ksmctl; returns CompletedProcess (text)."""
    r = subprocess.run([ksmctl_path(), *args], capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f'ksmctl {" ".join(args)} exited {r.returncode}: {r.stderr.strip()}')
    return r


def host_stats():
    """The host's KSM knobs and counters, as `ksmctl stats --json` reports them."""
    return json.loads(ksmctl('stats', '--json').stdout)


def host_value(name):
    stats = host_stats()
    for section in ('counters', 'knobs', 'unknown'):
        if name in stats.get(section, {}):
            return stats[section][name]
    raise KeyError(f'ksmctl stats --json has no {name}')


def _script_paths(script, *args):
    r = subprocess.run([os.path.join(ROOT, 'scripts', script), *args, '--print'],
                       capture_output=True, text=True)
    if r.returncode != 0:
        return None
    out = {}
    for line in r.stdout.splitlines():
        k, _, v = line.partition('=')
        if v:
            out[k.strip()] = v.strip()
    return out


def find_qemu(version):
    """{'qemu': binary, 'qemu_python': dir} for a built QEMU, or None."""
    if os.environ.get(f'SAMEPAGE_QEMU_{version.replace(".", "_")}'):
        return {'qemu': os.environ[f'SAMEPAGE_QEMU_{version.replace(".", "_")}'],
                'qemu_python': os.environ.get('SAMEPAGE_QEMU_PYTHON', '')}
    return _script_paths('build-qemu', '--qemu', version)


def find_guest():
    """{'kernel': vmlinuz, 'initrd': initramfs} of the project's guest, or None."""
    return _script_paths('make-guest')


def require_root(test):
    if os.geteuid() != 0:
        raise unittest.SkipTest('needs root: KSM knobs, pagemap frame numbers and cgroups')


def use_qemu_python(paths):
    """Make QEMU's own python/qemu package (qemu.machine, qemu.qmp) importable."""
    import sys
    p = paths.get('qemu_python')
    if p and p not in sys.path:
        sys.path.insert(0, p)


def require_qemu(version):
    paths = find_qemu(version)
    if not paths:
        raise unittest.SkipTest(f'QEMU {version} is not built (scripts/build-qemu --qemu {version})')
    use_qemu_python(paths)
    return paths


@contextlib.contextmanager
def ksm_knobs(**settings):
    """Save every KSM knob, apply settings (name=value), restore on the way out
    whatever happened."""
    fd, saved = tempfile.mkstemp(prefix='samepage-knobs-')
    os.close(fd)
    ksmctl('save', '--file', saved)
    try:
        if settings:
            ksmctl('set', *[f'{k}={v}' for k, v in settings.items()])
        yield
    finally:
        ksmctl('restore', '--file', saved, check=False)
        os.unlink(saved)


def wait_for(predicate, timeout, interval=0.2, what='condition'):
    """Poll predicate() until it returns a true value; fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f'timed out after {timeout}s waiting for {what} (last: {last!r})')


def wait_full_scans(n, timeout=120):
    start = host_value('full_scans')
    wait_for(lambda: host_value('full_scans') >= start + n, timeout,
             what=f'{n} full KSM scans from {start}')


# --- memory cgroups (not KSM: made and removed by the tests that need them) ---

class MemoryCgroup:
    """A memory cgroup made by a test (v1 at /sys/fs/cgroup/memory, or v2)."""

    def __init__(self, name, limit_bytes):
        v1 = '/sys/fs/cgroup/memory'
        self.v2 = not os.path.isdir(v1)
        base = '/sys/fs/cgroup' if self.v2 else v1
        self.path = os.path.join(base, f'samepage-{name}-{os.getpid()}')
        os.mkdir(self.path)
        limit_file = 'memory.max' if self.v2 else 'memory.limit_in_bytes'
        self._write(limit_file, str(limit_bytes))

    def _write(self, name, value):
        with open(os.path.join(self.path, name), 'w') as f:
            f.write(value)

    def add(self, pid):
        self._write('cgroup.procs', str(pid))

    def pids(self):
        with open(os.path.join(self.path, 'cgroup.procs')) as f:
            return [int(x) for x in f.read().split()]

    def oom_kills(self):
        """OOM kills inside this cgroup (v2 memory.events, v1 memory.oom_control)."""
        name = 'memory.events' if self.v2 else 'memory.oom_control'
        with open(os.path.join(self.path, name)) as f:
            for line in f:
                k, _, v = line.partition(' ')
                if k == 'oom_kill':
                    return int(v)
        return 0

    def remove(self, timeout=10):
        """rmdir once empty; the test must have stopped its processes inside."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                os.rmdir(self.path)
                return
            except FileNotFoundError:
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)


# --- an independent count, to check libksm's against ---

KPF_KSM = 21
KPF_ZERO_PAGE = 24
PM_PRESENT = 1 << 63
PFN_MASK = (1 << 55) - 1


def independent_range_count(pid, start, length):
    """KSM and zero pages of [start, start+length) of pid, counted here from
    /proc/PID/pagemap and /proc/kpageflags one page at a time."""
    ksm = zero = present = 0
    flags_cache = {}
    with open(f'/proc/{pid}/pagemap', 'rb') as pm, open('/proc/kpageflags', 'rb') as kpf:
        pm.seek(start // PAGE * 8)
        data = pm.read(length // PAGE * 8)
        for (entry,) in struct.iter_unpack('<Q', data):
            if not entry & PM_PRESENT:
                continue
            present += 1
            pfn = entry & PFN_MASK
            flags = flags_cache.get(pfn)
            if flags is None:
                kpf.seek(pfn * 8)
                flags = struct.unpack('<Q', kpf.read(8))[0]
                flags_cache[pfn] = flags
            if flags & (1 << KPF_ZERO_PAGE):
                zero += 1
            elif flags & (1 << KPF_KSM):
                ksm += 1
    return {'present': present, 'ksm': ksm, 'zero': zero}


def ram_range(pid, size):
    """(start, length) of the one private anonymous mapping of exactly size
    bytes in pid (a guest's RAM block), from /proc/PID/maps."""
    found = []
    with open(f'/proc/{pid}/maps') as f:
        for line in f:
            parts = line.split()
            a, b = (int(x, 16) for x in parts[0].split('-'))
            if b - a >= size and len(parts) < 6:
                found.append((a, b - a))
    exact = [r for r in found if r[1] == size]
    return (exact or found)[0] if (exact or found) else None


def which(name):
    return shutil.which(name)
