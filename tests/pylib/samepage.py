"""Shared helpers for samepage's Python test suites (QEMU-level, guests, libvirt).

KSM itself is only ever touched through samepage (libksm): these helpers read
and set knobs with it, and save/restore them around every test.  The
exceptions are independent_range_count(), fill_census() and
smaps_mergeable(), which read pagemap/kpageflags, /proc/PID/mem and smaps
directly: they exist to check libksm's own figures against a second opinion.

Guest (below) runs the project's guests (scripts/make-guest: the busybox
initramfs, or with --image debian a real Debian 12 system with nginx and
PostgreSQL on a disk) in a built QEMU through QEMU's own python/qemu package,
for the guest suites and scripts/quickstart; WebPoller polls a Debian
guest's web server from the host while a test does something to it.
"""
import codecs
import contextlib
import http.client
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
BUILD = os.environ.get('SAMEPAGE_BUILD', os.path.join(ROOT, 'build'))
QEMU_VERSIONS = ('7.2', '10.0')
PAGE = os.sysconf('SC_PAGE_SIZE')


def cli_path():
    return os.environ.get('SAMEPAGE_CLI', os.path.join(BUILD, 'cli', 'samepage'))


def samepage(*args, check=True, timeout=60):
    """Run samepage; returns CompletedProcess (text)."""
    r = subprocess.run([cli_path(), *args], capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f'samepage {" ".join(args)} exited {r.returncode}: {r.stderr.strip()}')
    return r


def host_stats():
    """The host's KSM knobs and counters, as `samepage stats --json` reports them."""
    return json.loads(samepage('stats', '--json').stdout)


def host_value(name):
    stats = host_stats()
    for section in ('counters', 'knobs', 'unknown'):
        if name in stats.get(section, {}):
            return stats[section][name]
    raise KeyError(f'samepage stats --json has no {name}')


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


def find_guest(image='busybox'):
    """What scripts/make-guest --image IMAGE --print prints, or None when it
    is not built: {'kernel', 'initrd'} for busybox; for debian also 'disk'
    (raw ext4), 'append' (kernel command line), 'marker', 'image'."""
    return _script_paths('make-guest', '--image', image)


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
    whatever happened.  Yields the file the knobs are saved in (for
    `samepage restore --file` in an emergency, e.g. a signal handler)."""
    fd, saved = tempfile.mkstemp(prefix='samepage-knobs-')
    os.close(fd)
    samepage('save', '--file', saved)
    try:
        if settings:
            samepage('set', *[f'{k}={v}' for k, v in settings.items()])
        yield saved
    finally:
        settle_exited()
        samepage('restore', '--file', saved, check=False)
        os.unlink(saved)


def settle_exited(timeout=5):
    """With ksmd running, let it pass over what is left before the knobs go
    back: it drops the KSM metadata of processes that exited (the guests
    just stopped) only when it passes over them, and with run=0 restored
    the counters would keep their pages_sharing for good.  Done when no
    KSM metadata is left, or after two full scans (other mergeable
    processes on the host), or at the timeout."""
    try:
        if host_value('run') != 1:
            return
        start = host_value('full_scans')
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            c = host_stats()['counters']
            if (sum(c.get(k, 0) for k in ('pages_shared', 'pages_sharing', 'pages_unshared',
                                          'pages_volatile')) == 0
                    or c.get('full_scans', 0) >= start + 2):
                return
            time.sleep(0.05)
    except Exception:  # noqa: BLE001 - best effort on the way out
        pass


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


class PidsCgroup:
    """A pids cgroup made by a test (v1 at /sys/fs/cgroup/pids, or v2):
    with pids.max at the tasks a process has, it can start no thread."""

    def __init__(self, name):
        v1 = '/sys/fs/cgroup/pids'
        self.v2 = not os.path.isdir(v1)
        base = '/sys/fs/cgroup' if self.v2 else v1
        self.path = os.path.join(base, f'samepage-{name}-{os.getpid()}')
        os.mkdir(self.path)

    def _write(self, name, value):
        with open(os.path.join(self.path, name), 'w') as f:
            f.write(value)

    def add(self, pid):
        self._write('cgroup.procs', str(pid))

    def limit(self, tasks):
        self._write('pids.max', 'max' if tasks is None else str(tasks))

    def current(self):
        with open(os.path.join(self.path, 'pids.current')) as f:
            return int(f.read())

    remove = MemoryCgroup.remove


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


FILL_MAGIC = b'SAMEPAGE'    # word 0 of every page of the guest's fill (scripts/guest/fill.c)


def fill_census(pid, start, length, seed):
    """Pages of [start, start+length) of pid that hold the guest's fill of
    `seed` (word 0 "SAMEPAGE", word 1 the seed: scripts/guest/fill.c), and
    how many of those are KSM pages, from /proc/PID/mem, pagemap and
    kpageflags.  Only present pages are read, so nothing is faulted in."""
    head = FILL_MAGIC + struct.pack('<Q', seed)
    fill = fill_ksm = 0
    mem = os.open(f'/proc/{pid}/mem', os.O_RDONLY)
    try:
        with open(f'/proc/{pid}/pagemap', 'rb') as pm, open('/proc/kpageflags', 'rb') as kpf:
            pm.seek(start // PAGE * 8)
            data = pm.read(length // PAGE * 8)
            for i, (entry,) in enumerate(struct.iter_unpack('<Q', data)):
                if not entry & PM_PRESENT:
                    continue
                if os.pread(mem, len(head), start + i * PAGE) != head:
                    continue
                fill += 1
                kpf.seek((entry & PFN_MASK) * 8)
                if struct.unpack('<Q', kpf.read(8))[0] & (1 << KPF_KSM):
                    fill_ksm += 1
    finally:
        os.close(mem)
    return {'fill': fill, 'fill_ksm': fill_ksm}


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


def which(name):
    return shutil.which(name)


def note(text):
    """A diagnostic line for the TAP stream (taprunner.py): what a test saw
    and wants on record without asserting it."""
    for line in str(text).splitlines() or ['']:
        sys.stdout.write(f'# {line}\n')
    sys.stdout.flush()


def smaps_mergeable(pid, start, length):
    """Bytes of [start, start+length) of pid in areas whose VmFlags have
    "mg" (registered with KSM), read from /proc/PID/smaps."""
    total = 0
    area = None
    with open(f'/proc/{pid}/smaps') as f:
        for line in f:
            m = re.match(r'^([0-9a-f]+)-([0-9a-f]+) ', line)
            if m:
                area = (int(m.group(1), 16), int(m.group(2), 16))
            elif line.startswith('VmFlags:') and area and 'mg' in line.split()[1:]:
                total += max(0, min(area[1], start + length) - max(area[0], start))
    return total


# --- real guests: scripts/make-guest's kernel + initramfs in the built QEMU ---

MiB = 1 << 20
_ANSI = re.compile(r'\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][0-9A-Za-z]')
_accel_cache = {}


class Guest:
    """One guest of the project (scripts/make-guest) in a built QEMU, driven
    through QEMU's own python/qemu: QEMUMachine for the process and QMP, and
    its serial console (QEMUMachine.set_console()), which a thread of ours
    reads into whole lines (\\r and ANSI escapes stripped).

    RAM is one backend, `ram_type` (memory-backend-ksm by default) of id
    `ram_id`, given to the machine with -machine memory-backend=ID.  The
    workload (idle, fill, churn) and its size and seed go on the kernel
    command line.  shutdown() always ends the QEMU process (QMP quit, then
    SIGKILL through QEMUMachine) and never raises.

    A Debian guest (guest['image'] == 'debian') boots its own kernel and
    initramfs with its disk image on virtio-blk, snapshot=on (its writes go
    to a temporary overlay of this QEMU: the image is shared by every guest
    and never changes), and a virtio NIC on QEMU's user network that
    forwards 127.0.0.1:http_port on the host to the guest's port 80 (nginx).
    The workload arguments do not apply to it: it runs its services."""

    def __init__(self, paths, guest, name, *, mem=256, workload='idle', mib=None, seed=None,
                 ram_type='memory-backend-ksm', ram_id='m0', ram_opts='', machine_opts='',
                 maxmem=None, args=(), append='', accel='tcg', own_session=False,
                 http_port=None):
        use_qemu_python(paths)
        from qemu.machine import QEMUMachine
        self.image = guest.get('image', 'busybox')
        self.http_port = None
        disk_args = []
        if self.image == 'debian':
            cmdline = guest['append'].split()
            self.http_port = http_port or free_port()
            disk_args = ['-drive', f'file={guest["disk"]},format=raw,if=virtio,snapshot=on',
                         '-netdev', f'user,id=n0,hostfwd=tcp:127.0.0.1:{self.http_port}-:80',
                         '-device', 'virtio-net-pci,netdev=n0,romfile=',
                         '-device', 'virtio-rng-pci']
        else:
            cmdline = ['console=ttyS0', 'quiet', 'panic=-1', f'samepage.workload={workload}']
        if mib is not None and self.image != 'debian':
            cmdline.append(f'samepage.mib={mib}')
        if seed is not None and self.image != 'debian':
            cmdline.append(f'samepage.seed={seed}')
        if append:
            cmdline.append(append)
        m = f'size={mem}M' + (f',slots=2,maxmem={maxmem}' if maxmem else '')
        qemu_args = ['-nodefaults', '-accel', accel,
                     '-machine', f'pc,memory-backend={ram_id}{machine_opts}', '-m', m,
                     '-object', f'{ram_type},id={ram_id},size={mem}M{ram_opts}',
                     '-no-reboot', '-kernel', guest['kernel'], '-initrd', guest['initrd'],
                     '-append', ' '.join(cmdline), *disk_args, *args]
        self.name = name
        self.mem = mem
        self.ram_id = ram_id
        self.accel = accel
        # setsid (no fork: the child is not a group leader, so the PID stays
        # QEMU's) keeps a terminal's ^C away from QEMU: its owner stops it.
        self.vm = QEMUMachine(paths['qemu'], args=qemu_args, name=name,
                              wrapper=['setsid'] if own_session else ())
        self.vm.set_console()
        self.lines = []
        self.partial = ''
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = None
        self._sock = None
        self._rc_seq = 0
        self.pid = None

    # process
    def launch(self):
        self.vm.launch()
        self.pid = self.vm.get_pid()
        self._sock = self.vm.console_socket   # 7.2 connects here (server, wait=off)
        self._sock.settimeout(0.2)
        self._thread = threading.Thread(target=self._read_console, name=f'console-{self.name}',
                                        daemon=True)
        self._thread.start()
        return self

    def is_running(self):
        return self.vm.is_running()

    def shutdown(self, timeout=30):
        """Stop QEMU (QMP quit, SIGKILL after timeout) and clean up; returns
        None, or the exception QEMUMachine raised (e.g. QEMU had died)."""
        self._stop.set()
        if self._thread:
            self._thread.join(5)
        try:
            self.vm.shutdown(timeout=timeout)
        except Exception as e:  # noqa: BLE001 - reported to the caller
            return e
        return None

    # console
    def _read_console(self):
        decoder = codecs.getincrementaldecoder('utf-8')('replace')
        while not self._stop.is_set():
            try:
                data = self._sock.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                break
            if not data:
                break
            text = self.partial + decoder.decode(data)
            *complete, rest = text.split('\n')
            with self._cond:
                self.lines.extend(_ANSI.sub('', line).replace('\r', '') for line in complete)
                self.partial = rest
                self._cond.notify_all()

    def tail(self, n=15):
        with self._cond:
            return '\n'.join(self.lines[-n:] + [_ANSI.sub('', self.partial)])

    def wait_line(self, pattern, timeout, since=0, search=False):
        """Wait for a console line (from index `since`) that matches the
        regex `pattern` as a whole (or anywhere, with search=True); returns
        (index, match)."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
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
                if not self.vm.is_running():
                    raise AssertionError(f'{self.name}: QEMU exited while waiting for '
                                         f'{pattern!r}; console:\n{self.tail()}')
                self._cond.wait(min(left, 0.5))
        raise AssertionError(f'{self.name}: no console line {pattern!r} within {timeout}s; '
                             f'console:\n{self.tail()}')

    def wait_ready(self, timeout=None):
        """The busybox guest's SAMEPAGE-READY; for a Debian guest, its
        SAMEPAGE-READY image=debian (nginx and PostgreSQL answer inside the
        guest), then nginx answering the host on the forwarded port."""
        if self.image != 'debian':
            return self.wait_line(r'SAMEPAGE-READY workload=\S+', timeout or 60)
        timeout = timeout or 300
        t0 = time.monotonic()
        i, m = self.wait_line(r'SAMEPAGE-(READY image=debian|ERROR) .*', timeout, search=True)
        if m.group(1) != 'READY image=debian':
            raise AssertionError(f'{self.name}: {m.group(0)}; console:\n{self.tail()}')
        left = max(10, timeout - (time.monotonic() - t0))
        wait_for(lambda: self.http_ok(), left, interval=0.5,
                 what=f'{self.name}: nginx on 127.0.0.1:{self.http_port}')
        return i, m

    def http_ok(self, timeout=5):
        try:
            return http_get(self.http_port, '/', timeout)[0] == 200
        except (OSError, http.client.HTTPException):
            return False

    def wait_filled(self, timeout=120):
        """Wait for SAMEPAGE-FILLED; fails at once if the workload ended
        instead (SAMEPAGE-EXITED, e.g. OOM-killed in a guest too small for
        its fill, or SAMEPAGE-ERROR)."""
        i, m = self.wait_line(r'SAMEPAGE-FILLED mib=\d+ seed=\d+|SAMEPAGE-(EXITED|ERROR) .*',
                              timeout)
        if m.group(1):
            raise AssertionError(f'{self.name}: the fill did not complete: {m.group(0)}; '
                                 f'console:\n{self.tail()}')
        return i, m

    def send(self, text):
        self._sock.sendall(text.encode())

    def run(self, command, timeout=30):
        """Run a shell command on the guest's console; returns (exit status,
        the console lines that followed, the echo of the command included)."""
        self._rc_seq += 1
        n = self._rc_seq
        with self._cond:
            since = len(self.lines)
        # The tty echoes SAMEPAGE-""RC<n> $?, which the pattern does not match.
        self.send(f'{command}; echo SAMEPAGE-""RC{n} $?\n')
        i, m = self.wait_line(rf'SAMEPAGE-RC{n} (\d+)$', timeout, since, search=True)
        return int(m.group(1)), self.lines[since:i]

    def alive(self, timeout=30):
        """The guest answers on its console (`echo alive`)."""
        try:
            _, lines = self.run('echo alive', timeout)
        except AssertionError:
            return False
        return any(line.strip() == 'alive' for line in lines)

    # QMP
    def qmp(self, cmd, **args):
        return self.vm.qmp(cmd, **args)

    def cmd(self, cmd, **args):
        r = self.vm.qmp(cmd, **args)
        if 'error' in r:
            raise AssertionError(f'{self.name}: {cmd} failed: {r["error"]}')
        return r['return']

    def ksm_stats(self, exact=True, **args):
        """query-ksm-stats; exact: with counts from a walk that started
        after this call (query_ksm_stats_fresh)."""
        if exact:
            return query_ksm_stats_fresh(lambda **a: self.cmd('query-ksm-stats', **a))
        return self.cmd('query-ksm-stats', **args)

    def backend(self, bid=None, **args):
        bid = bid or self.ram_id
        for b in self.ksm_stats(**args)['backends']:
            if b['id'] == bid:
                return b
        raise AssertionError(f'{self.name}: backend {bid} not in query-ksm-stats')

    # the test's own view of this QEMU's memory
    def ram_range(self, bid=None):
        """(start, length) of a backend's memory in QEMU's address space,
        found by its size in /proc/PID/maps."""
        size = self.backend(bid, exact=False)['size']
        r = ram_range(self.pid, size)
        if r is None:
            raise AssertionError(f'{self.name}: no mapping of {size} bytes in /proc/{self.pid}/maps')
        return r

    def independent_count(self, bid=None):
        return independent_range_count(self.pid, *self.ram_range(bid))

    def smaps_mergeable(self, bid=None):
        return smaps_mergeable(self.pid, *self.ram_range(bid))

    def fill_census(self, seed, bid=None):
        return fill_census(self.pid, *self.ram_range(bid), seed)


@contextlib.contextmanager
def frozen(*guests):
    """ksmd stopped (run=0: the write returns once its batch is done) and the
    guests' vCPUs stopped, so that two reads of their memory see one state.
    Restores run and resumes the guests."""
    run = host_value('run')
    samepage('set', 'run=0')
    stopped = []
    try:
        for g in guests:
            g.cmd('stop')
            stopped.append(g)
        yield
    finally:
        for g in stopped:
            if g.is_running():
                g.qmp('cont')
        samepage('set', f'run={run}', check=False)


def guest_accel(paths, guest):
    """('tcg', why) by default; ('kvm', None) only when SAMEPAGE_ACCEL=kvm
    and /dev/kvm really boots the guest (nested KVM may hang it), which a
    probe boot checks once per QEMU binary."""
    if os.environ.get('SAMEPAGE_ACCEL', 'tcg') != 'kvm':
        return 'tcg', None
    if not os.access('/dev/kvm', os.R_OK | os.W_OK):
        return 'tcg', 'SAMEPAGE_ACCEL=kvm but /dev/kvm is not usable: TCG'
    if paths['qemu'] not in _accel_cache:
        probe = Guest(paths, guest, 'kvm-probe', mem=128, accel='kvm')
        try:
            probe.launch()
            probe.wait_ready(30)
            _accel_cache[paths['qemu']] = ('kvm', None)
        except Exception as e:  # noqa: BLE001 - any failure means: not KVM
            why = str(e).split(';')[0].splitlines()[0] if str(e) else type(e).__name__
            _accel_cache[paths['qemu']] = (
                'tcg', f'SAMEPAGE_ACCEL=kvm but the guest did not boot with KVM ({why}): TCG')
        finally:
            probe.shutdown(timeout=5)
    return _accel_cache[paths['qemu']]


def require_guest(image='busybox'):
    g = find_guest(image)
    if not g:
        raise unittest.SkipTest(f'no {image} guest built (scripts/make-guest --image {image})')
    return g


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


class WebPoller:
    """Polls a guest's web server from the host, one request after the
    other (each with its own connection and a 5 s timeout), in a thread,
    recording (start, seconds, error or None) of every request, until
    stop().  A request fails when it raises or answers other than 200."""

    def __init__(self, port, path='/', timeout=5, pause=0.0):
        self.port, self.path, self.timeout, self.pause = port, path, timeout, pause
        self.samples = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f'poll-{port}', daemon=True)

    def _run(self):
        while not self._stop.is_set():
            t = time.monotonic()
            try:
                status, took = http_get(self.port, self.path, self.timeout)
                err = None if status == 200 else f'HTTP {status}'
            except (OSError, http.client.HTTPException) as e:
                took, err = time.monotonic() - t, f'{type(e).__name__}: {e}'
            self.samples.append((t, took, err))
            if self.pause:
                self._stop.wait(self.pause)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join(self.timeout + 5)
        return self

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
