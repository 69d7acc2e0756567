"""Real guests: Debian 12 systems (scripts/make-guest --image debian: systemd,
nginx, PostgreSQL on a disk image) on memory-backend-ksm, their web server
polled from the host through a forwarded loopback port (issue 13).

  - ksm-unmerge of one guest while its web server is polled without pause:
    no request fails; the latency before, during and after the job is
    reported.
  - a guest whose backend has merge=off never merges, while a twin beside
    it does.

    PYTHONPATH=python SAMEPAGE_QEMU_VERSION=10.0 /usr/bin/python3 -m samepage_dev.taprunner tests/avocado/test_real_guests.py
"""
import time

from samepage_dev.cli import host_value
from samepage_dev.paths import PAGE, MiB
from samepage_dev.testing import note, require_guest
from samepage_dev.testing.guesttest import GuestTest, knob_summary
from samepage_dev.waits import wait_for
from samepage_dev.web import WebPoller

REAL_MIB = 512          # each Debian guest's RAM
BOOT_S = 420            # two guests booting at once under TCG on a shared host
MERGED_MIN_MIB = 8      # what a guest must have merged before the unmerge is worth testing


class RealGuests(GuestTest):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.guest_paths = require_guest('debian')

    def real_guests(self, *names, **kw):
        """Debian guests, all launched before any is waited for; returned
        once each says SAMEPAGE-READY and its nginx answers the host."""
        kw.setdefault('mem', REAL_MIB)
        t0 = time.monotonic()
        guests = [self.guest(n, **kw) for n in names]
        for g in guests:
            g.wait_ready(BOOT_S)
        note(f'{len(guests)} Debian guests x {kw["mem"]} MiB ready (nginx answering) in '
             f'{time.monotonic() - t0:.1f} s')
        return guests

    def merged_mib(self, g):
        return g.backend()['merged-pages'] * PAGE / MiB

    def test_unmerge_while_serving(self):
        """a and b (same image) merge; a's nginx is polled from the host
        without pause while ksm-unmerge takes all of a's RAM out of KSM:
        0 failed requests, a's merged pages 0 after, and a serves on."""
        a, b = self.real_guests('a', 'b')
        wait_for(lambda: self.merged_mib(a) >= MERGED_MIN_MIB and self.merged_mib(b) > 0, 300,
                 interval=1, what=f'a to merge {MERGED_MIN_MIB} MiB (knobs {knob_summary()})')
        poll = WebPoller(a.http_port).start()
        self.addCleanup(poll.stop)
        time.sleep(3)                       # latency before the job
        merged = self.merged_mib(a)
        t0 = time.monotonic()
        self.assertEqual(a.qmp('ksm-unmerge', id='m0', **{'job-id': 'u', 'auto-dismiss': False}),
                         {'return': {}})
        seen = self.job_samples(a, 'u', timeout=300)
        t1 = time.monotonic()
        time.sleep(3)                       # and after it
        poll.stop()
        total = REAL_MIB * MiB
        self.assertEqual(seen[-1][1:], (total, total, None), 'the job walked all RAM, no error')
        self.assertEqual(a.qmp('job-dismiss', id='u'), {'return': {}})
        fig = a.backend()
        self.assertEqual((fig['merged-pages'], fig['merge'], fig['mergeable']), (0, False, False))

        before = poll.summary(poll.window(None, t0))
        # Every request that overlapped the job (started before it ended and
        # ended after it started).
        during = poll.summary([s for s in poll.samples if s[0] < t1 and s[0] + s[1] >= t0])
        after = poll.summary(poll.window(t1, None))
        every = poll.summary(poll.samples)
        note(f'unmerged {merged:.1f} MiB of a ({REAL_MIB} MiB walked) in {t1 - t0:.2f} s, '
             f'{len(seen)} job samples')
        note(f'a nginx before the job: {poll.describe(before)}')
        note(f'a nginx during the job: {poll.describe(during)}')
        note(f'a nginx after the job:  {poll.describe(after)}')
        self.assertEqual(every['failed'], 0, f'failed requests: {every["errors"]}')
        self.assertGreaterEqual(during['requests'], 1, 'no request overlapped the job')
        self.assertGreater(after['requests'], 0)
        self.assertTrue(a.http_ok(), 'a no longer serves')
        self.assert_alive(a)
        self.assertGreater(self.merged_mib(b), 0, "b's own merged pages are gone too")

    def test_merge_off_never_merges(self):
        """a (merge=off) and b (merge=on) boot the same image side by side
        with ksmd scanning fast: b merges, a never has a merged page, by
        query-ksm-stats, by the test's own pagemap count, nor in smaps."""
        a = self.guest('off', mem=REAL_MIB, ram_opts=',merge=off')
        b = self.guest('on', mem=REAL_MIB)
        for g in (a, b):
            g.wait_ready(BOOT_S)
        self.assertEqual(a.smaps_mergeable(), 0, 'merge=off memory registered with KSM')
        fig = a.backend()
        self.assertEqual((fig['merge'], fig['mergeable']), (False, False))
        wait_for(lambda: self.merged_mib(b) >= MERGED_MIN_MIB, 300, interval=1,
                 what=f'b to merge {MERGED_MIN_MIB} MiB (knobs {knob_summary()})')
        # Keep looking while ksmd passes over everything a few more times.
        samples = []
        scans0 = host_value('full_scans')
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            samples.append(a.backend()['merged-pages'])
            if host_value('full_scans') >= scans0 + 3:
                break
            time.sleep(0.5)
        self.assertGreaterEqual(host_value('full_scans'), scans0 + 3,
                                f'ksmd did not scan 3 more times (knobs {knob_summary()})')
        self.assertEqual(max(samples), 0, f'a merged pages: {max(samples)}')
        with self.frozen(a, b):
            fig = self.assert_counts_agree(a)
            self.assertEqual(fig['merged-pages'], 0)
            self.assertEqual(a.independent_count()['ksm'], 0)
            b_fig = self.assert_counts_agree(b)
        note(f'a (merge=off): 0 merged over {len(samples)} samples; b (merge=on): '
             f'{b_fig["merged-pages"] * PAGE / MiB:.1f} MiB merged')
        self.assertTrue(a.http_ok())
        self.assertTrue(b.http_ok())
