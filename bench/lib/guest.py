"""The project's test guests (scripts/make-guest: the busybox one, or with
image='debian' the real Debian 12 system) on the built QEMU, driven without
QEMU's python package: a serial socket read by a thread that timestamps the
console markers, and a QMP socket (bench/lib/qmp.py)."""
import shutil
import socket
import subprocess
import tempfile
import threading
import time

from common import ENV, MiB, BenchError, log, spawn, stop
from qmp import QMP


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
        self.markers = []            # (monotonic time, line)
        self.console = []            # every console line (kept for errors)
        self._cv = threading.Condition()
        self._reader = None
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
            self._reader = threading.Thread(target=self._read_console, daemon=True)
            self._reader.start()
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
        for s in (self._sock, self.qtest):
            if s:
                s.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    @property
    def pid(self):
        return self.proc.pid

    # ---- console -------------------------------------------------------------------

    def _read_console(self):
        buf = b''
        while True:
            try:
                chunk = self._sock.recv(65536)
            except OSError:
                chunk = b''
            now = time.monotonic()
            if not chunk:
                with self._cv:
                    self.markers.append((now, '<EOF>'))
                    self._cv.notify_all()
                return
            buf += chunk
            while b'\n' in buf:
                line, _, buf = buf.partition(b'\n')
                text = line.decode(errors='replace').strip()
                with self._cv:
                    self.console.append(text)
                    if 'SAMEPAGE-' in text:
                        self.markers.append((now, text[text.find('SAMEPAGE-'):]))
                        self._cv.notify_all()
                    elif 'fill: ' in text:   # after the shell prompt, on the same line
                        self.markers.append((now, text[text.find('fill: '):]))

    def wait_marker(self, prefix, timeout):
        """Monotonic time the console printed a line starting with prefix."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while True:
                for t, text in self.markers:
                    if text.startswith(prefix):
                        return t
                    if text.startswith(('SAMEPAGE-ERROR', 'SAMEPAGE-EXITED', '<EOF>')):
                        raise BenchError(f'{self.name}: {text} while waiting for {prefix}; '
                                         f'console: {" | ".join(self.console[-5:])}')
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BenchError(f'{self.name}: no {prefix} within {timeout:.0f} s; console: '
                                     f'{" | ".join(self.console[-5:])}')
                self._cv.wait(min(left, 1.0))

    def marker_text(self, prefix):
        with self._cv:
            for _, text in self.markers:
                if text.startswith(prefix):
                    return text
        return None

    # ---- memory ----------------------------------------------------------------------

    def ram_range(self):
        """(start, end) of the guest RAM mapping in QEMU (/proc/PID/maps: the
        private anonymous mapping of exactly the backend's size)."""
        size = self.mem_mib * MiB
        found = []
        with open(f'/proc/{self.pid}/maps') as f:
            for line in f:
                parts = line.split()
                a, b = (int(x, 16) for x in parts[0].split('-'))
                if len(parts) < 6 and b - a >= size:
                    found.append((a, b))
        exact = [r for r in found if r[1] - r[0] == size]
        if not (exact or found):
            raise BenchError(f'{self.name}: no {self.mem_mib} MiB mapping in /proc/{self.pid}/maps')
        return (exact or found)[0]

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
        answer = self.qmp.cmd('query-ksm-stats')
        t0 = time.monotonic()
        while exact:
            elapsed = int((time.monotonic() - t0) * 1000)
            answer = self.qmp.cmd('query-ksm-stats', exact=True, **{'max-age': elapsed})
            if answer['count'].get('age', elapsed + 1) <= elapsed:
                break
            time.sleep(0.002)
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
