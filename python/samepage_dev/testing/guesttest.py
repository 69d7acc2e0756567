"""The base of samepage's guest tests, in the avocado_qemu style: a
unittest.TestCase that boots real guests (scripts/make-guest) in the built
QEMU through QEMU's own python/qemu (qemu.machine.QEMUMachine, QMP and the
serial console), so samepage_dev.taprunner, pytest or avocado can run the tests.

    SAMEPAGE_QEMU_VERSION   7.2 (default) or 10.0: which built QEMU
    SAMEPAGE_ACCEL          tcg (default) or kvm (used only if /dev/kvm
                            really boots the guest; else TCG, with a note)

Every test saves all KSM knobs first and restores them last (samepage), shuts
down every QEMU it started in tearDown, and removes the cgroups it made.
SIGTERM (meson's timeout) puts the knobs back at once and stops the run.

    export PYTHONPATH=python
    SAMEPAGE_QEMU_VERSION=10.0 /usr/bin/python3 -m samepage_dev.taprunner tests/avocado/test_*.py
    SAMEPAGE_QEMU_VERSION=7.2 /usr/bin/python3 -m pytest tests/avocado -k unmerge
"""
import contextlib
import os
import signal
import threading
import time
import unittest

from samepage_dev.cli import host_stats, host_value, samepage
from samepage_dev.guest import Guest, frozen, guest_accel
from samepage_dev.knobs import ksm_knobs
from samepage_dev.paths import MiB, PAGE
from samepage_dev.testing import note, require_guest, require_qemu, require_root
from samepage_dev.waits import wait_for

VERSION = os.environ.get('SAMEPAGE_QEMU_VERSION', '7.2')
GUEST_MIB = 256                 # every guest's RAM
FILL_MIB = 64                   # what the fill workload writes
FILL_PAGES = FILL_MIB * MiB // PAGE
# Fill seeds of this run: KSM merges across the whole host, so seeds that
# other guests of the same image may be using (7, ...) would let this test's
# pages merge with theirs.
SEED = 1_000_000 + os.getpid() * 4
SEED_OTHER = SEED + 1
SEED_HOTPLUG = SEED + 2
# ksmd fast enough that two 256 MiB guests merge in seconds, slow enough
# that it leaves TCG a core of the two.
FAST_KSM = dict(run=1, pages_to_scan=10000, sleep_millisecs=20)
# smart_scan (Linux 6.7+) off while a test runs: a page that sat unchanged
# for many scans (guest RAM the kernel touched at boot) is visited only every
# 9th scan afterwards, and its age never resets when its content changes.
# Two guests' copies of a fill page whose visits fall in different scans
# never meet in the unstable tree (rebuilt every scan), so ~5-25% of the
# fill stayed unmerged for good (kernel/tests/kt-r21-smart-scan-phase.c).
NO_SMART_SCAN = dict(smart_scan=0)


class Terminated(Exception):
    """SIGTERM arrived (meson's timeout sends it to the process group, then
    SIGKILL half a second later)."""


_terminated = []
_saved_knobs = {}        # the running test's `samepage save` file


def _on_sigterm(signum, frame):
    """Put the knobs back at once (there may be no time for tearDown),
    then fail the running test; the tests after it skip."""
    if _terminated:
        return                  # once is enough: let the cleanup run
    _terminated.append(signum)
    if _saved_knobs.get('file'):
        samepage('restore', '--file', _saved_knobs['file'], check=False, timeout=5)
    raise Terminated(f'signal {signum}: stopping')


def knob_summary():
    """The knobs that decide whether ksmd scans, for failure messages:
    KSM is global, and other work on the host may change them."""
    k = host_stats()['knobs']
    return ' '.join(f'{n}={k.get(n)}' for n in ('run', 'pages_to_scan', 'sleep_millisecs',
                                                 'smart_scan'))


class GuestTest(unittest.TestCase):
    """Boots guests with self.guest(...); KSM knobs saved in setUp and put
    back after everything else; every guest shut down in tearDown."""

    @classmethod
    def setUpClass(cls):
        require_root(cls)
        if (threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL):
            signal.signal(signal.SIGTERM, _on_sigterm)
        cls.paths = require_qemu(VERSION)
        cls.guest_paths = require_guest()
        cls.accel, why = guest_accel(cls.paths, cls.guest_paths)
        if why:
            note(why)

    def setUp(self):
        if _terminated:
            raise unittest.SkipTest('the run was stopped (SIGTERM)')
        self.guests = []
        self.interference = []      # what the test saw others do to KSM meanwhile
        # pages_to_scan is the kernel's own while the scan-time advisor runs.
        have = host_stats()['knobs']
        advisor = {'advisor_mode': 'none'} if 'advisor_mode' in have else {}
        smart = NO_SMART_SCAN if 'smart_scan' in have else {}
        knobs = ksm_knobs(**advisor, **smart, **FAST_KSM)
        _saved_knobs['file'] = knobs.__enter__()
        # Cleanups run after tearDown: the guests are gone when knobs return.
        self.addCleanup(_saved_knobs.clear)
        self.addCleanup(knobs.__exit__, None, None, None)

    def tearDown(self):
        for g in self.guests:
            g.shutdown()
        for what in self.interference:
            note(f'interference: {what}')

    def guest(self, name, **kw):
        """A launched guest (GUEST_MIB of memory-backend-ksm "m0" unless
        told otherwise), shut down in tearDown whatever happens."""
        kw.setdefault('mem', GUEST_MIB)
        g = Guest(self.paths, self.guest_paths, f'{name}-{os.getpid()}', accel=self.accel, **kw)
        g.short = name
        self.guests.append(g)
        g.launch()
        return g

    def filled_guests(self, *specs, mib=FILL_MIB, **kw):
        """Guests running the fill workload, one per (name, seed), all
        launched before any is waited for; returns them once each has said
        SAMEPAGE-FILLED."""
        guests = [self.guest(name, workload='fill', mib=mib, seed=seed, **kw)
                  for name, seed in specs]
        for g in guests:
            g.wait_filled(timeout=180)
        return guests

    def wait_fill_merged(self, guests, seed, bid=None, timeout=180):
        """Until at least 98% of the fill of `seed` that each guest's
        backend holds is merged (read by the test itself: pages.fill_census);
        returns the last census of each guest."""
        def merged():
            c = [g.fill_census(seed, bid) for g in guests]
            return all(x['fill'] and x['fill_ksm'] >= x['fill'] * 98 // 100 for x in c) and c
        try:
            return wait_for(merged, timeout, interval=1,
                            what=f'the fill of seed {seed} to merge in ' +
                            ', '.join(g.short for g in guests))
        except AssertionError as e:
            raise AssertionError(f'{e}; knobs now {knob_summary()}') from None

    def wait_full_scans(self, n, timeout=120):
        """Until ksmd has completed n more full scans (counted across a
        reset of full_scans by someone's run=2)."""
        state = {'last': host_value('full_scans'), 'done': 0}

        def advanced():
            now = host_value('full_scans')
            if now < state['last']:
                self.interference.append(f'full_scans went from {state["last"]} to {now}: '
                                         'something else wrote run=2 meanwhile')
            state['done'] += now - state['last'] if now >= state['last'] else now
            state['last'] = now
            return state['done'] >= n
        try:
            wait_for(advanced, timeout, interval=0.2, what=f'{n} full KSM scans')
        except AssertionError as e:
            raise AssertionError(f'{e}; knobs now {knob_summary()}') from None

    @contextlib.contextmanager
    def frozen(self, *guests):
        """frozen() (ksmd and the guests stopped), noting whether
        something else on the host restarted ksmd or unmerged everything
        (run=2 resets full_scans) while the test looked."""
        with frozen(*guests):
            before = host_stats()
            try:
                yield
            finally:
                after = host_stats()
                if (after['knobs']['run'] != 0 or
                        after['counters']['full_scans'] < before['counters']['full_scans']):
                    self.interference.append(
                        f'while frozen (run=0), run became {after["knobs"]["run"]} and '
                        f'full_scans went {before["counters"]["full_scans"]} -> '
                        f'{after["counters"]["full_scans"]}: something else changed KSM')

    def assert_counts_agree(self, g, bid=None):
        """query-ksm-stats's exact counts for a backend equal the test's own
        count from pagemap/kpageflags.  Call it inside self.frozen(): ksmd and
        the guests stopped, so both reads see one state.  (KSM is global: if
        something else on the host starts ksmd meanwhile, the figures move;
        the comparison is then repeated, up to 5 times, until they hold
        still across it.)  Returns the backend's figures."""
        keys = ('merged-pages', 'zero-pages', 'resident-pages')
        for _ in range(5):
            first = g.backend(bid)
            mine = g.independent_count(bid)
            again = g.backend(bid)
            if all(first[k] == again[k] for k in keys):
                self.assertEqual(tuple(first[k] for k in keys),
                                 (mine['ksm'], mine['zero'], mine['present']),
                                 f'{g.short}: query-ksm-stats vs pagemap/kpageflags')
                return first
            note(f'{g.short}: figures moved while frozen ({first} -> {again}); knobs now '
                 f'{knob_summary()}: again')
            samepage('set', 'run=0')
        self.fail(f'{g.short}: the figures never held still (is another KSM user running?)')

    def assert_alive(self, g):
        self.assertTrue(g.is_running(), f'{g.short}: QEMU is gone')
        self.assertEqual(g.cmd('query-status')['status'], 'running')
        self.assertTrue(g.alive(), f'{g.short}: console does not answer; console:\n{g.tail()}')

    def job_samples(self, g, job_id, timeout=120):
        """query-jobs for job_id, as often as QMP answers, until it
        concludes; returns every sample (status, current, total, error)."""
        seen = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            jobs = [j for j in g.cmd('query-jobs') if j['id'] == job_id]
            if jobs:
                j = jobs[0]
                seen.append((j['status'], j['current-progress'], j['total-progress'],
                             j.get('error')))
                if j['status'] == 'concluded':
                    return seen
            elif seen:
                self.fail(f'job {job_id} vanished after {seen[-1]}')
            time.sleep(0.002)
        self.fail(f'job {job_id} did not conclude within {timeout}s (last: {seen[-1:]})')
