"""ksm-unmerge on a running guest: the safe way back (issue 5).

Two guests share a fill seed and merge; then one of them is unmerged with
the ksm-unmerge job (MADV_UNMERGEABLE in that QEMU), cancelled half-way,
or refused for lack of room in its memory cgroup and then forced.

    PYTHONPATH=python SAMEPAGE_QEMU_VERSION=7.2 /usr/bin/python3 -m samepage_dev.taprunner tests/avocado/test_unmerge.py
"""
import logging
import os
import time

from samepage_dev.cgroups import MemoryCgroup
from samepage_dev.pages import independent_range_count
from samepage_dev.paths import PAGE, MiB
from samepage_dev.testing import note
from samepage_dev.testing.guesttest import FILL_PAGES, GUEST_MIB, SEED, GuestTest, knob_summary
from samepage_dev.waits import wait_for

def vmstat(name):
    with open('/proc/vmstat') as f:
        for line in f:
            k, _, v = line.partition(' ')
            if k == name:
                return int(v)
    return 0


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


class Unmerge(GuestTest):
    def merged_pair(self, mib=64):
        a, b = self.filled_guests(('a', SEED), ('b', SEED), mib=mib)
        self.wait_fill_merged([a, b], SEED)
        return a, b

    def test_unmerge_one_guest(self):
        """ksm-unmerge of a's RAM while both run: a's merged pages go to 0
        and stay 0 over further full scans, b's stay merged, the job went
        from 0 to the backend's size, and a kept running."""
        a, b = self.merged_pair()
        b_before = b.fill_census(SEED)['fill_ksm']
        self.assertEqual(a.qmp('ksm-unmerge', id='m0', **{'job-id': 'u', 'auto-dismiss': False}),
                         {'return': {}})
        seen = self.job_samples(a, 'u')
        note(f'job samples: {len(seen)}, first {seen[0]}, last {seen[-1]}')
        total = GUEST_MIB * MiB
        self.assertEqual(seen[0][1], 0, 'progress starts at 0')
        self.assertEqual(seen[-1][1:], (total, total, None), 'and ends at the total, no error')
        self.assertTrue(all(s[2] == total for s in seen))
        progress = [s[1] for s in seen]
        self.assertEqual(progress, sorted(progress), 'progress went backwards')
        self.assertEqual(a.qmp('job-dismiss', id='u'), {'return': {}})
        fig = a.backend()
        self.assertEqual((fig['merged-pages'], fig['merge'], fig['mergeable']), (0, False, False))
        self.assertEqual(a.smaps_mergeable(), 0)
        self.assert_alive(a)
        self.wait_full_scans(2, timeout=120)
        with self.frozen(a, b):
            fig = self.assert_counts_agree(a)
            self.assertEqual(fig['merged-pages'], 0, 'a stays unmerged')
            self.assertEqual(a.fill_census(SEED), {'fill': FILL_PAGES, 'fill_ksm': 0})
            # b's copies are still KSM pages (now mapped once).
            self.assert_counts_agree(b)
            b_after = b.fill_census(SEED)['fill_ksm']
            note(f'b: fill pages merged {b_before} before, {b_after} after')
            self.assertGreaterEqual(b_after, b_before * 95 // 100, "b's pages stay merged")
        self.assert_alive(a)
        self.assert_alive(b)

    def test_unmerge_cancel(self):
        """job-cancel part-way: the pages the job reached are unmerged, the
        rest are still merged, and merge stays on (whole backend still
        registered with KSM), as ksm-unmerge's documentation says."""
        a, b = self.merged_pair(mib=128)
        # Frozen: ksmd off (nothing re-merges what the job unmerged) and the
        # vCPUs stopped (nothing unshares behind the counts).
        with self.frozen(a, b):
            start, length = a.ram_range()
            chunk = 16 * MiB            # ksm-unmerge's chunk: progress moves by it
            before = [independent_range_count(a.pid, start + off, chunk)['ksm']
                      for off in range(0, length, chunk)]
            self.assertGreaterEqual(sum(before), 128 * MiB // PAGE,
                                    'the fill is no longer merged: did something else on the '
                                    f'host unmerge (run=2)? knobs now {knob_summary()}')
            r = a.qmp('ksm-unmerge', id='m0', **{'job-id': 'c', 'auto-dismiss': False})
            self.assertEqual(r, {'return': {}})
            a.qmp('job-pause', id='c')          # at the next chunk boundary
            self.assertEqual(a.qmp('job-cancel', id='c'), {'return': {}})
            final = self.job_samples(a, 'c')[-1]
            status, reached, total, error = final
            note(f'cancelled at {reached >> 20} of {total >> 20} MiB: {error}')
            self.assertLess(reached, total)
            self.assertIsNotNone(error, 'a cancelled job reports an error')
            fig = self.assert_counts_agree(a)
            self.assertTrue(fig['merge'], 'a cancelled unmerge leaves merge on')
            self.assertTrue(fig['mergeable'])
            self.assertEqual(a.smaps_mergeable(), length)
            self.assertEqual(reached % chunk, 0)
            done = independent_range_count(a.pid, start, reached) if reached else {'ksm': 0}
            rest = independent_range_count(a.pid, start + reached, length - reached)
            self.assertEqual(done['ksm'], 0, 'pages the job reached are unmerged')
            self.assertEqual(rest['ksm'], sum(before[reached // chunk:]),
                             'pages not reached are merged as before')
            self.assertGreater(rest['ksm'], 0)
            self.assertEqual(fig['merged-pages'], rest['ksm'])
            self.assertEqual(a.qmp('job-dismiss', id='c'), {'return': {}})
        self.assert_alive(a)

    def test_unmerge_refused_in_cgroup_then_forced(self):
        """a in a memory cgroup with 8 MiB of room: ksm-unmerge refuses,
        giving both numbers, and changes nothing.  force=true then unmerges
        past the limit: if the OOM killer comes, it kills inside that cgroup
        only (b, outside it, and this test survive).  What happened is
        recorded, not asserted: the kernel chooses."""
        a, b = self.merged_pair()
        # QEMUMachine warns when QEMU dies of a signal: here that is expected.
        log = logging.getLogger('qemu.machine')
        self.addCleanup(log.setLevel, log.level)
        log.setLevel(logging.ERROR)
        cg = MemoryCgroup('guest-unmerge', 1 << 40)
        self.addCleanup(cg.remove)     # after tearDown has stopped a
        cg.add(a.pid)
        usage_file = 'memory.current' if cg.v2 else 'memory.usage_in_bytes'
        with open(os.path.join(cg.path, usage_file)) as f:
            usage = int(f.read())
        cg._write('memory.max' if cg.v2 else 'memory.limit_in_bytes', str(usage + 8 * MiB))

        before = a.backend()
        r = a.qmp('ksm-unmerge', id='m0', **{'job-id': 'r', 'auto-dismiss': False})
        if 'error' in r:
            desc = r['error']['desc']
        else:
            # The machine's mem-merge=on registers ROMs too, so this process's
            # counters only bound the need: the job counts m0 in its thread
            # and fails without touching it.
            self.assertEqual(r, {'return': {}})
            status, reached, total, desc = self.job_samples(a, 'r')[-1]
            self.assertEqual(reached, 0, 'nothing was unmerged')
            self.assertIn('counted', desc or '')
            self.assertEqual(a.qmp('job-dismiss', id='r'), {'return': {}})
        note(f'refused: {desc}')
        self.assertRegex(desc, r'may need \d+ MiB \(\d+ merged pages')
        self.assertRegex(desc, r'only \d+ MiB is available')
        self.assertRegex(desc, r'memory cgroup limit \d+ MiB with \d+ MiB used')
        self.assertEqual(a.cmd('query-jobs'), [])
        after = a.backend()
        self.assertEqual((after['merge'], after['mergeable']), (True, True))
        self.assertGreaterEqual(after['merged-pages'], before['merged-pages'] * 98 // 100)

        oom_host, oom_cg = vmstat('oom_kill'), cg.oom_kills()
        b_merged = b.fill_census(SEED)['fill_ksm']
        t0 = time.monotonic()
        r = a.qmp('ksm-unmerge', id='m0', force=True, **{'job-id': 'f', 'auto-dismiss': False})
        self.assertEqual(r, {'return': {}})

        def outcome():
            if not pid_alive(a.pid) or not a.is_running():
                return 'a exited'
            try:
                jobs = a.cmd('query-jobs')
            except Exception as e:  # noqa: BLE001 - the QMP socket closes when QEMU dies
                return f'a stopped answering QMP ({type(e).__name__})'
            return next((f'job concluded: {j}' for j in jobs
                         if j['id'] == 'f' and j['status'] == 'concluded'), None)
        what = wait_for(outcome, 120, interval=0.2, what='the forced unmerge to end')
        took = time.monotonic() - t0
        # A kill in progress: let it finish before reading the counters.
        wait_for(lambda: a.is_running() or not pid_alive(a.pid), 30, what='a to exit')
        oom_host, oom_cg = vmstat('oom_kill') - oom_host, cg.oom_kills() - oom_cg
        note(f'forced unmerge after {took:.1f}s: {what}; OOM kills: {oom_cg} in the cgroup, '
             f'{oom_host} on the host; a {"running" if a.is_running() else "gone"}')
        if a.is_running():
            jobs = a.cmd('query-jobs')
            fig = a.backend()
            note(f'a survived: jobs {jobs}; backend {fig}')
        # Whatever happened to a, it happened inside its cgroup.
        self.assertEqual(oom_host, oom_cg, 'an OOM kill outside the test cgroup')
        self.assertTrue(set(cg.pids()) <= {a.pid}, 'only a is in the cgroup')
        self.assert_alive(b)
        self.assertGreaterEqual(b.fill_census(SEED)['fill_ksm'], b_merged * 95 // 100)
