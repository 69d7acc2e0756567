#!/usr/bin/python3
"""End-to-end test of the samepage libvirt hook with a real libvirtd.

The test starts its own virtlogd and libvirtd (no systemd here), installs the
hook with libvirt-hooks/install before libvirtd starts (libvirtd looks for
hooks only then), defines TCG guests that boot the project's guest image
directly with the project's QEMU as <emulator>, and checks every case of
issue 6.  On the way out it stops the daemons it started (by pid), undefines
its guests, removes the hook it installed, puts back /etc/samepage/ksm.conf
and every KSM knob.

Exit 77 (skip) with the reason when something it needs is missing: root,
KSM, libvirtd, the built QEMU (scripts/build-qemu), the guest image
(scripts/make-guest), or when a libvirtd is already running (it is not ours
to restart).

    /usr/bin/python3 tests/libvirt/test_ksm_hook.py [-k PATTERN]
    SAMEPAGE_QEMU_7_2=/path/qemu-system-x86_64   use that QEMU instead
"""
import contextlib
import fcntl
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import uuid as uuidlib

from samepage_dev import cli
from samepage_dev.cli import host_stats
from samepage_dev.knobs import ksm_knobs
from samepage_dev.pages import independent_range_count, ram_range
from samepage_dev.paths import BUILD, PAGE, ROOT, cli_path, find_guest, find_qemu
from samepage_dev.procs import pid_alive, read_text, run, stop_pid
from samepage_dev.qmp import query_ksm_stats_fresh
from samepage_dev.testing import unittest_main
from samepage_dev.testing.libvirtd import (URI, LibvirtDaemons, guest_domain_xml,
                                           running_elsewhere, virsh)
from samepage_dev.waits import wait_for

HOOK_BIN = os.path.join(BUILD, 'libvirt-hooks', 'samepage-ksm')
INSTALLER = os.path.join(ROOT, 'libvirt-hooks', 'install')
INSTALLED_SAMEPAGE_CLI = '/usr/local/bin/samepage'
HOOK_PATH = '/etc/libvirt/hooks/qemu.d/samepage-ksm'
# The installer links it as libvirt's daemon hook too (libvirtd's start).
DAEMON_HOOK_PATH = '/etc/libvirt/hooks/daemon.d/samepage-ksm'
CONF_PATH = '/etc/samepage/ksm.conf'
STATE_DIR = '/run/samepage/hook'
LOCK_PATH = '/run/samepage/ksm.lock'
OUTCOME = os.path.join(STATE_DIR, 'last-unmerge.json')
TUNE_PIDFILE = os.path.join(STATE_DIR, 'tune.pid')   # scan=tune: the hook's samepage tune
PREFIX = 'samepage-hooktest-'
NS = 'https://samepage.invalid/xmlns/ksm/1'

LOCK_TIMEOUT_S = 5
# A hook invocation may wait LOCK_TIMEOUT_S for the lock; everything else it
# does takes milliseconds.  Beyond this, libvirtd was kept waiting.
HOOK_BOUND_MS = (LOCK_TIMEOUT_S + 2) * 1000
FILL_MIB = 64
GUEST_MIB = 192

HOST = None   # the LibvirtHost of this run


def log(msg):
    print(f'# {msg}', file=sys.stderr, flush=True)


def remove_if_ours(directory):
    """rmdir a directory the test made, after the hook's outcome file."""
    if directory == STATE_DIR:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(OUTCOME)
    with contextlib.suppress(OSError):
        os.rmdir(directory)


def prerequisites():
    """None when the test can run, else why not."""
    if os.geteuid() != 0:
        return 'needs root (libvirtd, KSM knobs, /etc/libvirt/hooks)'
    if not os.path.exists('/sys/kernel/mm/ksm/run'):
        return 'this kernel has no KSM'
    for prog in ('libvirtd', 'virtlogd', 'virsh'):
        if not shutil.which(prog) and not os.path.exists(f'/usr/sbin/{prog}'):
            return f'{prog} is not installed (scripts/setup)'
    for path in (HOOK_BIN, cli_path()):
        if not os.access(path, os.X_OK):
            return f'{path} is not built (ninja -C build)'
    qemu = find_qemu('7.2')
    if not qemu:
        return 'the project QEMU is not built yet (scripts/build-qemu --print)'
    guest = find_guest()
    if not guest:
        return 'the guest image is not built yet (scripts/make-guest --print)'
    elsewhere = running_elsewhere()
    if elsewhere:
        return elsewhere
    if os.path.isdir(STATE_DIR) and any(f.endswith('.state') for f in os.listdir(STATE_DIR)):
        return f'{STATE_DIR} holds the hook state of running guests: not a test host'
    return None


class LibvirtHost:
    """The daemons, hook, config and KSM knobs of one test run."""

    def __init__(self):
        self.stack = contextlib.ExitStack()
        self.qemu = os.path.realpath(find_qemu('7.2')['qemu'])
        guest = find_guest()
        self.work = tempfile.mkdtemp(prefix='samepage-libvirt-')
        # libvirt runs QEMU as libvirt-qemu and relabels the kernel and initrd
        # it boots: give it copies in a directory it can read, not the cache.
        os.chmod(self.work, 0o755)
        self.kernel = os.path.join(self.work, 'vmlinuz')
        self.initrd = os.path.join(self.work, 'initramfs.img')
        shutil.copy(guest['kernel'], self.kernel)
        shutil.copy(guest['initrd'], self.initrd)
        self.hook_log = os.path.join(self.work, 'hook.log')
        self.daemons = LibvirtDaemons(self.work, self.stack,
                                      log_filters='1:hooks 1:qemu.qemu_process 3:*')
        self.detached = set()

    # --- setup and teardown ---

    def start(self):
        st = self.stack
        st.callback(shutil.rmtree, self.work, ignore_errors=True)
        st.enter_context(ksm_knobs())
        # Directories the installer or the hook create: removed again if new.
        # (/etc/libvirt/hooks before its qemu.d: the stack removes in reverse.)
        for d in (os.path.dirname(CONF_PATH), os.path.dirname(os.path.dirname(HOOK_PATH)),
                  os.path.dirname(HOOK_PATH), os.path.dirname(DAEMON_HOOK_PATH), STATE_DIR):
            if not os.path.isdir(d):
                st.callback(remove_if_ours, d)
        self._backup(CONF_PATH)
        self._backup(HOOK_PATH)
        self._backup_link(DAEMON_HOOK_PATH)
        # The installer puts samepage where the default config's scan=tune
        # expects it, if nothing is there.
        self._backup(INSTALLED_SAMEPAGE_CLI)
        run([INSTALLER, HOOK_BIN])
        self.write_config()
        self.daemons.start()
        st.callback(self._cleanup_domains)

    def close(self):
        self.stack.close()

    def _backup(self, path):
        """Put path back as it was (or remove it) at the end."""
        saved = mode = None
        if os.path.exists(path):
            with open(path, 'rb') as f:
                saved = f.read()
            mode = os.stat(path).st_mode & 0o7777

        def restore():
            if saved is None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
            else:
                with open(path, 'wb') as f:
                    f.write(saved)
                os.chmod(path, mode)
        self.stack.callback(restore)

    def _backup_link(self, path):
        """Put the symlink (or file) path back as it was, or remove it."""
        target = os.readlink(path) if os.path.islink(path) else None
        if target is None:
            self._backup(path)
            return

        def restore():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            os.symlink(target, path)
        self.stack.callback(restore)

    def write_config(self, **extra):
        conf = {
            # scan=tune (the default): the hook runs samepage's policy, this
            # build's samepage tune; pages_to_scan is the rate until it starts.
            'policy': 'strict', 'scan': 'tune', 'samepage': os.path.abspath(cli_path()),
            'pages_to_scan': 4000,
            'sleep_millisecs': 10, 'reserve_mib': 256, 'unmerge_deadline_s': 120,
            'lock_timeout_s': LOCK_TIMEOUT_S, 'log_level': 'debug', 'log_file': self.hook_log,
        }
        conf.update(extra)
        os.makedirs(os.path.dirname(CONF_PATH), exist_ok=True)
        with open(CONF_PATH, 'w') as f:
            f.write('[ksm]\n' + ''.join(f'{k}={v}\n' for k, v in conf.items()))

    def _cleanup_domains(self):
        for name in self.domains():
            virsh('destroy', name, check=False)
            virsh('undefine', name, check=False)
        self.wait_detached()

    def domains(self):
        out = virsh('list', '--all', '--name', check=False).stdout
        return [n for n in out.splitlines() if n.startswith(PREFIX)]

    # --- guests ---

    def define(self, name, merge=None, group=None, nosharepages=False, workload='fill',
               mib=GUEST_MIB, seed=7):
        uuid = str(uuidlib.uuid4())
        attrs = ''.join(f' {k}="{v}"' for k, v in (('merge', merge), ('group', group)) if v)
        policy = f'<ksm:policy xmlns:ksm="{NS}"{attrs}/>' if attrs else ''
        console = os.path.join(self.work, f'{uuid}.console')
        xml = guest_domain_xml(
            xml_escape(name), uuid, mib, policy, self.kernel, self.initrd,
            f'console=ttyS0 quiet panic=-1 samepage.workload={workload} samepage.mib={FILL_MIB} '
            f'samepage.seed={seed}', self.qemu, console,
            '<memoryBacking><nosharepages/></memoryBacking>' if nosharepages else '')
        path = os.path.join(self.work, f'{uuid}.xml')
        with open(path, 'w') as f:
            f.write(xml)
        virsh('define', path)
        return Guest(self, name, uuid, console)

    # --- what the hook did ---

    def hook_log_text(self):
        return read_text(self.hook_log)

    def wait_detached(self, timeout=180):
        """Wait until every detached child the hook reported has exited."""
        for pid in re.findall(r'detached child (\d+)', self.hook_log_text()):
            self.detached.add(int(pid))
        deadline = time.monotonic() + timeout
        for pid in sorted(self.detached):
            while pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if pid_alive(pid):
                raise AssertionError(f'detached hook child {pid} still runs after {timeout}s')

    def clear_outcome(self):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(OUTCOME)

    def wait_outcome(self, timeout=180):
        text = wait_for(lambda: read_text(OUTCOME), timeout,
                        what='the detached unmerge outcome')
        self.wait_detached()
        return json.loads(text)

    def wait_decision(self, since, timeout=180):
        """Wait for the detached child's last-guest decision logged after
        offset since: an unmerge outcome, or KSM found clean already (someone
        else may have unmerged meanwhile: KSM is global)."""
        pattern = re.compile(r'unmerge (done|refused|interrupted|failed)|already clean')
        wait_for(lambda: pattern.search(self.hook_log_text()[since:]), timeout,
                 what='the last-guest decision')
        self.wait_detached()

    def state_files(self):
        if not os.path.isdir(STATE_DIR):
            return {}
        out = {}
        for f in os.listdir(STATE_DIR):
            if f.endswith('.state'):
                with open(os.path.join(STATE_DIR, f)) as fh:
                    out[f[:-len('.state')]] = dict(
                        line.split('=', 1) for line in fh.read().splitlines() if '=' in line)
        return out

    def hook_durations(self):
        return [int(ms) for ms in re.findall(r': exit \d+ after (\d+) ms', self.hook_log_text())]


def xml_escape(text):
    return (text.replace('&', '&amp;').replace('<', '&lt;').replace('>', '&gt;')
            .replace("'", '&apos;').replace('"', '&quot;'))


class Guest:
    def __init__(self, host, name, uuid, console):
        self.host, self.name, self.uuid, self.console = host, name, uuid, console

    def start(self, check=True):
        # The hook refuses a start while another samepage process holds the
        # host lock past its bound, and says to retry: other suites on a
        # shared host may hold it for a moment.
        for _ in range(6):
            r = virsh('start', self.name, check=False, timeout=180)
            if r.returncode == 0 or 'ksm.lock' not in r.stderr:
                break
            log(f'{self.name}: host lock busy, retrying the start')
            time.sleep(5)
        if check and r.returncode != 0:
            raise AssertionError(f'virsh start {self.name} exited {r.returncode}:\n{r.stderr}')
        return r

    def wait_console(self, marker, timeout=300):
        name = getattr(self, 'name', self.console)

        def seen():
            try:
                with open(self.console, 'rb') as f:
                    return marker.encode() in f.read()
            except FileNotFoundError:
                return False
        wait_for(seen, timeout, interval=0.5, what=f'{marker} from {name}')

    def destroy(self):
        virsh('destroy', self.name, timeout=180)

    def undefine(self):
        virsh('undefine', self.name, check=False)

    def qemu_pid(self):
        for entry in os.listdir('/proc'):
            if not entry.isdigit():
                continue
            try:
                with open(f'/proc/{entry}/cmdline', 'rb') as f:
                    args = f.read().split(b'\0')
            except OSError:
                continue
            if self.uuid.encode() in args:
                return int(entry)
        return 0


def tune_pid():
    """The hook's samepage tune (pid from its tune.pid, if that process runs
    `samepage tune`), else 0."""
    try:
        pid = int(read_text(TUNE_PIDFILE).split()[0])
        with open(f'/proc/{pid}/cmdline', 'rb') as f:
            args = f.read().split(b'\0')
    except (OSError, ValueError, IndexError):
        return 0
    return pid if args[1:2] == [b'tune'] else 0


def stop_leftover_tune():
    """A samepage tune the hook started and no last stop ended (a failed test)."""
    pid = tune_pid()
    if pid:
        log(f'stopping a leftover samepage tune (pid {pid})')
        stop_pid(pid)


def merging_pages(pid):
    """ksm_merging_pages of one process, as samepage stats reports it (-1: unknown)."""
    for p in host_stats().get('processes', []):
        if p.get('pid') == pid:
            return p.get('ksm_stat', {}).get('ksm_merging_pages', -1)
    return -1


class DirectQemu:
    """The project's QEMU started by the test itself (not a libvirt guest),
    filling FILL_MIB with the same pattern as the libvirt guests."""

    def __init__(self, host, name):
        self.console = os.path.join(host.work, f'{name}.console')
        self.proc = subprocess.Popen(
            [host.qemu, '-nodefaults', '-accel', 'tcg', '-m', str(GUEST_MIB),
             '-display', 'none', '-no-reboot', '-name', PREFIX + name,
             '-serial', f'file:{self.console}', '-kernel', host.kernel, '-initrd', host.initrd,
             '-append', f'console=ttyS0 quiet panic=-1 samepage.workload=fill '
                        f'samepage.mib={FILL_MIB} samepage.seed=7'],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def wait_console(self, marker, timeout=300):
        Guest.wait_console(self, marker, timeout)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def setUpModule():
    global HOST
    HOST = LibvirtHost()
    try:
        HOST.start()
    except BaseException:
        HOST.close()
        raise


def tearDownModule():
    try:
        # Keep the hook's log for whoever reads a failure.
        logs = os.path.join(BUILD, 'meson-logs')
        if os.path.isdir(logs):
            with open(os.path.join(logs, 'libvirt-hook.log'), 'w') as f:
                f.write(HOST.hook_log_text())
        durations = HOST.hook_durations()
        if durations:
            log(f'hook invocations: {len(durations)}, longest {max(durations)} ms '
                f'(bound {HOOK_BOUND_MS} ms)')
    finally:
        stop_leftover_tune()
        HOST.close()


class HookTest(unittest.TestCase):
    def setUp(self):
        self.guests = []
        self.log_start = len(HOST.hook_log_text())
        HOST.write_config()

    def tearDown(self):
        for g in self.guests:
            virsh('destroy', g.name, check=False)
            g.undefine()
        HOST.wait_detached()
        HOST.write_config()

    def new(self, suffix, **kw):
        g = HOST.define(PREFIX + suffix, **kw)
        self.guests.append(g)
        return g

    def new_log(self):
        return HOST.hook_log_text()[self.log_start:]

    def assert_hooks_bounded(self):
        durations = HOST.hook_durations()
        self.assertTrue(durations, 'the hook logged no invocation')
        self.assertLess(max(durations), HOOK_BOUND_MS)

    def start_merging_pair(self, **kw):
        a = self.new('a', merge='yes', **kw)
        # A hostile name: spaces, quotes, non-ASCII.
        b = self.new("b 'q' \"d\" é", **kw)
        a.start()
        b.start()
        a.wait_console('SAMEPAGE-FILLED')
        b.wait_console('SAMEPAGE-FILLED')
        # The hook saw to ksmd at the first prepare (read from its log: the
        # knob itself is global, and other suites may stop ksmd meanwhile).
        self.assertRegex(self.new_log(), r'ksmd (started|already running) for 1 mergeable')
        # Two guests filled with the same seed: FILL_MIB of pages to share.
        # Counted per guest process: the host's counters include whatever
        # else on this host uses KSM meanwhile.
        want = FILL_MIB * 1024 * 1024 // PAGE // 2
        for g in (a, b):
            wait_for(lambda g=g: merging_pages(g.qemu_pid()) >= want, 300, interval=1,
                     what=f'{g.name} with >= {want} merging pages')
        return a, b

    def test_1_merge_then_unmerge_when_last_leaves(self):
        a, b = self.start_merging_pair()
        states = HOST.state_files()
        self.assertIn(a.uuid, states)
        self.assertIn(b.uuid, states)
        # samepage's policy runs while they do: started once, told of b.
        tune = tune_pid()
        self.assertGreater(tune, 0, 'no samepage tune running for the guests')
        self.assertIn(f'samepage tune started (pid {tune})', self.new_log())
        self.assertIn(f'samepage tune (pid {tune}) told to converge again', self.new_log())
        self.assertEqual(states[a.uuid]['phase'], 'started')
        self.assertEqual(int(states[b.uuid]['qemu_pid']), b.qemu_pid())

        HOST.clear_outcome()
        a.destroy()
        wait_for(lambda: 'still running: no unmerge' in self.new_log(), 30,
                 what='the hook deciding on the first stop')
        time.sleep(2)
        self.assertFalse(os.path.exists(OUTCOME), 'an unmerge ran while a guest still merges')

        b.destroy()
        out = HOST.wait_outcome()
        self.assertEqual(out['result'], 'done', out)
        self.assertEqual(out['after']['run'], 2)
        self.assertEqual(out['after']['pages_sharing'], 0)
        text = self.new_log()
        self.assertIn('last mergeable guest gone', text)
        self.assertIn(f'samepage tune (pid {tune}) stopped', text)
        self.assertFalse(os.path.exists(f'/proc/{tune}/cmdline') and tune_pid() == tune,
                         'samepage tune still runs')
        self.assertIn('unmerge done', text)
        self.assertIn('"event":"ksm-unmerge"', text)
        if HOST.daemons.syslogd:
            syslog = read_text(HOST.daemons.syslog)
            self.assertIn('samepage-ksm', syslog)
            self.assertIn('unmerge done', syslog)
        self.assertEqual(HOST.state_files(), {})
        self.assert_hooks_bounded()

    def test_2_no_headroom_stops_ksmd(self):
        # Pages that stay merged after the last libvirt guest is gone: two
        # plain QEMUs of the test (a guest's own pages are freed by its exit,
        # and ksmd forgets them within milliseconds).
        HOST.write_config(reserve_mib=10_000_000)   # ~10 TB must stay free
        plain = [DirectQemu(HOST, f'plain-{i}') for i in range(2)]
        self.addCleanup(lambda: [q.stop() for q in plain])
        a = self.new('a', merge='yes', workload='idle')
        a.start()
        self.assertRegex(self.new_log(), r'ksmd (started|already running) for 1 mergeable')
        for q in plain:
            q.wait_console('SAMEPAGE-FILLED')
        want = FILL_MIB * 1024 * 1024 // PAGE // 2
        for q in plain:
            wait_for(lambda q=q: merging_pages(q.proc.pid) >= want, 300, interval=1,
                     what=f'{q.console} with >= {want} merging pages')
        HOST.clear_outcome()
        a.destroy()
        out = HOST.wait_outcome()
        self.assertEqual(out['result'], 'refused', out)
        self.assertTrue(out['stopped_ksmd'])
        self.assertEqual(out['after']['run'], 0)
        self.assertGreater(out['after']['pages_sharing'], 0, 'pages were unmerged anyway')
        text = self.new_log()
        self.assertIn('unmerge refused', text)
        self.assertIn('reserve', text)
        self.assertIn('ksmd stopped', text)

    def test_3_contradictory_policy_refused(self):
        g = self.new('contra-yes', merge='yes', nosharepages=True, workload='idle')
        r = g.start(check=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn('contradictory KSM policy', r.stderr)
        self.assertIn('merge="yes"', r.stderr)
        self.assertIn('nosharepages', r.stderr)
        g2 = self.new('contra-no', merge='no', workload='idle')
        r = g2.start(check=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn('merge="no"', r.stderr)
        self.assertIn('nosharepages', r.stderr)
        self.assertNotIn(g.uuid, HOST.state_files())
        # Agreeing: no merging wanted, and libvirt told so.
        g3 = self.new('private', merge='no', nosharepages=True, workload='idle')
        g3.start()
        self.assertNotIn(g3.uuid, HOST.state_files())
        g3.destroy()

    def test_4_trust_group_conflict_refused(self):
        a = self.new('tenant-a', group='tenant-a', workload='idle')
        b = self.new('tenant-b', group='tenant-b', workload='idle')
        a.start()
        r = b.start(check=False)
        self.assertNotEqual(r.returncode, 0, 'a guest of another trust group started')
        self.assertIn('tenant-b', r.stderr)
        self.assertIn('policy=strict', r.stderr)
        # The client starting b learns nothing of the other tenant (issue 17,
        # finding 8): the host's log alone names it.
        self.assertNotIn(a.name, r.stderr)
        self.assertNotIn('tenant-a', r.stderr)
        self.assertIn(f"'{a.name}' (group 'tenant-a')", self.new_log())
        # permissive lets it start, with a warning.
        HOST.write_config(policy='permissive')
        b.start()
        self.assertIn('allowed by policy=permissive', self.new_log())
        a.destroy()
        b.destroy()
        HOST.wait_decision(self.log_start)

    def test_5_parallel_start_stop_cycles(self):
        guests = [self.new(f'cycle-{i}', workload='idle', mib=128) for i in range(3)]
        errors = []

        def each(action):
            threads = [threading.Thread(target=lambda g=g: _try(action, g, errors))
                       for g in guests]
            for t in threads:
                t.start()
            for t in threads:
                t.join()

        HOST.clear_outcome()
        for cycle in range(10):
            each(lambda g: g.start())
            each(lambda g: g.destroy())
            self.assertEqual(errors, [], f'cycle {cycle}')
        HOST.wait_detached()
        wait_for(lambda: os.path.exists(OUTCOME), 60, what='an unmerge outcome')
        HOST.wait_detached()

        self.assertEqual(HOST.state_files(), {}, 'state left behind')
        with open(LOCK_PATH, 'a') as f:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)   # raises if held
            fcntl.flock(f, fcntl.LOCK_UN)
        text = self.new_log()
        self.assertNotIn('start refused', text)
        self.assertNotIn('gave up', text)
        self.assertEqual(text.count('prepare: mergeable'), 30)
        # The hook's last word on KSM is a clean host, not a running ksmd.
        # (Read from its log, not from the knobs: KSM is global, and other
        # test suites of this project may use it meanwhile.)
        last_start = text.rfind('ksmd started')
        last_clean = max(text.rfind(m) for m in ('unmerge done', 'unmerge refused',
                                                  'already clean'))
        self.assertGreater(last_clean, last_start, 'ksmd left running with no guest')
        out = json.loads(read_text(OUTCOME))
        self.assertIn(out['result'], ('done', 'refused'))
        self.assertIn(out['after']['run'], (0, 2))
        self.assert_hooks_bounded()

    def test_6_reconnect_after_libvirtd_restart(self):
        a, b = self.start_merging_pair()
        HOST.daemons.stop_libvirtd()
        # The worst case: the hook's state is gone while libvirtd is down.
        for u in (a.uuid, b.uuid):
            os.unlink(os.path.join(STATE_DIR, f'{u}.state'))
        HOST.daemons.start_libvirtd()
        wait_for(lambda: {a.uuid, b.uuid} <= set(HOST.state_files()), 60,
                 what='reconnect rebuilding the state')
        states = HOST.state_files()
        for g in (a, b):
            self.assertEqual(states[g.uuid]['phase'], 'reconnected')
            self.assertEqual(int(states[g.uuid]['qemu_pid']), g.qemu_pid())
        self.assertIn('state rebuilt', self.new_log())

        HOST.clear_outcome()
        a.destroy()
        wait_for(lambda: 'still running: no unmerge' in self.new_log(), 30,
                 what='the hook deciding on the first stop')
        time.sleep(2)
        self.assertFalse(os.path.exists(OUTCOME))
        b.destroy()
        out = HOST.wait_outcome()
        self.assertEqual(out['result'], 'done', out)

    def test_7_cli_unmerge_domain(self):
        a, b = self.start_merging_pair()
        cmds = virsh('qemu-monitor-command', a.name, '{"execute":"query-commands"}').stdout
        if '"ksm-unmerge"' not in cmds:
            self.skipTest("this QEMU has no ksm-unmerge yet (qemu-backend)")
        HOST.clear_outcome()
        pid = a.qemu_pid()
        ram = ram_range(pid, GUEST_MIB * 1024 * 1024)
        self.assertIsNotNone(ram, "the guest's RAM mapping")
        before = independent_range_count(pid, *ram)
        self.assertGreater(before['ksm'], 0, before)
        r = cli.samepage('unmerge', '--domain', a.name, '--json', check=False, timeout=300)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        out = json.loads(r.stdout)
        self.assertEqual(out['result'], 'done', out)
        self.assertEqual(out['pid'], pid)
        # Exactly: no page of the guest's RAM is a KSM page any more
        # (pagemap + kpageflags, read here independently of libksm and QEMU).
        after = independent_range_count(pid, *ram)
        self.assertEqual(after['ksm'], 0, after)
        # QEMU's own view: the backend is out of KSM for good, as read back
        # from the kernel by an exact count (a walk in QEMU's worker thread:
        # the answer carries the latest walk's figures; the default answer
        # cannot prove merge=off of a stock backend under mem-merge=on).
        stats = query_ksm_stats_fresh(lambda **a_: json.loads(virsh(
            'qemu-monitor-command', a.name,
            json.dumps({'execute': 'query-ksm-stats', 'arguments': a_})).stdout)['return'])
        backend = {x['id']: x for x in stats['backends']}['pc.ram']
        self.assertFalse(backend['merge'])
        self.assertFalse(backend['mergeable'])
        # (out's merging_pages_after lags: the kernel's ksm_merging_pages
        # drops when ksmd next passes over the process, not at the unmerge.)
        # One guest, not the host: no host-wide unmerge happened.
        self.assertFalse(os.path.exists(OUTCOME))
        HOST.clear_outcome()
        a.destroy()
        b.destroy()
        HOST.wait_decision(self.log_start)

    def test_8_option_like_domain_name(self):
        # Issue 17, finding 1: "--check-config" is a valid domain name; the
        # hook used to read it as its option and record nothing.
        g = HOST.define('--check-config', merge='yes', group='tenant-a', workload='idle')
        g.name = g.uuid   # virsh would read the name as an option: use the UUID
        self.guests.append(g)
        g.start()
        states = HOST.state_files()
        self.assertIn(g.uuid, states)
        self.assertEqual(states[g.uuid]['name'], '--check-config')
        self.assertEqual(states[g.uuid]['group'], 'tenant-a')
        other = self.new('optname-b', group='tenant-b', workload='idle')
        r = other.start(check=False)
        self.assertNotEqual(r.returncode, 0, 'a guest of another trust group started')
        g.destroy()
        HOST.wait_decision(self.log_start)

    def test_9_decoy_with_guest_uuid(self):
        # Issue 17, finding 2: an unprivileged user starts a process carrying
        # a guest's UUID (ps shows it) before the guest.  The hook takes the
        # guest's QEMU from libvirt's pid file, not from the decoy; the decoy
        # exiting prunes nothing.
        a = self.new('decoy-a', group='tenant-a', workload='idle')
        b = self.new('decoy-b', group='tenant-b', workload='idle')
        decoy = subprocess.Popen(
            ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups',
             '/usr/bin/python3', '-c', 'import time; time.sleep(600)', '-uuid', a.uuid],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for(lambda: a.uuid in read_text(f'/proc/{decoy.pid}/cmdline')
                     .replace('\0', ' '), 10, what='the decoy')
            a.start()
            with open(f'/run/libvirt/qemu/{a.name}.pid') as f:
                qemu = int(f.read().strip())
            self.assertNotEqual(qemu, decoy.pid)
            self.assertEqual(int(HOST.state_files()[a.uuid]['qemu_pid']), qemu)
        finally:
            decoy.kill()
            decoy.wait()
        r = b.start(check=False)
        self.assertNotEqual(r.returncode, 0, 'the decoy made the hook forget a running guest')
        self.assertIn(a.uuid, HOST.state_files())
        a.destroy()
        HOST.wait_decision(self.log_start)

    def test_10_incoming_migration_checked(self):
        # Issue 16, item 5.  libvirt runs the hook on the destination as NAME
        # migrate begin - (the domain XML libvirt formats for the migration
        # on stdin) before anything else of the incoming migration.  This
        # host is source and destination at once: libvirt refuses a
        # migration to the same host, but only after the hook ran (its check
        # of the migration cookie follows the hook in
        # qemuMigrationDstPrepareAny), so every decision of the hook is seen
        # through a real libvirtd and virsh; an accepted migration ends at
        # libvirt's same-host error instead of moving the guest.
        g = self.new('migrate', merge='yes', group='tenant-a', workload='idle')
        g.start()
        pid = g.qemu_pid()
        self.assertGreater(pid, 0)
        states = HOST.state_files()
        self.assertIn(g.uuid, states)

        def migrate():
            since = len(HOST.hook_log_text())
            r = virsh('migrate', '--live', g.name, URI, check=False, timeout=180)
            self.assertNotEqual(r.returncode, 0, 'a migration to the same host succeeded')
            return r, HOST.hook_log_text()[since:]

        # Fits: the guest's GUEST_MIB and the margin against this host's
        # MemAvailable minus 256 MiB.
        r, text = migrate()
        self.assertIn(f"incoming migration: the guest's {GUEST_MIB} MiB (+ 256 MiB margin) "
                      'fit the headroom of', text)
        self.assertNotIn('refused', text)
        self.assertNotIn('samepage-ksm', r.stderr)
        log(f'accepted by the hook, then libvirt: {r.stderr.strip()}')

        # Does not fit: a reserve no host has.  virsh prints the hook's line.
        HOST.write_config(reserve_mib=10_000_000)
        r, text = migrate()
        self.assertIn(f'incoming migration refused: the guest has {GUEST_MIB} MiB of memory '
                      f'(<memory>) and arrives unmerged, so it needs {GUEST_MIB + 256} MiB '
                      "with the 256 MiB margin for QEMU; this host's headroom is 0 MiB",
                      r.stderr)
        self.assertIn('minus reserve_mib 10000000 MiB). Migrate it to a host with more free '
                      'memory', r.stderr)
        self.assertIn(f'migrate_headroom_check=off in {CONF_PATH} allows it anyway', r.stderr)
        log(f'refused: {r.stderr.strip()}')

        # The policy off: allowed (and libvirt's same-host error again).
        HOST.write_config(reserve_mib=10_000_000, migrate_headroom_check='off')
        r, text = migrate()
        self.assertIn('incoming migration allowed without a headroom check', text)
        self.assertNotIn('samepage-ksm', r.stderr)

        # The source guest ran through all three, and the migrate op recorded
        # nothing: the guest's state is as its start left it.
        self.assertEqual(g.qemu_pid(), pid)
        self.assertEqual(virsh('domstate', g.name).stdout.strip(), 'running')
        self.assertEqual(HOST.state_files(), states)
        self.assert_hooks_bounded()
        g.destroy()
        HOST.wait_decision(self.log_start)



    def test_10_libvirtd_killed_while_guest_stops(self):
        """Fault (issue 14): libvirtd SIGKILLed while the last mergeable
        guest stops, after it killed the guest's QEMU and before samepage's
        hook heard of it (a hook script of the test's, run before
        samepage-ksm, holds libvirtd in the 'stopped' event).  Nothing runs
        the hook while libvirtd is down; its restart runs no qemu event for
        the guest, but the daemon hook (daemon.d/samepage-ksm - start -
        start).  Expected: the hook's last-guest unmerge, run=2, tune
        stopped, no state, within a bound of the restart."""
        a = self.new('lvd-a', merge='yes')
        b = self.new('lvd-b', merge='yes')
        # libvirtd killed inside b's stop never removes b's cgroups
        # (machine/qemu-N-NAME.libvirt-qemu in every v1 controller): the
        # test removes them, once empty.
        self.addCleanup(remove_machine_cgroups, b.name)
        uuids = [a.uuid, b.uuid]

        def forget():
            """On failure the hook may never hear of b's stop (that is the
            fault): its state and the hook's samepage tune are the test's to
            remove, or the next run finds a host with guests recorded."""
            stop_leftover_tune()
            if not tune_pid():
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(TUNE_PIDFILE)
            for u in uuids:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(STATE_DIR, f'{u}.state'))
        self.addCleanup(forget)
        a.start()
        b.start()
        want = FILL_MIB * 1024 * 1024 // PAGE // 2
        for g in (a, b):
            g.wait_console('SAMEPAGE-FILLED')
            wait_for(lambda g=g: merging_pages(g.qemu_pid()) >= want, 300, interval=1,
                     what=f'{g.name} with >= {want} merging pages')
        a.destroy()
        wait_for(lambda: 'still running: no unmerge' in self.new_log(), 30,
                 what='the hook deciding on the first stop')
        b_qemu = b.qemu_pid()
        tune = tune_pid()
        self.assertGreater(tune, 0, 'no samepage tune running for the guest')

        # The pause: a hook script that libvirtd runs before samepage-ksm
        # (qemu.d runs in name order), only for b's first 'stopped'.
        pause = os.path.join(os.path.dirname(HOOK_PATH), '00-samepage-fault-pause')
        pidfile = os.path.join(HOST.work, 'pause.pid')
        release = os.path.join(HOST.work, 'pause.release')
        with open(pause, 'w') as f:
            f.write(f"""#!/bin/sh
cat >/dev/null
[ "$1" = '{b.name}' ] && [ "$2" = stopped ] && [ ! -e '{pidfile}' ] || exit 0
echo $$ >'{pidfile}'
i=0
while [ ! -e '{release}' ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i + 1)); done
""")
        os.chmod(pause, 0o755)

        def unpause():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(pause)
            open(release, 'w').close()
            pid = int(read_text(pidfile).strip() or 0)
            deadline = time.monotonic() + 10
            while pid and pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
        self.addCleanup(unpause)
        # Whatever happens, libvirtd runs again for the other tests.
        self.addCleanup(lambda: HOST.daemons.libvirtd_pid or HOST.daemons.start_libvirtd())

        before_stop = len(HOST.hook_log_text())
        destroy = subprocess.Popen(['virsh', '-q', '-c', URI, 'destroy', b.name],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.addCleanup(lambda: destroy.poll() is None and destroy.kill())
        wait_for(lambda: read_text(pidfile).strip(), 60,
                 what="libvirtd in b's stopped hook")
        self.assertFalse(pid_alive(b_qemu), "b's QEMU still runs in its stopped hook")
        self.assertIn(b.uuid, HOST.state_files(), "samepage's hook ran before the pause")
        os.kill(HOST.daemons.libvirtd_pid, signal.SIGKILL)
        wait_for(lambda: not pid_alive(HOST.daemons.libvirtd_pid), 10, interval=0.05,
                 what='libvirtd to die')
        HOST.daemons.libvirtd_pid = None
        killed_at = time.monotonic()
        status_xml = f'/run/libvirt/qemu/{b.name}.xml'
        log(f"b's status XML after the kill: {'left' if os.path.exists(status_xml) else 'gone'}")
        out, err = destroy.communicate(timeout=60)
        log(f'virsh destroy after the kill: exit {destroy.returncode}: {err.strip()}')

        # libvirtd down: nothing runs the hook.  The guest is still counted,
        # ksmd still scans (at the policy's rate: samepage tune runs on).
        time.sleep(2)
        self.assertIn(b.uuid, HOST.state_files())
        self.assertNotIn(f"domain '{b.name}'", HOST.hook_log_text()[before_stop:],
                         "samepage's hook ran for b while libvirtd was down")
        window_knobs = {k: cli.host_value(k) for k in ('run', 'pages_to_scan')}
        log(f'while libvirtd is down: state kept, knobs {window_knobs}, tune pid '
            f'{tune_pid()}')
        unpause()

        mark = len(HOST.hook_log_text())
        HOST.clear_outcome()
        restarted = time.monotonic()
        HOST.daemons.start_libvirtd()
        # Seen (libvirt 9.0): the restart runs no qemu hook event for b (no
        # reconnect, stopped or release), though its status XML was left
        # (logged above).  It runs the daemon hook, daemon.d/samepage-ksm
        # - start - start: b's state is stale (its QEMU is gone), no guest
        # is left, so the hook does the last guest's unmerge and stops tune.
        result = HOST.wait_outcome(timeout=60)
        repaired = time.monotonic()
        text = HOST.hook_log_text()[mark:]
        self.assertIn(f"'{b.name}' ({b.uuid}) is stale (its QEMU is gone): removed", text)
        repair = [line for line in text.splitlines() if 'libvirtd start: repairing' in line]
        self.assertEqual(len(repair), 1, text)
        self.assertIn('the hook still had 1 recorded', repair[0])
        self.assertIn('samepage tune running', repair[0])
        log(f'at the restart: {repair[0]}')
        for prefix in (f"domain '{b.name}' ({b.uuid}): ", f"domain '{b.name}': "):
            self.assertNotIn(prefix, text, 'the restart ran a qemu hook event for b: update '
                             'the README row')
        log(f'unmerge {result["result"]}, run={result["after"]["run"]}, '
            f'pages_sharing={result["after"]["pages_sharing"]}, '
            f'{repaired - restarted:.1f} s after the restart began; libvirtd was down '
            f'{restarted - killed_at:.1f} s')
        self.assertEqual(result['result'], 'done', result)
        self.assertEqual(result['after']['run'], 2)
        self.assertEqual(result['after']['pages_sharing'], 0)
        self.assertEqual(HOST.state_files(), {}, 'state left behind')
        self.assertEqual(tune_pid(), 0, 'samepage tune still runs')
        self.assertEqual(virsh('domstate', b.name).stdout.strip(), 'shut off')
        with open(LOCK_PATH, 'a') as f:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)   # raises if held
            fcntl.flock(f, fcntl.LOCK_UN)
        self.assert_hooks_bounded()


def remove_machine_cgroups(name):
    """rmdir the empty cgroups libvirt made for domain name and left."""
    for d in glob.glob(f'/sys/fs/cgroup/*/machine/qemu-*-{glob.escape(name)}.libvirt-qemu'):
        for sub in sorted(glob.glob(os.path.join(d, '**/'), recursive=True), reverse=True):
            with contextlib.suppress(OSError):
                os.rmdir(sub)


def _try(action, guest, errors):
    try:
        action(guest)
    except Exception as e:  # collected, asserted in the test's thread
        errors.append(f'{guest.name}: {e}')


if __name__ == '__main__':
    sys.exit(unittest_main(prerequisites()))
