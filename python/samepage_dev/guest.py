"""One guest of the project (scripts/make-guest: the busybox initramfs, or
with --image debian a real Debian 12 system with nginx and PostgreSQL on a
disk) in a built QEMU, through QEMU's own python/qemu package, for the guest
suites and scripts/quickstart; frozen() holds ksmd and guests still for two
reads of one state; guest_accel() says whether KVM really boots the guest.
"""
import contextlib
import http.client
import os
import time

from samepage_dev.cli import host_value, samepage
from samepage_dev.console import Console
from samepage_dev.pages import fill_census, independent_range_count, ram_range, smaps_mergeable
from samepage_dev.qemu_python import use_qemu_python
from samepage_dev.qmp import query_ksm_stats_fresh
from samepage_dev.waits import wait_for
from samepage_dev.web import free_port, http_get

_accel_cache = {}


class Guest:
    """One guest of the project (scripts/make-guest) in a built QEMU, driven
    through QEMU's own python/qemu: QEMUMachine for the process and QMP, and
    its serial console (QEMUMachine.set_console()), read into whole lines
    by samepage_dev.console.

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
        self.console = None
        self._sock = None
        self._rc_seq = 0
        self.pid = None

    # process
    def launch(self):
        self.vm.launch()
        self.pid = self.vm.get_pid()
        self._sock = self.vm.console_socket   # 7.2 connects here (server, wait=off)
        self.console = Console(self._sock, self.name).start()
        return self

    def is_running(self):
        return self.vm.is_running()

    def shutdown(self, timeout=30):
        """Stop QEMU (QMP quit, SIGKILL after timeout) and clean up; returns
        None, or the exception QEMUMachine raised (e.g. QEMU had died)."""
        if self.console:
            self.console.stop()
        try:
            self.vm.shutdown(timeout=timeout)
        except Exception as e:  # noqa: BLE001 - reported to the caller
            return e
        return None

    # console
    @property
    def lines(self):
        return self.console.lines if self.console else []

    def tail(self, n=15):
        return self.console.tail(n) if self.console else ''

    def wait_line(self, pattern, timeout, since=0, search=False):
        """Wait for a console line (from index `since`) that matches the
        regex `pattern` as a whole (or anywhere, with search=True); returns
        (index, match)."""
        return self.console.wait_line(pattern, timeout, since, search, alive=self.vm.is_running)

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
        with self.console.cond:
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
