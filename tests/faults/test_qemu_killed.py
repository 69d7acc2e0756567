"""Fault: QEMU SIGKILLed (the OOM killer, an operator's kill -9) while its
ksm-unmerge job runs, on the built QEMU (SAMEPAGE_QEMU_VERSION: 7.2 or
10.0), with the real ksmd.  README "Reliability".

Two QEMUs with the qtest accelerator (guest RAM written with `memset`, so
pages are identical and merged by the real ksmd): the victim and a
bystander, each filled with its own byte so that they share nothing.  The
victim's unmerge job is started, and the victim is SIGKILLed while the job
is running (current-progress strictly between 0 and total).  Once by a
plain QMP client (as libvirt or an operator's script would), once by
`samepage unmerge --pid`, the way a host runs it.

Expected: the host is fine (ksmd keeps scanning, the knobs are those before
the kill), nothing is left behind (the kernel freed the victim's memory:
pages_sharing drops by the victim's pages; no samepage lock held, nothing
new under /run/samepage), the bystander keeps running with its pages
merged; samepage exits 1 and says that QEMU exited during the job.
"""
import fcntl
import os
import shutil
import signal
import subprocess
import tempfile
import time
import unittest

from samepage_dev.cli import host_stats, host_value, samepage
from samepage_dev.knobs import ksm_knobs
from samepage_dev.paths import PAGE, MiB, cli_path
from samepage_dev.testing import note, require_qemu, require_root
from samepage_dev.waits import wait_for, wait_full_scans

VERSION = os.environ.get('SAMEPAGE_QEMU_VERSION', '7.2')
GUEST_RAM_BASE = 0x100000      # above the BIOS/VGA holes
FAST_KSM = dict(run=1, pages_to_scan=20000, sleep_millisecs=0)
VICTIM_MIB = 1024              # unmerging 1 GiB takes long enough to be caught running
BYSTANDER_MIB = 64
HOST_LOCK = os.environ.get('SAMEPAGE_LOCK', '/run/samepage/ksm.lock')   # ksm-host-lock.h
RUN_DIR = '/run/samepage'


def proc_state(pid):
    """The state letter of /proc/PID/stat, None when the pid is gone."""
    try:
        with open(f'/proc/{pid}/stat') as f:
            return f.read().rsplit(')', 1)[1].split()[0]
    except FileNotFoundError:
        return None


def merging_pages(pid):
    with open(f'/proc/{pid}/ksm_merging_pages') as f:
        return int(f.read())


def run_dir_listing():
    """What samepage keeps under /run: the names and sizes, or None."""
    if not os.path.isdir(RUN_DIR):
        return None
    return sorted((e.name, e.stat(follow_symlinks=False).st_size) for e in os.scandir(RUN_DIR))


def host_lock_free():
    try:
        fd = os.open(HOST_LOCK, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


class TestQemuKilledDuringUnmerge(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        require_root(cls)
        cls.paths = require_qemu(VERSION)

    def setUp(self):
        self.knobs = ksm_knobs()
        self.knobs.__enter__()
        self.addCleanup(self.knobs.__exit__, None, None, None)
        self.run_dir_before = run_dir_listing()
        self.baseline_sharing = host_value('pages_sharing')
        samepage('set', *[f'{k}={v}' for k, v in FAST_KSM.items()])

    def launch(self, mib_ram, name):
        """A QEMU with one memory-backend-ksm (m0) and a QMP socket on its
        command line (where `samepage unmerge --pid` finds it)."""
        from qemu.machine.qtest import QEMUQtestMachine
        sock_dir = tempfile.mkdtemp(prefix=f'samepage-fault-{name}-')
        self.addCleanup(shutil.rmtree, sock_dir, True)
        qmp_path = os.path.join(sock_dir, 'qmp.sock')
        vm = QEMUQtestMachine(self.paths['qemu'], name=name, args=[
            '-nodefaults', '-machine', 'pc,memory-backend=m0', '-m', f'{mib_ram}M',
            '-object', f'memory-backend-ksm,id=m0,size={mib_ram}M',
            '-qmp', f'unix:{qmp_path},server=on,wait=off'])
        vm.launch()
        # Reaps the process whatever happened (after a SIGKILL too), quietly.
        self.addCleanup(vm.shutdown, hard=True)
        vm.qmp_path = qmp_path
        return vm

    def merged_pair(self):
        """The victim and the bystander, each merged within itself."""
        victim = self.launch(VICTIM_MIB + 64, 'victim')
        bystander = self.launch(BYSTANDER_MIB + 64, 'bystander')
        victim.qtest(f'memset {GUEST_RAM_BASE:#x} {VICTIM_MIB * MiB:#x} 0x5a')
        bystander.qtest(f'memset {GUEST_RAM_BASE:#x} {BYSTANDER_MIB * MiB:#x} 0xa5')
        for vm, mib in ((victim, VICTIM_MIB), (bystander, BYSTANDER_MIB)):
            want = mib * MiB // PAGE * 9 // 10
            wait_for(lambda: merging_pages(vm.get_pid()) >= want, 180, interval=0.1,
                     what=f'{want} merged pages in {vm._name}')
        return victim, bystander

    def kill_while_running(self, victim, job_filter, timeout=30):
        """Watch query-jobs (on the test's own monitor: the one on the
        command line is samepage's); SIGKILL the victim as soon as a job
        job_filter accepts is running with 0 < progress < total.  Returns
        that job as last seen."""
        deadline = time.monotonic() + timeout
        seen = []
        while time.monotonic() < deadline:
            jobs = [j for j in victim.qmp('query-jobs')['return'] if job_filter(j)]
            if jobs:
                j = jobs[0]
                seen.append((j['status'], j['current-progress'], j['total-progress']))
                if j['status'] == 'running' and 0 < j['current-progress'] < j['total-progress']:
                    os.kill(victim.get_pid(), signal.SIGKILL)
                    return j
                if j['status'] in ('concluded', 'null', 'aborting'):
                    break
            time.sleep(0.002)
        self.fail(f'the job was never seen running part-way: {seen[:5]} ... {seen[-5:]}')

    def assert_host_fine(self, victim_pid, bystander, knobs_before, bystander_merged):
        """What must hold after the kill."""
        # The kernel freed the victim's memory at exit (a zombie already has none).
        wait_for(lambda: proc_state(victim_pid) in (None, 'Z', 'X'), 10, interval=0.01,
                 what='the victim to exit')
        # ksmd drops a dead mm's rmap items when it passes over it: then only
        # the bystander's merged pages are left over the baseline.
        bound = self.baseline_sharing + merging_pages(bystander.get_pid()) + 512
        sharing = wait_for(
            lambda: (lambda s: [s] if s <= bound else None)(host_value('pages_sharing')),
            60, interval=0.1, what=f'pages_sharing to drop to <= {bound}')[0]
        note(f'pages_sharing after the kill: {sharing} (baseline {self.baseline_sharing}, '
             f'bystander merging {merging_pages(bystander.get_pid())})')
        # The knobs are as they were before the kill; ksmd still scans.
        self.assertEqual(host_stats()['knobs'], knobs_before)
        wait_full_scans(2, timeout=60)
        # The bystander runs on, merged as before.
        self.assertEqual(bystander.qmp('query-status')['return']['status'], 'running')
        self.assertGreaterEqual(merging_pages(bystander.get_pid()), bystander_merged * 9 // 10)
        self.assertEqual(bystander.qmp('query-jobs')['return'], [])
        # samepage left nothing: no lock held, nothing new in /run/samepage.
        self.assertTrue(host_lock_free(), f'{HOST_LOCK} is held')
        self.assertEqual(run_dir_listing(), self.run_dir_before)

    def test_killed_during_qmp_job(self):
        """The job started by a plain QMP client."""
        victim, bystander = self.merged_pair()
        vpid = victim.get_pid()
        knobs_before = host_stats()['knobs']
        bystander_merged = merging_pages(bystander.get_pid())

        r = victim.qmp('ksm-unmerge', id='m0', force=True,
                       **{'job-id': 'fault', 'auto-dismiss': False})
        self.assertEqual(r, {'return': {}})
        job = self.kill_while_running(victim, lambda j: j['id'] == 'fault')
        note(f'QEMU {VERSION} SIGKILLed with the job at {job["current-progress"]} of '
             f'{job["total-progress"]} bytes')
        self.assert_host_fine(vpid, bystander, knobs_before, bystander_merged)

    def test_killed_during_samepage_unmerge(self):
        """The job driven by `samepage unmerge --pid`."""
        victim, bystander = self.merged_pair()
        vpid = victim.get_pid()
        knobs_before = host_stats()['knobs']
        bystander_merged = merging_pages(bystander.get_pid())
        cli = subprocess.Popen([cli_path(), 'unmerge', '--pid', str(vpid), '--force'],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.addCleanup(lambda: cli.poll() is None and cli.kill())
        self.addCleanup(lambda: cli.poll() is None or cli.wait())
        try:
            job = self.kill_while_running(victim,
                                          lambda j: j['id'].startswith('samepage-unmerge-'))
        except AssertionError:
            if cli.poll() is not None:
                out, err = cli.communicate()
                self.fail(f'samepage ended (exit {cli.returncode}) before its job was seen: '
                          f'{out.strip()} {err.strip()}')
            raise
        note(f'QEMU {VERSION} SIGKILLed with samepage\'s job at {job["current-progress"]} '
             f'of {job["total-progress"]} bytes')
        out, err = cli.communicate(timeout=60)
        note(f'samepage exit {cli.returncode}; stdout: {out.strip()}; stderr: {err.strip()}')
        self.assertEqual(cli.returncode, 1)
        self.assertRegex(out, rf'^unmerge of pid {vpid}: failed: QEMU \(pid {vpid}\) exited '
                              r'during the job')
        self.assertIn(f'QEMU (pid {vpid}) exited during the job', err)
        self.assertNotIn('CRITICAL', err)
        self.assert_host_fine(vpid, bystander, knobs_before, bystander_merged)


if __name__ == '__main__':
    unittest.main()
