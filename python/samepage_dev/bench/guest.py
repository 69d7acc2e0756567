"""The project's test guests (scripts/make-guest: the busybox one, or with
image='debian' the real Debian 12 system) on the built QEMU, for the
benchmarks: started as a plain process (registered for cleanup by PID,
timed from just before it starts), without QEMU's python package, so that
nothing runs between a QMP request and its answer but samepage_dev.qmp; its
serial console (a socket QEMU waits for before it runs the guest) read by
samepage_dev.console, whose line times give the boot and fill markers.
With boot=False, a QEMU with only its memory backends (qtest accel)."""
import re
import shutil
import socket
import subprocess
import tempfile
import time

from samepage_dev.bench.common import BenchError, ENV, log, spawn, stop
from samepage_dev.paths import MiB
from samepage_dev import pages
from samepage_dev.console import Console
from samepage_dev.qmp import QMP, query_ksm_stats_fresh


class Guest:
    """One QEMU: TCG guest booting the samepage guest kernel + initramfs, or,
    with kernel=False, a QEMU with only its memory backends (qtest accel)."""

    def __init__(self, name, mem_mib, backend='memory-backend-ksm', workload='idle', mib=0,
                 seed=1, boot=True, backend_opts='', extra=(), seed2=0, share=100,
                 image='busybox'):
        self.name = name
        self.image = image
        self.http_port = free_port() if image == 'debian' else None
        self.mem_mib = mem_mib
        self.backend = backend
        self.workload = workload
        self.fill_mib = mib
        self.seed = seed
        # fill: the first share% of the pages from seed, the rest from seed2
        # (scripts/guest/fill.c): guests with one seed and different seed2
        # have share% of their fill in common.
        self.seed2 = seed2
        self.share = share
        self.boot = boot
        self.backend_opts = backend_opts
        self.extra = list(extra)
        self.dir = tempfile.mkdtemp(prefix=f'samepage-bench-{name}-')
        self.proc = None
        self.qmp = None
        self.t_start = None
        self.console = None          # samepage_dev.console.Console, when booted
        self._sock = None
        self.qtest = None

    # ---- start and stop ----------------------------------------------------------

    def args(self):
        a = [ENV.qemu, '-name', self.name, '-nodefaults', '-display', 'none', '-no-reboot',
             '-m', f'{self.mem_mib}M',
             '-object', f'{self.backend},id=m0,size={self.mem_mib}M{self.backend_opts}',
             '-qmp', f'unix:{self.dir}/qmp.sock,server=on,wait=off',
             # A second monitor, for measuring round trips while the first waits on a job.
             '-qmp', f'unix:{self.dir}/qmp2.sock,server=on,wait=off']
        if self.boot and self.image == 'debian':
            # scripts/make-guest --image debian: its own kernel and initramfs,
            # the shared disk image with a per-guest overlay (snapshot=on), its
            # nginx forwarded to a loopback port of the host.
            d = ENV.debian
            a += ['-machine', 'pc,memory-backend=m0', '-accel', 'tcg',
                  '-chardev', f'socket,id=ser0,path={self.dir}/serial.sock,server=on,wait=on',
                  '-serial', 'chardev:ser0',
                  '-kernel', d['kernel'], '-initrd', d['initrd'], '-append', d['append'],
                  '-drive', f'file={d["disk"]},format=raw,if=virtio,snapshot=on',
                  '-netdev', f'user,id=n0,hostfwd=tcp:127.0.0.1:{self.http_port}-:80',
                  '-device', 'virtio-net-pci,netdev=n0,romfile=',
                  '-device', 'virtio-rng-pci']
        elif self.boot:
            append = (f'console=ttyS0 quiet panic=-1 samepage.workload={self.workload} '
                      f'samepage.mib={self.fill_mib} samepage.seed={self.seed}')
            if self.share != 100:
                append += f' samepage.seed2={self.seed2} samepage.share={self.share}'
            a += ['-machine', 'pc,memory-backend=m0', '-accel', 'tcg',
                  '-chardev', f'socket,id=ser0,path={self.dir}/serial.sock,server=on,wait=on',
                  '-serial', 'chardev:ser0',
                  '-kernel', ENV.kernel, '-initrd', ENV.initrd, '-append', append]
        else:
            a += ['-machine', 'pc,memory-backend=m0', '-accel', 'qtest',
                  '-qtest', f'unix:{self.dir}/qtest.sock']
        return a + self.extra

    def start(self):
        qtest_listener = None
        if not self.boot:
            # -qtest connects to us: listen first.
            qtest_listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            qtest_listener.bind(f'{self.dir}/qtest.sock')
            qtest_listener.listen(1)
        self.t_start = time.monotonic()
        self.proc = spawn(self.args(), f'QEMU {self.name}', stdin=subprocess.DEVNULL,
                          stdout=open(f'{self.dir}/qemu.log', 'wb'), stderr=subprocess.STDOUT)
        if self.boot:
            self._sock = self._connect(f'{self.dir}/serial.sock')
            self.console = Console(self._sock, self.name).start()
        else:
            qtest_listener.settimeout(30)
            try:
                self.qtest, _ = qtest_listener.accept()
            except socket.timeout:
                raise BenchError(f'{self.name}: QEMU did not connect its qtest socket: '
                                 f'{self.log_tail()}')
            finally:
                qtest_listener.close()
            self.qtest.settimeout(600)
            self._qtest_buf = b''
        try:
            self.qmp = QMP(f'{self.dir}/qmp.sock').connect(wait=30)
        except Exception as e:
            raise BenchError(f'{self.name}: no QMP: {e}: {self.log_tail()}')
        return self

    def _connect(self, path, wait=30.0):
        deadline = time.monotonic() + wait
        while True:
            if self.proc.poll() is not None:
                raise BenchError(f'{self.name}: QEMU exited {self.proc.returncode}: '
                                 f'{self.log_tail()}')
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(path)
                return s
            except (FileNotFoundError, ConnectionRefusedError):
                s.close()
                if time.monotonic() > deadline:
                    raise BenchError(f'{self.name}: no serial socket: {self.log_tail()}')
                time.sleep(0.01)

    def send(self, text):
        """Type text on the serial console (the Debian guest's is a root shell)."""
        self._sock.sendall(text.encode())

    def second_qmp(self):
        """A new connection to the second monitor (the caller closes it)."""
        return QMP(f'{self.dir}/qmp2.sock').connect(wait=10)

    def log_tail(self):
        try:
            with open(f'{self.dir}/qemu.log', 'rb') as f:
                return f.read()[-2000:].decode(errors='replace').strip()
        except OSError:
            return ''

    def stop(self):
        if self.qmp:
            try:
                self.qmp.raw('quit')
            except Exception:
                pass
            self.qmp.close()
            self.qmp = None
        if self.proc:
            try:
                self.proc.wait(5)
            except Exception:
                pass
            stop(self.proc)
        if self.console:
            self.console.stop()
        for s in (self._sock, self.qtest):
            if s:
                s.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    @property
    def pid(self):
        return self.proc.pid

    # ---- console -------------------------------------------------------------------

    def wait_marker(self, prefix, timeout):
        """Monotonic time the console printed a line with prefix (a
        SAMEPAGE-* marker, or "fill: " after the shell prompt); BenchError
        when the workload ended (SAMEPAGE-ERROR, -EXITED) or QEMU did first."""
        try:
            i, m = self.console.wait_line(f'{re.escape(prefix)}|SAMEPAGE-(ERROR|EXITED)',
                                          timeout, search=True,
                                          alive=lambda: self.proc.poll() is None)
        except AssertionError as e:
            raise BenchError(str(e)) from None
        if m.group(1):
            raise BenchError(f'{self.name}: {self.console.lines[i][m.start():].strip()} while '
                             f'waiting for {prefix}; '
                             f'console: {" | ".join(self.console.lines[-5:])}')
        return self.console.times[i]

    def marker_text(self, prefix):
        """The first console line with prefix, from there on; or None."""
        with self.console.cond:
            for line in self.console.lines:
                if prefix in line:
                    return line[line.find(prefix):].strip()
        return None

    # ---- memory ----------------------------------------------------------------------

    def ram_range(self):
        """(start, end) of the guest RAM mapping in QEMU (/proc/PID/maps: the
        private anonymous mapping of exactly the backend's size)."""
        r = pages.ram_range(self.pid, self.mem_mib * MiB)
        if r is None:
            raise BenchError(f'{self.name}: no {self.mem_mib} MiB mapping in /proc/{self.pid}/maps')
        return r[0], r[0] + r[1]

    def qtest_cmd(self, line):
        self.qtest.sendall(line.encode() + b'\n')
        while b'\n' not in self._qtest_buf:
            chunk = self.qtest.recv(4096)
            if not chunk:
                raise BenchError(f'{self.name}: qtest closed')
            self._qtest_buf += chunk
        reply, _, self._qtest_buf = self._qtest_buf.partition(b'\n')
        if not reply.startswith(b'OK'):
            raise BenchError(f'{self.name}: qtest {line}: {reply!r}')
        return reply.decode()

    def backend_stats(self, exact=True, bid='m0'):
        """A backend's query-ksm-stats figures; exact: with counts from a
        walk (QEMU's worker thread) that started after this call."""
        if exact:
            answer = query_ksm_stats_fresh(lambda **a: self.qmp.cmd('query-ksm-stats', **a))
        else:
            answer = self.qmp.cmd('query-ksm-stats')
        for b in answer['backends']:
            if b['id'] == bid:
                return b
        raise BenchError(f'{self.name}: backend {bid} not in query-ksm-stats')


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on now (for hostfwd)."""
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def start_all(guests, timeout=300):
    """Start every guest, then wait for each one's workload marker."""
    for g in guests:
        g.start()
    for g in guests:
        marker = {'fill': 'SAMEPAGE-FILLED', 'churn': 'SAMEPAGE-CHURNING'}.get(
            g.workload, 'SAMEPAGE-READY')
        if g.boot:
            g.wait_marker(marker, timeout)
    return guests


def stop_all_guests(guests):
    for g in guests:
        try:
            g.stop()
        except Exception as e:
            log(f'stopping {g.name}: {e}')
