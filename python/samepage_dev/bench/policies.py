"""The scan policies the merge convergence benchmark compares.

Each starts from a clean state (every KSM page broken by a safe run=2, ksmd
stopped), sets KSM going its own way, and is stopped by the benchmark.
Knobs are written only through samepage; ksmtuned, the peer being measured,
writes them itself (that is what it is).
"""
import os
import shutil
import signal
import subprocess
import tempfile
import time

from samepage_dev.bench.common import (ENV, BenchError, PeerAbsent, ksm_set, register_pid, spawn,
                                       stop, stop_pid)
from samepage_dev.procs import pid_alive

# The advisor's own defaults (mm/ksm.c), written back before each advisor
# run so that what the host had before does not leak into the comparison.
ADVISOR_DEFAULTS = dict(advisor_max_cpu=70, advisor_min_pages_to_scan=500,
                        advisor_max_pages_to_scan=30000)


class Policy:
    name = '?'
    label = '?'
    settings = ''

    def start(self, run):
        raise NotImplementedError

    def stop(self):
        ksm_set('run=0', check=False)

    def disturbed(self, sample, since_start):
        """A reason if the knobs in sample are not what this policy set (another
        process on the host changed them), else None."""
        return None


class KernelDefaults(Policy):
    name = 'defaults'
    label = 'kernel defaults'
    settings = 'pages_to_scan=100 sleep_millisecs=20 (what run=1 alone gives)'

    def start(self, run):
        ksm_set('advisor_mode=none', 'pages_to_scan=100', 'sleep_millisecs=20', 'run=1')

    def disturbed(self, s, since_start):
        if since_start < 1:
            return None
        if (s.get('pages_to_scan'), s.get('sleep_millisecs'), s.get('advisor_mode'),
                s.get('run')) != (100, 20, 0, 1):
            return (f"knobs changed: pages_to_scan={s.get('pages_to_scan')} "
                    f"sleep_millisecs={s.get('sleep_millisecs')} run={s.get('run')}")
        return None


class Ksmtuned(Policy):
    """Debian's ksmtuned, unchanged, with a private configuration bind-mounted
    over /etc/ksmtuned.conf in a mount namespace of its own (the script reads
    that path and nothing else).  Only the thresholds are changed, so that it
    engages: it starts ksmd when the memory committed to QEMU plus
    total * KSM_THRES_COEF / 100 exceeds the host's memory, and it counts only
    `qemu-system.*-enable-kvm` processes, which TCG guests are not; with
    KSM_THRES_COEF=100 it engages whatever it counts.  It is sent SIGUSR1 when
    it starts, as its documentation says to do when a guest starts, so its
    first adjustment is not KSM_MONITOR_INTERVAL (60 s) late.

    The script comes out of Debian's .deb (scripts/setup puts it under
    $SAMEPAGE_CACHE/peers/ksmtuned/): the package is never installed, so its
    units are never enabled to fight samepage's scan policy on this host."""
    name = 'ksmtuned'
    label = 'ksmtuned (Debian)'
    settings = ('KSM_THRES_COEF=100, SIGUSR1 at start; the rest default: +300 pages every '
                '60 s up to 1250, sleep 10 ms here (24 GiB)')
    script = os.path.join(ENV.cache, 'peers', 'ksmtuned', 'ksmtuned')

    def __init__(self):
        self.dir = None
        self.pid = None
        self.log_path = None

    @classmethod
    def available(cls):
        return os.access(cls.script, os.X_OK) and shutil.which('unshare') is not None

    def start(self, run):
        if not self.available():
            raise PeerAbsent(f'absent: no {self.script} (scripts/setup takes it out of '
                             "Debian's ksmtuned .deb)")
        # ksmtuned writes pages_to_scan, which the advisor refuses while on.
        ksm_set('advisor_mode=none')
        self.dir = tempfile.mkdtemp(prefix='samepage-bench-ksmtuned-')
        conf = os.path.join(self.dir, 'ksmtuned.conf')
        self.log_path = os.path.join(self.dir, 'ksmtuned.log')
        with open(conf, 'w') as f:
            f.write('# samepage bench: engage whatever the committed memory\n'
                    'KSM_THRES_COEF=100\n'
                    f'DEBUG=1\nLOGFILE={self.log_path}\n')
        pidfile = os.path.join(self.dir, 'ksmtuned.pid')
        # The script reads /etc/ksmtuned.conf if there is one and takes what that
        # leaves unset from its environment: both say the same, so a host's own
        # ksmtuned.conf (ksmtuned installed) changes nothing here.
        env = dict(os.environ, PIDFILE=pidfile, KSM_THRES_COEF='100', DEBUG='1',
                   LOGFILE=self.log_path)
        sh = (f'if [ -f /etc/ksmtuned.conf ]; then mount --bind "{conf}" /etc/ksmtuned.conf '
              f'|| exit 1; fi; exec "{self.script}"')
        # Its output goes to a file: the loop it forks keeps the descriptor.
        errfile = os.path.join(self.dir, 'stderr')
        with open(errfile, 'w') as err:
            p = spawn(['unshare', '--mount', '--propagation', 'private', 'sh', '-c', sh],
                      'ksmtuned launcher', env=env, start_new_session=True,
                      stdout=err, stderr=err)
        # The script forks its loop, writes the loop's pid and exits.
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not self.pid:
            try:
                with open(pidfile) as f:
                    self.pid = int(f.read().strip())
                register_pid(self.pid, 'ksmtuned')
            except (OSError, ValueError):
                time.sleep(0.05)
        try:
            p.wait(max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        stop(p)
        if not self.pid:
            with open(errfile) as f:
                raise BenchError(f'ksmtuned wrote no pid file: {f.read().strip()}')
        # SIGUSR1 before its trap is set would kill it, and before it waits on
        # its `sleep` would be handled and forgotten: wait for both, then
        # check in its log that it adjusted.
        while time.monotonic() < deadline and not (self._catches_usr1() and self._children()):
            time.sleep(0.02)
        for attempt in range(5):
            time.sleep(0.2)
            os.kill(self.pid, signal.SIGUSR1)
            t = time.monotonic()
            while time.monotonic() - t < 2:
                if self.decisions():
                    return
                time.sleep(0.05)
        raise BenchError('ksmtuned did not react to SIGUSR1')

    def _children(self):
        try:
            with open(f'/proc/{self.pid}/task/{self.pid}/children') as f:
                return [int(x) for x in f.read().split()]
        except OSError:
            return []

    def _catches_usr1(self):
        try:
            with open(f'/proc/{self.pid}/status') as f:
                for line in f:
                    if line.startswith('SigCgt:'):
                        return bool(int(line.split()[1], 16) & (1 << (signal.SIGUSR1 - 1)))
        except OSError:
            pass
        return False

    def stop(self):
        if self.pid:
            # Its loop waits on a `sleep`: stop that child too, by its PID.
            kids = self._children()
            stop_pid(self.pid)
            for k in kids:
                if pid_alive(k):
                    stop_pid(k, timeout=1.0)
            self.pid = None
        ksm_set('run=0', check=False)

    def decisions(self):
        """What ksmtuned logged (its KSMCTL start lines)."""
        try:
            with open(self.log_path) as f:
                return [l.strip() for l in f if 'KSMCTL' in l or 'stop ksm' in l]
        except (OSError, TypeError):
            return []

    def cleanup(self):
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def disturbed(self, s, since_start):
        if since_start < 2:
            return None
        if s.get('advisor_mode') != 0 or s.get('sleep_millisecs') != 10 or s.get('run') != 1:
            return (f"knobs not ksmtuned's: sleep_millisecs={s.get('sleep_millisecs')} "
                    f"advisor_mode={s.get('advisor_mode')} run={s.get('run')}")
        return None


class Advisor(Policy):
    """The kernel's scan-time advisor (Linux 6.8+) with a target scan time and
    otherwise its defaults."""
    name = 'advisor'
    label = 'kernel advisor'

    def __init__(self, target_scan_time):
        self.target = target_scan_time
        self.settings = (f'advisor_mode=scan-time advisor_target_scan_time={target_scan_time}; '
                         'max_cpu 70, min_pages 500, max_pages 30000 (defaults)')

    def start(self, run):
        # Switching the mode on resets the advisor (pages_to_scan = its min).
        ksm_set('advisor_mode=none')
        ksm_set('advisor_mode=scan-time', f'advisor_target_scan_time={self.target}',
                *[f'{k}={v}' for k, v in ADVISOR_DEFAULTS.items()], 'run=1')

    def stop(self):
        ksm_set('run=0', check=False)
        ksm_set('advisor_mode=none', check=False)

    def disturbed(self, s, since_start):
        if since_start < 1:
            return None
        if s.get('advisor_mode') != 1 or s.get('run') != 1:
            return f"advisor_mode={s.get('advisor_mode')} run={s.get('run')}"
        return None


class Samepage(Policy):
    """samepage's policy: `samepage tune` (policy/tune), what the libvirt hook
    runs.  See samepage tune --help and policy/tune/include/ksm/ksm-tune.h."""
    name = 'samepage'
    label = 'samepage (samepage tune)'

    def __init__(self, args=()):
        self.args = list(args)
        self.proc = None
        self.settings = 'samepage tune ' + ' '.join(self.args)
        self.log_path = None

    def start(self, run):
        ksm_set('advisor_mode=none')
        fd, self.log_path = tempfile.mkstemp(prefix='samepage-bench-tune-', suffix='.log')
        self.proc = spawn([ENV.samepage, 'tune', *self.args], 'samepage tune',
                          stdout=fd, stderr=subprocess.STDOUT)
        os.close(fd)
        time.sleep(0.2)
        if self.proc.poll() is not None:
            with open(self.log_path) as f:
                raise BenchError(f'samepage tune exited {self.proc.returncode}: {f.read().strip()}')

    def stop(self):
        if self.proc:
            stop(self.proc, sig=signal.SIGTERM)
            self.proc = None
        ksm_set('run=0', check=False)
        ksm_set('advisor_mode=none', check=False)

    def disturbed(self, s, since_start):
        if since_start < 2:
            return None
        if self.proc and self.proc.poll() is not None:
            return f'samepage tune exited {self.proc.returncode}'
        # Its sleep_millisecs is 20 while converging and 20..1000 once steady.
        sleep = s.get('sleep_millisecs')
        if s.get('advisor_mode') not in (None, 0) or sleep is None or not 20 <= sleep <= 1000:
            return (f"knobs not samepage tune's: sleep_millisecs={sleep} "
                    f"advisor_mode={s.get('advisor_mode')}")
        return None

    def decisions(self):
        try:
            with open(self.log_path) as f:
                return [l.rstrip() for l in f]
        except (OSError, TypeError):
            return []

    def cleanup(self):
        if self.log_path and os.path.exists(self.log_path):
            os.unlink(self.log_path)
