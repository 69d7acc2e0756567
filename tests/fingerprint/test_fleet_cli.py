#!/usr/bin/python3
"""samepage fingerprint and place, driven as a program, on processes this test
starts with known memory, and the fleet key's checks.

Each child holds pages that are ids written into otherwise constant pages
(ids 0-19999 in A, 10000-29999 in B, 40000-59999 in C): A and B have 10000
contents in common besides what the Python interpreters share.  The exact
figure is the census's (`samepage estimate --json`, dup_across_pages of the
pair), and the prediction must be within 4 standard errors of it (the
sketch's own: estimate / sqrt(samples), samples about estimate * k / the
larger distinct count).  Reading another process's memory needs root or
ptrace permission: without it every test skips, saying why.
"""
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

SAMEPAGE = os.environ.get('SAMEPAGE_CLI', 'samepage')
HOLD = r'''
import sys, time
first, n = int(sys.argv[1]), int(sys.argv[2])
a = bytearray(4096 * n)
for i in range(n):
    a[i * 4096:i * 4096 + 8] = (first + i).to_bytes(8, 'little')
    a[i * 4096 + 8] = 0x5a
sys.stdout.write('ready\n'); sys.stdout.flush()
sys.stdin.read()
'''


def run(*args, check=None):
    r = subprocess.run([SAMEPAGE, *args], capture_output=True, text=True, timeout=120)
    if check is not None and r.returncode != check:
        raise AssertionError(f'samepage {" ".join(args)}: exit {r.returncode}, '
                             f'stderr {r.stderr!r}')
    return r


class Child:
    def __init__(self, first, n):
        self.proc = subprocess.Popen([sys.executable, '-c', HOLD, str(first), str(n)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == 'ready'
        self.pid = self.proc.pid

    def stop(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


class FleetCli(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix='samepage-fleet-test-')
        cls.key = os.path.join(cls.dir, 'fleet.key')
        fd = os.open(cls.key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, b'samepage fleet test key, 32 bytes')
        os.close(fd)
        cls.children = [Child(0, 20000), Child(10000, 20000), Child(40000, 20000)]
        probe = run('fingerprint', '--key', cls.key, '--pid', str(cls.children[0].pid),
                    '--rate', '0')
        cls.skip_reason = None
        if probe.returncode != 0 and 'permission' in probe.stderr.lower():
            cls.skip_reason = f'cannot read a child\'s memory here: {probe.stderr.strip()}'

    @classmethod
    def tearDownClass(cls):
        for c in cls.children:
            c.stop()
        shutil.rmtree(cls.dir)

    def setUp(self):
        if self.skip_reason:
            self.skipTest(self.skip_reason)

    def fingerprint(self, name, *pids, group=None, host=None):
        out = os.path.join(self.dir, name)
        args = ['fingerprint', '--key', self.key, '--rate', '0', '-o', out]
        for p in pids:
            args += ['--pid', str(p)]
        if group:
            args += ['--trust-group', group]
        args += ['--hostname', host or name.removesuffix('.json')]
        run(*args, check=0)
        return out

    # ---- the key -------------------------------------------------------------

    def key_refused(self, path, expect):
        out = os.path.join(self.dir, 'never.json')
        r = run('fingerprint', '--key', path, '--pid', str(self.children[0].pid), '-o', out)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn(expect, r.stderr)
        self.assertFalse(os.path.exists(out), 'nothing is written when the key is refused')
        return r.stderr

    def test_key_missing_says_how_to_make_one(self):
        err = self.key_refused(os.path.join(self.dir, 'no-such.key'), 'no such file')
        self.assertIn('head -c 32 /dev/urandom', err)

    def test_key_readable_by_others(self):
        path = os.path.join(self.dir, 'open.key')
        shutil.copy(self.key, path)
        os.chmod(path, 0o644)
        self.key_refused(path, 'readable by group or others')

    def test_key_writable_by_others(self):
        path = os.path.join(self.dir, 'writable.key')
        shutil.copy(self.key, path)
        os.chmod(path, 0o622)
        self.key_refused(path, 'writable by group or others')

    def test_key_through_symlink(self):
        path = os.path.join(self.dir, 'link.key')
        os.symlink(self.key, path)
        self.key_refused(path, 'link')

    def test_key_too_short(self):
        path = os.path.join(self.dir, 'short.key')
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, b'tiny')
        os.close(fd)
        self.key_refused(path, '16 to 4096')

    # ---- fingerprint and pairs ------------------------------------------------

    def test_pairs_match_the_census(self):
        a, b = self.children[0].pid, self.children[1].pid
        fa = self.fingerprint('pa.json', a)
        fb = self.fingerprint('pb.json', b)
        with open(fa) as f:
            doc = json.load(f)
        self.assertEqual(doc['format'], 'samepage-fingerprint/1')
        self.assertEqual(len(doc['guests']), 1)
        g = doc['guests'][0]
        self.assertEqual(g['pid'], a)
        self.assertLessEqual(g['count'], g['k'])
        self.assertLessEqual(g['k'] * 8, 64 * 1024, 'at most 64 KiB of hashes per guest')
        self.assertNotIn('hashes', json.dumps({k: v for k, v in g.items() if k != 'hashes'}))

        pairs = json.loads(run('place', '--pairs', '--json', fa, fb, check=0).stdout)
        predicted = pairs['shared_pages'][0][1]
        self.assertEqual(predicted, pairs['shared_pages'][1][0])
        census = json.loads(run('estimate', '--json', '--pid', str(a), '--pid', str(b),
                                check=0).stdout)
        exact = census['dup_across_pages']
        self.assertGreaterEqual(exact, 10000)
        larger = max(pairs['shared_pages'][0][0], pairs['shared_pages'][1][1])
        samples = max(predicted * 8192 / larger, 1)
        bound = 4 * predicted / math.sqrt(samples)
        self.assertLessEqual(abs(predicted - exact), bound,
                             f'predicted {predicted}, census {exact}, bound {bound:.0f}')
        table = run('place', '--pairs', fa, fb, check=0).stdout
        self.assertIn(f'pid {a}', table)

    def test_prometheus_figures(self):
        a = self.children[0].pid
        prom = os.path.join(self.dir, 'guests.prom')
        run('fingerprint', '--key', self.key, '--rate', '0', '--pid', str(a), '-o',
            os.path.join(self.dir, 'prom.json'), '--prometheus', prom, check=0)
        values = {}
        with open(prom) as f:
            text = f.read()
        for line in text.splitlines():
            if not line.startswith('#'):
                metric, value = line.rsplit(' ', 1)
                self.assertIn(f'pid="{a}"', metric)
                values[metric.split('{')[0]] = int(value)
        self.assertIn('# TYPE samepage_guest_distinct_pages gauge', text)
        # 20000 distinct filled pages, no duplicates among them: the estimate within 4 standard
        # errors (1/sqrt(8192) of the distinct count each).
        distinct = values['samepage_guest_distinct_pages']
        self.assertGreaterEqual(distinct, 20000 * (1 - 4 / math.sqrt(8192)))
        self.assertEqual(values['samepage_guest_present_pages'],
                         values['samepage_guest_zero_pages'] + distinct +
                         values['samepage_guest_duplicate_pages'])

    # ---- ranking ----------------------------------------------------------------

    def test_rank_hosts_and_trust_groups(self):
        a, b, c = (ch.pid for ch in self.children)
        hosts = os.path.join(self.dir, 'hosts')
        os.mkdir(hosts)
        guest = self.fingerprint('new-guest.json', a)
        # host-b runs B (shares 10000 contents with A), host-c runs C (shares only the
        # interpreter), host-t runs B in another trust group.
        shutil.move(self.fingerprint('host-b.json', b), hosts)
        shutil.move(self.fingerprint('host-c.json', c), hosts)
        shutil.move(self.fingerprint('host-t.json', b, group='tenant-b'), hosts)
        with open(os.path.join(hosts, 'broken.json'), 'w') as f:
            f.write('{"format": "samepage-fingerprint/1", "guests": [')
        r = run('place', '--hosts', hosts, '--json', guest, check=0)
        self.assertIn('broken.json', r.stderr)
        self.assertIn('left out', r.stderr)
        doc = json.loads(r.stdout)
        ranked = doc['guests'][0]['hosts']
        self.assertEqual([h['hostname'] for h in ranked], ['host-b', 'host-c'])
        self.assertGreater(ranked[0]['predicted_shared_pages'],
                           ranked[1]['predicted_shared_pages'] + 5000)
        excluded = doc['guests'][0]['excluded']
        self.assertEqual([h['hostname'] for h in excluded], ['host-t'])
        self.assertIn("trust group 'tenant-b'", excluded[0]['reason'])
        table = run('place', '--hosts', hosts, guest, check=0).stdout
        self.assertRegex(table, r'1 +host-b')
        self.assertIn('excluded host-t', table)
        # The same guest in tenant-b: only host-t may take it.
        guest_t = self.fingerprint('new-guest-t.json', a, group='tenant-b')
        doc = json.loads(run('place', '--hosts', hosts, '--json', guest_t, check=0).stdout)
        self.assertEqual([h['hostname'] for h in doc['guests'][0]['hosts']], ['host-t'])

    def test_bad_arguments(self):
        self.assertEqual(run('place').returncode, 2)
        self.assertEqual(run('place', '--pairs').returncode, 2)
        r = run('place', '--hosts', self.dir, os.path.join(self.dir, 'missing.json'))
        self.assertEqual(r.returncode, 1)
        self.assertIn('missing.json', r.stderr)
        r = run('fingerprint', '--key', self.key, '--trust-group', 'bad group', '--pid', '1')
        self.assertEqual(r.returncode, 2)
        r = run('fingerprint', '--key', self.key)
        self.assertEqual(r.returncode, 2)
        self.assertIn('--domain NAME, --pid PID or --host', r.stderr)


if __name__ == '__main__':
    unittest.main()
