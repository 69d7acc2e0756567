#!/usr/bin/python3
"""An absent benchmark peer never fails a benchmark: its row says why.

No KSM, no guest, no lock: the peers are looked for where they are not
(an empty cache for ksmtuned's script, kernel sources without ksm_tests -D
or none at all), and the tables and smoke checks are fed what the
benchmarks record then.
"""
import os
import subprocess
import sys
import tempfile
import unittest

CACHE = tempfile.mkdtemp(prefix='samepage-peers-test-')
os.environ['SAMEPAGE_CACHE'] = CACHE      # before common reads it
from samepage_dev import taprunner  # noqa: E402
from samepage_dev.bench import bench_unmerge, common, convergence, policies  # noqa: E402


def kernel_source(top, ksm_tests_c):
    """A linux-source-like .tar.xz with only selftests/mm/ksm_tests.c."""
    d = tempfile.mkdtemp(dir=CACHE)
    sdir = os.path.join(d, top, 'tools', 'testing', 'selftests', 'mm')
    os.makedirs(sdir)
    with open(os.path.join(sdir, 'ksm_tests.c'), 'w') as f:
        f.write(ksm_tests_c)
    tar = os.path.join(d, f'{top}.tar.xz')
    subprocess.run(['tar', '-C', d, '-cJf', tar, top], check=True)
    return tar


class PeersAbsent(unittest.TestCase):
    @classmethod
    def tearDownClass(cls):
        subprocess.run(['rm', '-rf', CACHE])

    def test_ksmtuned_absent(self):
        p = policies.Ksmtuned()
        self.assertFalse(p.available())
        with self.assertRaises(common.PeerAbsent) as cm:
            p.start(None)     # raises before it touches any knob
        self.assertIn('scripts/setup', str(cm.exception))

    def test_no_kernel_source(self):
        bench_unmerge.KERNEL_SOURCES = os.path.join(CACHE, 'none-*.tar.xz')
        with self.assertRaises(common.PeerAbsent) as cm:
            bench_unmerge.ksm_tests_binary()
        self.assertIn('linux-source-6.12', str(cm.exception))

    def test_ksm_tests_without_D(self):
        # 6.1's getopt string: no D (the unmerge speed test came in 6.3).
        tar = kernel_source('linux-source-6.1', 'int main(void) { /* "ha:p:l:z:m:s:MUZNPCH" */ }\n')
        bench_unmerge.KERNEL_SOURCES = tar
        for _ in range(2):      # the second time from the remembered verdict
            with self.assertRaises(common.PeerAbsent) as cm:
                bench_unmerge.ksm_tests_binary()
            self.assertIn('has no -D', str(cm.exception))

    def test_rows_and_smoke(self):
        why = 'absent: ksm_tests of linux-source-6.1.tar.xz has no -D'
        text = bench_unmerge.render({'selftest': {'absent': why}})
        self.assertIn(why, text)
        self.assertTrue(bench_unmerge.has_numbers(
            {'jobs': [{}], 'global': {}, 'selftest': {'absent': why}}))
        self.assertFalse(bench_unmerge.has_numbers(
            {'jobs': [{}], 'global': {}, 'selftest': {'error': 'it crashed'}}))
        # Convergence: ksmtuned absent, samepage's own figures stand.
        sample = {'saved_pages': 1, 'ksmd_cpu_s': 0.1}
        sp = {'policy': 'samepage', 'label': 'samepage', 'settings': '', 't95': 5.0,
              'samples': [sample] * 3}
        kt = {'policy': 'ksmtuned', 'label': 'ksmtuned (Debian)', 'settings': '',
              'absent': 'absent: no ksmtuned script'}
        res = {'bound_mib': 10, 'policies': [sp, kt]}
        self.assertTrue(convergence.has_numbers(res))
        ok, why_text = convergence.target_met(res)
        self.assertIn('ksmtuned: not compared (absent: no ksmtuned script)', why_text)
        # samepage's own policy is never allowed to be absent.
        res['policies'][0] = dict(sp, absent='?', samples=[])
        self.assertFalse(convergence.has_numbers(res))


if __name__ == '__main__':
    sys.argv[1:] = [__file__]
    sys.exit(taprunner.main())
