"""memory-backend-ksm, query-ksm-stats, ksm-unmerge and "info ksm" in the
built QEMU, without a guest: the qtest accelerator writes guest RAM
(`memset`), so pages can be made identical and merged by the real ksmd.

Run for one QEMU version, chosen by SAMEPAGE_QEMU_VERSION (7.2 or 10.0):
    SAMEPAGE_QEMU_VERSION=7.2 tests/pylib/taprunner.py tests/qemu/test_backend.py
"""
import os
import time
import unittest

import samepage as sp

VERSION = os.environ.get('SAMEPAGE_QEMU_VERSION', '7.2')
MiB = 1 << 20
GUEST_RAM_BASE = 0x100000   # fill above the first MiB (BIOS/VGA holes below)

# Scan fast while a test waits for merging.
FAST_KSM = dict(run=1, pages_to_scan=20000, sleep_millisecs=0)


class QemuTestCase(unittest.TestCase):
    """Starts the built QEMU with the qtest accelerator; every test gets its
    own QEMU and KSM knobs restored afterwards."""

    @classmethod
    def setUpClass(cls):
        sp.require_root(cls)
        cls.paths = sp.require_qemu(VERSION)

    def setUp(self):
        self.vms = []
        self.knobs = sp.ksm_knobs()
        self.knobs.__enter__()
        self.addCleanup(self.knobs.__exit__, None, None, None)

    def tearDown(self):
        for vm in self.vms:
            vm.shutdown()

    def launch(self, *args, machine='pc', ram='m0', mem=128, maxmem=None):
        """QEMU with guest RAM from backend `ram` (a memory-backend-ksm of
        `mem` MiB is added unless args create it)."""
        from qemu.machine.qtest import QEMUQtestMachine
        args = list(args)
        if ram and not any(f'id={ram},' in a for a in args):
            args += ['-object', f'memory-backend-ksm,id={ram},size={mem}M']
        machine_opt = f'{machine},memory-backend={ram}' if ram else machine
        m = f'size={mem}M' + (f',slots=2,maxmem={maxmem}' if maxmem else '')
        vm = QEMUQtestMachine(self.paths['qemu'],
                              args=['-nodefaults', '-machine', machine_opt, '-m', m, *args])
        vm.launch()
        self.vms.append(vm)
        return vm

    def stats(self, vm, **kw):
        r = vm.qmp('query-ksm-stats', **kw)
        self.assertIn('return', r, r)
        return r['return']

    def backend(self, vm, bid, **kw):
        for b in self.stats(vm, **kw)['backends']:
            if b['id'] == bid:
                return b
        self.fail(f'backend {bid} not in query-ksm-stats')

    def assert_alive(self, vm):
        r = vm.qmp('query-status')
        self.assertIn('return', r, f'QEMU stopped answering: {r}')

    def fill_identical(self, vm, mib, value=0x5a):
        vm.qtest(f'memset {GUEST_RAM_BASE:#x} {mib * MiB:#x} {value:#x}')

    def wait_merged(self, vm, bid, pages, timeout=60):
        return sp.wait_for(lambda: self.backend(vm, bid)['merged-pages'] >= pages, timeout,
                           what=f'{pages} merged pages in {bid}')


class TestType(QemuTestCase):
    def test_type_and_properties(self):
        vm = self.launch()
        types = [t['name'] for t in vm.qmp('qom-list-types', implements='memory-backend')['return']]
        self.assertIn('memory-backend-ksm', types)
        props = {p['name'] for p in vm.qmp('qom-list-properties', typename='memory-backend-ksm')['return']}
        for p in ('size', 'merge', 'share', 'prealloc', 'reserve', 'dump', 'host-nodes', 'policy'):
            self.assertIn(p, props)

    def test_merge_is_the_truth_under_both_mem_merge(self):
        for mem_merge in ('on', 'off'):
            with self.subTest(mem_merge=mem_merge):
                vm = self.launch('-object', 'memory-backend-ksm,id=m0,size=128M',
                                 '-object', 'memory-backend-ksm,id=off,size=48M,merge=off',
                                 '-object', 'memory-backend-ram,id=ram,size=32M,merge=off',
                                 machine=f'pc,mem-merge={mem_merge}')
                pid = vm.get_pid()
                by_id = {b['id']: b for b in self.stats(vm)['backends']}
                self.assertEqual(by_id['m0']['merge'], True)
                self.assertEqual(by_id['m0']['mergeable'], True)
                self.assertEqual(by_id['off']['merge'], False)
                self.assertEqual(by_id['off']['mergeable'], False)
                self.assertEqual(by_id['off']['mergeable-size'], 0)
                # Stock memory-backend-ram: merge=off is ignored under
                # mem-merge=on, and query-ksm-stats says so.
                self.assertEqual(by_id['ram']['mergeable'], mem_merge == 'on')
                # The test's own reading of smaps agrees.
                for bid, size in (('m0', 128 * MiB), ('off', 48 * MiB)):
                    start, length = sp.ram_range(pid, size)
                    self.assertEqual(sp.smaps_mergeable(pid, start, length),
                                     size if by_id[bid]['merge'] else 0, bid)
                vm.shutdown()
                self.vms.remove(vm)

    def test_qom_set_merge_toggles(self):
        vm = self.launch('-object', 'memory-backend-ksm,id=m0,size=128M')
        pid = vm.get_pid()
        start, length = sp.ram_range(pid, 128 * MiB)
        for value in (False, True, False):
            self.assertEqual(vm.qmp('qom-set', path='/objects/m0', property='merge', value=value),
                             {'return': {}})
            b = self.backend(vm, 'm0')
            self.assertEqual(b['merge'], value)
            self.assertEqual(b['mergeable'], value)
            self.assertEqual(sp.smaps_mergeable(pid, start, length), length if value else 0)

    def test_share_on_refused(self):
        vm = self.launch()
        r = vm.qmp('object-add', **{'qom-type': 'memory-backend-ksm', 'id': 's', 'size': MiB,
                                    'share': True})
        self.assertIn('error', r)
        self.assertIn('share=on', r['error']['desc'])
        self.assertIn('KSM', r['error']['desc'])
        self.assertNotIn('s', [b['id'] for b in self.stats(vm)['backends']])
        self.assert_alive(vm)

    def test_hotplug_backend_appears(self):
        vm = self.launch(maxmem='1G')
        self.assertEqual(vm.qmp('object-add', **{'qom-type': 'memory-backend-ksm', 'id': 'hp',
                                                 'size': 64 * MiB}), {'return': {}})
        self.assertEqual(vm.qmp('device_add', driver='pc-dimm', id='dimm0', memdev='hp'),
                         {'return': {}})
        b = self.backend(vm, 'hp')
        self.assertEqual((b['type'], b['size'], b['mergeable']), ('memory-backend-ksm', 64 * MiB, True))


class TestStats(QemuTestCase):
    def test_lists_every_backend(self):
        vm = self.launch('-object', 'memory-backend-ksm,id=m0,size=128M',
                         '-object', 'memory-backend-ksm,id=b,size=16M',
                         '-object', 'memory-backend-ram,id=r,size=8M',
                         '-object', 'memory-backend-memfd,id=fd,size=4M,share=on')
        got = {b['id']: (b['type'], b['size']) for b in self.stats(vm)['backends']}
        self.assertEqual(got, {'m0': ('memory-backend-ksm', 128 * MiB),
                               'b': ('memory-backend-ksm', 16 * MiB),
                               'r': ('memory-backend-ram', 8 * MiB),
                               'fd': ('memory-backend-memfd', 4 * MiB)})
        fd = self.backend(vm, 'fd')
        self.assertFalse(fd['mergeable'], 'shared memfd memory never merges')

    def test_libvirt_style_pc_ram(self):
        # libvirt starts guests with -machine memory-backend=pc.ram and a
        # memory-backend-ram object of that id.
        vm = self.launch('-object', 'memory-backend-ram,id=pc.ram,size=128M', ram='pc.ram')
        b = self.backend(vm, 'pc.ram')
        self.assertEqual((b['type'], b['size']), ('memory-backend-ram', 128 * MiB))

    def test_host_figures_agree_with_libksm(self):
        vm = self.launch('-object', 'memory-backend-ksm,id=m0,size=128M')
        # ksmd stopped: the counters hold still while both are read.
        sp.samepage('set', 'run=0')
        host = self.stats(vm)['host']
        mine = sp.host_stats()
        self.assertTrue(host['available'])
        theirs = {**mine['knobs'], **mine['counters']}
        theirs['advisor_mode'] = theirs.get('advisor_mode')
        for name, value in theirs.items():
            key = name.replace('_', '-')
            self.assertIn(key, host, f'{key} missing from query-ksm-stats')
            self.assertEqual(host[key], value, key)
        self.assertEqual({f['name'] for f in host['other']}, set(mine.get('unknown', {})))

    def test_exact_counts_optional(self):
        vm = self.launch('-object', 'memory-backend-ksm,id=m0,size=128M')
        b = self.backend(vm, 'm0', exact=False)
        self.assertNotIn('merged-pages', b)
        b = self.backend(vm, 'm0')
        self.assertIn('merged-pages', b)

    def test_info_ksm(self):
        vm = self.launch('-object', 'memory-backend-ksm,id=m0,size=128M')
        out = vm.qmp('human-monitor-command', **{'command-line': 'info ksm'})['return']
        self.assertRegex(out, r'KSM: (running|stopped)')
        self.assertRegex(out, r'\nm0 +memory-backend-ksm +128 +on +yes')


class TestUnmerge(QemuTestCase):
    def merged_vm(self, mib=64, mem=128):
        vm = self.launch('-object', f'memory-backend-ksm,id=m0,size={mem}M', mem=mem)
        self.fill_identical(vm, mib)
        sp.samepage('set', *[f'{k}={v}' for k, v in FAST_KSM.items()])
        self.wait_merged(vm, 'm0', mib * MiB // sp.PAGE * 9 // 10)
        return vm

    def wait_job(self, vm, job_id, timeout=60):
        seen = []
        def concluded():
            jobs = [j for j in vm.qmp('query-jobs')['return'] if j['id'] == job_id]
            if jobs:
                seen.append(jobs[0])
            return jobs and jobs[0]['status'] == 'concluded'
        sp.wait_for(concluded, timeout, interval=0.01, what=f'job {job_id} to conclude')
        return seen

    def test_unmerge_job(self):
        vm = self.merged_vm()
        r = vm.qmp('ksm-unmerge', id='m0', **{'job-id': 'u', 'auto-dismiss': False})
        self.assertEqual(r, {'return': {}})
        seen = self.wait_job(vm, 'u')
        final = seen[-1]
        self.assertEqual(final['type'], 'ksm-unmerge')
        self.assertEqual(final['current-progress'], final['total-progress'])
        self.assertEqual(final['total-progress'], 128 * MiB)
        self.assertNotIn('error', final)
        progress = [j['current-progress'] for j in seen]
        self.assertEqual(progress, sorted(progress), 'progress went backwards')
        self.assertEqual(vm.qmp('job-dismiss', id='u'), {'return': {}})
        b = self.backend(vm, 'm0')
        self.assertEqual((b['merged-pages'], b['merge'], b['mergeable']), (0, False, False))
        # ksmd keeps running: the pages stay unmerged.
        sp.wait_full_scans(2)
        self.assertEqual(self.backend(vm, 'm0')['merged-pages'], 0)

    def test_unmerge_cancel(self):
        vm = self.merged_vm(mib=512, mem=1024)
        # No re-merging while the result is read; ksmd ends its batch first.
        sp.samepage('set', 'run=0')
        time.sleep(0.5)
        # Pause at the first chunk boundary, then cancel: deterministic.
        r = vm.qmp('ksm-unmerge', id='m0', **{'job-id': 'c', 'auto-dismiss': False})
        self.assertEqual(r, {'return': {}})
        vm.qmp('job-pause', id='c')
        self.assertEqual(vm.qmp('job-cancel', id='c'), {'return': {}})
        final = self.wait_job(vm, 'c')[-1]
        self.assertLess(final['current-progress'], final['total-progress'])
        self.assertIn('error', final)
        b = self.backend(vm, 'm0')
        self.assertTrue(b['merge'], 'a cancelled unmerge leaves merge on')
        self.assertTrue(b['mergeable'], 'and the whole backend registered with KSM')
        self.assertGreater(b['merged-pages'], 0, 'pages not reached stay merged')
        # The job walks the backend from its start; the fill begins
        # GUEST_RAM_BASE into it.
        reached = final['current-progress'] // sp.PAGE - GUEST_RAM_BASE // sp.PAGE
        self.assertGreater(reached, 0)
        self.assertLessEqual(b['merged-pages'], 512 * MiB // sp.PAGE - reached,
                             'pages the job reached were unmerged')
        self.assert_alive(vm)

    def test_unmerge_refused_without_headroom(self):
        vm = self.merged_vm()
        cg = sp.MemoryCgroup('qemu-unmerge', 1 << 40)
        self.addCleanup(cg.remove)
        self.addCleanup(lambda: vm.shutdown())
        cg.add(vm.get_pid())
        # Usage is what this QEMU charges from now on; leave it 24 MiB of room:
        # enough for QEMU's own allocations, far less than the 64 MiB the
        # unmerge may need.
        usage_file = 'memory.current' if cg.v2 else 'memory.usage_in_bytes'
        with open(os.path.join(cg.path, usage_file)) as f:
            usage = int(f.read())
        cg._write('memory.max' if cg.v2 else 'memory.limit_in_bytes', str(usage + 24 * MiB))
        before = self.backend(vm, 'm0')
        r = vm.qmp('ksm-unmerge', id='m0')
        self.assertIn('error', r)
        desc = r['error']['desc']
        self.assertRegex(desc, r'may need \d+ MiB')
        self.assertRegex(desc, r'only \d+ MiB is available')
        self.assertIn('memory cgroup limit', desc)
        self.assertEqual(vm.qmp('query-jobs')['return'], [])
        after = self.backend(vm, 'm0')
        self.assertEqual((after['merge'], after['mergeable']), (True, True))
        self.assertGreaterEqual(after['merged-pages'], before['merged-pages'] * 9 // 10)

    def test_bad_input(self):
        vm = self.launch('-object', 'memory-backend-ksm,id=m0,size=128M',
                         '-object', 'secret,id=sec0,data=x')
        cases = [
            ({'id': 'nope'}, "no object with id 'nope'"),
            ({'id': 'sec0'}, "'sec0' is a secret, not a memory backend"),
            ({'id': 5}, "'id'"),
            ({'force': 'yes'}, "'force'"),
            ({'bogus': 1}, 'bogus'),
        ]
        for args, expect in cases:
            with self.subTest(args=args):
                r = vm.qmp('ksm-unmerge', **args)
                self.assertIn('error', r)
                self.assertIn(expect, r['error']['desc'])
                self.assert_alive(vm)
        # A duplicate job id.
        self.assertEqual(vm.qmp('ksm-unmerge', id='m0', **{'job-id': 'j', 'auto-dismiss': False}),
                         {'return': {}})
        self.wait_job(vm, 'j')
        r = vm.qmp('ksm-unmerge', id='m0', **{'job-id': 'j'})
        self.assertIn("'j'", r['error']['desc'])
        # Negative and absurd sizes.
        for size in (-1, 1 << 60):
            r = vm.qmp('object-add', **{'qom-type': 'memory-backend-ksm', 'id': f's{size & 0xff}',
                                        'size': size})
            self.assertIn('error', r, size)
            self.assert_alive(vm)
        r = vm.qmp('query-ksm-stats', exact='yes')
        self.assertIn('error', r)
        self.assert_alive(vm)


if __name__ == '__main__':
    unittest.main()
