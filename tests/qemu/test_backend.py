"""memory-backend-ksm, query-ksm-stats, ksm-unmerge and "info ksm" in the
built QEMU, without a guest: the qtest accelerator writes guest RAM
(`memset`), so pages can be made identical and merged by the real ksmd.

Run for one QEMU version, chosen by SAMEPAGE_QEMU_VERSION (7.2 or 10.0):
    PYTHONPATH=python SAMEPAGE_QEMU_VERSION=7.2 python3 -m samepage_dev.taprunner tests/qemu/test_backend.py
"""
import os
import re
import shutil
import tempfile
import time
import unittest

from samepage_dev.cgroups import MemoryCgroup, PidsCgroup
from samepage_dev.cli import host_stats, samepage
from samepage_dev.knobs import ksm_knobs
from samepage_dev.pages import independent_range_count, ram_range, smaps_mergeable
from samepage_dev.paths import PAGE, MiB
from samepage_dev.qmp import QMP, query_ksm_stats_fresh
from samepage_dev.testing import note, require_qemu, require_root
from samepage_dev.waits import wait_for, wait_full_scans

VERSION = os.environ.get('SAMEPAGE_QEMU_VERSION', '7.2')
GUEST_RAM_BASE = 0x100000   # fill above the first MiB (BIOS/VGA holes below)

# Scan fast while a test waits for merging.
FAST_KSM = dict(run=1, pages_to_scan=20000, sleep_millisecs=0)


class QemuTestCase(unittest.TestCase):
    """Starts the built QEMU with the qtest accelerator; every test gets its
    own QEMU and KSM knobs restored afterwards."""

    @classmethod
    def setUpClass(cls):
        require_root(cls)
        cls.paths = require_qemu(VERSION)

    def setUp(self):
        self.vms = []
        self.knobs = ksm_knobs()
        self.knobs.__enter__()
        self.addCleanup(self.knobs.__exit__, None, None, None)

    def tearDown(self):
        for vm in self.vms:
            for mon in getattr(vm, 'raw_monitors', []):
                mon.close()
            vm.shutdown()

    def launch(self, *args, machine='pc', ram='m0', mem=128, maxmem=None, monitors=0):
        """QEMU with guest RAM from backend `ram` (a memory-backend-ksm of
        `mem` MiB is added unless args create it)."""
        from qemu.machine.qtest import QEMUQtestMachine
        args = list(args)
        if ram and not any(f'id={ram},' in a for a in args):
            args += ['-object', f'memory-backend-ksm,id={ram},size={mem}M']
        machine_opt = f'{machine},memory-backend={ram}' if ram else machine
        m = f'size={mem}M' + (f',slots=2,maxmem={maxmem}' if maxmem else '')
        sock_dir = tempfile.mkdtemp(prefix='samepage-qmp-')
        self.addCleanup(shutil.rmtree, sock_dir, True)
        extra = [os.path.join(sock_dir, f'm{i}.sock') for i in range(monitors)]
        mon_args = [a for p in extra for a in ('-qmp', f'unix:{p},server=on,wait=off')]
        vm = QEMUQtestMachine(self.paths['qemu'],
                              args=['-nodefaults', '-machine', machine_opt, '-m', m, *args,
                                    *mon_args])
        vm.launch()
        vm.qmp_extra = extra
        vm.raw_monitors = []
        self.vms.append(vm)
        return vm

    def stats(self, vm, **kw):
        r = vm.qmp('query-ksm-stats', **kw)
        self.assertIn('return', r, r)
        return r['return']

    def fresh_stats(self, vm):
        """An exact answer with counts from a walk started after this call."""
        return query_ksm_stats_fresh(lambda **a: self.stats(vm, **a))

    def backend(self, vm, bid, exact=True):
        """A backend's figures: with exact counts from a fresh walk, or the
        default answer that costs no walk."""
        answer = self.fresh_stats(vm) if exact else self.stats(vm)
        for b in answer['backends']:
            if b['id'] == bid:
                return b
        self.fail(f'backend {bid} not in query-ksm-stats')

    def monitor(self, vm):
        """A second QMP monitor of vm, spoken to directly (samepage_dev.qmp:
        several requests can go out before any answer is read)."""
        mon = QMP(vm.qmp_extra[len(vm.raw_monitors)], timeout=60)
        vm.raw_monitors.append(mon)
        return mon.connect(wait=0)

    def assert_alive(self, vm):
        r = vm.qmp('query-status')
        self.assertIn('return', r, f'QEMU stopped answering: {r}')

    def fill_identical(self, vm, mib, value=0x5a):
        vm.qtest(f'memset {GUEST_RAM_BASE:#x} {mib * MiB:#x} {value:#x}')

    def merged_vm(self, mib=64, mem=128, machine='pc'):
        vm = self.launch('-object', f'memory-backend-ksm,id=m0,size={mem}M', mem=mem,
                         machine=machine, monitors=1)
        self.fill_identical(vm, mib)
        samepage('set', *[f'{k}={v}' for k, v in FAST_KSM.items()])
        self.wait_merged(vm, 'm0', mib * MiB // PAGE * 9 // 10)
        return vm

    def wait_job(self, vm, job_id, timeout=60):
        seen = []
        def concluded():
            jobs = [j for j in vm.qmp('query-jobs')['return'] if j['id'] == job_id]
            if jobs:
                seen.append(jobs[0])
            return jobs and jobs[0]['status'] == 'concluded'
        wait_for(concluded, timeout, interval=0.01, what=f'job {job_id} to conclude')
        return seen

    def pause_then_cancel(self, vm, bid):
        """Start unmerging bid, paused at its first chunk boundary (the
        pause goes out in the same write as the command), then cancel."""
        mon = vm.raw_monitors[0] if vm.raw_monitors else self.monitor(vm)
        for attempt in range(5):
            mon.send({'execute': 'ksm-unmerge',
                      'arguments': {'id': bid, 'job-id': 'c', 'auto-dismiss': False}},
                     {'execute': 'job-pause', 'arguments': {'id': 'c'}})
            self.assertEqual(mon.read(), {'return': {}})
            r = mon.read()
            if r == {'return': {}}:
                break
            # A job with nothing to do may conclude before the pause is
            # read: that attempt tells nothing; start again.
            self.assertIn('concluded', r['error']['desc'])
            self.wait_job(vm, 'c')
            self.assertEqual(vm.qmp('job-dismiss', id='c'), {'return': {}})
        else:
            self.fail('the job always concluded before it could be paused')

        def paused():
            jobs = vm.qmp('query-jobs')['return']
            return jobs and jobs[0]['status'] in ('paused', 'standby')
        wait_for(paused, 30, interval=0.01, what='the job to pause')
        self.assertEqual(vm.qmp('job-cancel', id='c'), {'return': {}})
        final = self.wait_job(vm, 'c')[-1]
        self.assertGreater(final['current-progress'], 0, 'a first chunk was done')
        self.assertLess(final['current-progress'], final['total-progress'])
        return final

    def wait_merged(self, vm, bid, pages, timeout=60):
        return wait_for(lambda: self.backend(vm, bid)['merged-pages'] >= pages, timeout,
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
                cheap = {b['id']: b for b in self.stats(vm)['backends']}
                by_id = {b['id']: b for b in self.fresh_stats(vm)['backends']}
                # Without a walk: what QEMU registered; the stock backend's
                # merge=off proves nothing under mem-merge=on.
                self.assertEqual((cheap['m0']['mergeable'], cheap['off']['mergeable']),
                                 (True, False))
                if mem_merge == 'on':
                    self.assertNotIn('mergeable', cheap['ram'])
                else:
                    self.assertFalse(cheap['ram']['mergeable'])
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
                    start, length = ram_range(pid, size)
                    self.assertEqual(smaps_mergeable(pid, start, length),
                                     size if by_id[bid]['merge'] else 0, bid)
                vm.shutdown()
                self.vms.remove(vm)

    def test_qom_set_merge_toggles(self):
        vm = self.launch('-object', 'memory-backend-ksm,id=m0,size=128M')
        pid = vm.get_pid()
        start, length = ram_range(pid, 128 * MiB)
        for value in (False, True, False):
            self.assertEqual(vm.qmp('qom-set', path='/objects/m0', property='merge', value=value),
                             {'return': {}})
            b = self.backend(vm, 'm0')
            self.assertEqual(b['merge'], value)
            self.assertEqual(b['mergeable'], value)
            self.assertEqual(smaps_mergeable(pid, start, length), length if value else 0)

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
        samepage('set', 'run=0')
        host = self.stats(vm)['host']
        mine = host_stats()
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
        answer = self.stats(vm)
        self.assertNotIn('count', answer)
        for key in ('merged-pages', 'resident-pages', 'zero-pages', 'mergeable-size',
                    'counted-by'):
            self.assertNotIn(key, answer['backends'][0])
        b = self.backend(vm, 'm0')
        self.assertEqual(b['counted-by'], 'walk')
        for key in ('merged-pages', 'resident-pages', 'zero-pages', 'mergeable-size'):
            self.assertIn(key, b)
        for bad in ({'max-age': -1, 'exact': True}, {'max-age': 5}, {'max-age': 'x'}):
            r = vm.qmp('query-ksm-stats', **bad)
            self.assertIn('error', r, bad)
            self.assertIn('max-age', r['error']['desc'])

    def test_info_ksm(self):
        vm = self.launch('-object', 'memory-backend-ksm,id=m0,size=128M')
        out = vm.qmp('human-monitor-command', **{'command-line': 'info ksm'})['return']
        self.assertRegex(out, r'KSM: (running|stopped)')
        self.assertRegex(out, r'\nm0 +memory-backend-ksm +128 +on +yes')


class TestUnmerge(QemuTestCase):
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
        wait_full_scans(2)
        self.assertEqual(self.backend(vm, 'm0')['merged-pages'], 0)

    def test_unmerge_cancel(self):
        vm = self.merged_vm(mib=512, mem=1024)
        # No re-merging while the result is read; ksmd ends its batch first.
        samepage('set', 'run=0')
        time.sleep(0.5)
        # Pause at the first chunk boundary, then cancel: deterministic.
        final = self.pause_then_cancel(vm, 'm0')
        self.assertIn('error', final)
        b = self.backend(vm, 'm0')
        self.assertTrue(b['merge'], 'a cancelled unmerge leaves merge on')
        self.assertTrue(b['mergeable'], 'and the whole backend registered with KSM')
        self.assertGreater(b['merged-pages'], 0, 'pages not reached stay merged')
        # The job walks the backend from its start; the fill begins
        # GUEST_RAM_BASE into it.
        reached = final['current-progress'] // PAGE - GUEST_RAM_BASE // PAGE
        self.assertGreater(reached, 0)
        self.assertLessEqual(b['merged-pages'], 512 * MiB // PAGE - reached,
                             'pages the job reached were unmerged')
        self.assert_alive(vm)

    def test_unmerge_refused_without_headroom(self):
        # mem-merge=off, one mergeable backend: this process's own counters
        # are the need, and the command refuses at once.
        vm = self.merged_vm(machine='pc,mem-merge=off')
        self.refused_without_headroom(vm, in_job=False)

    def test_unmerge_refused_without_headroom_counted_in_job(self):
        # mem-merge=on: ROMs and the like may hold merged pages too, so the
        # job counts the backend exactly in its thread, and fails untouched.
        vm = self.merged_vm()
        self.refused_without_headroom(vm, in_job=True)

    def refused_without_headroom(self, vm, in_job):
        cg = MemoryCgroup('qemu-unmerge', 1 << 40)
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
        r = vm.qmp('ksm-unmerge', id='m0', **{'job-id': 'h', 'auto-dismiss': False})
        if in_job:
            self.assertEqual(r, {'return': {}})
            final = self.wait_job(vm, 'h')[-1]
            desc = final.get('error', '')
            self.assertEqual(final['current-progress'], 0, 'nothing was unmerged')
            self.assertIn('counted', desc)
        else:
            self.assertIn('error', r)
            desc = r['error']['desc']
            self.assertEqual(vm.qmp('query-jobs')['return'], [])
        self.assertRegex(desc, r'may need \d+ MiB')
        self.assertRegex(desc, r'only \d+ MiB is available')
        self.assertIn('memory cgroup limit', desc)
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


class TestUnmergeRestores(QemuTestCase):
    """A cancelled or failed ksm-unmerge puts the backend back as it was,
    and never registers memory of a merge=off backend with KSM."""

    def test_cancel_merge_off_ksm_backend(self):
        vm = self.launch('-object', 'memory-backend-ksm,id=m0,size=128M',
                         '-object', 'memory-backend-ksm,id=off,size=4G,merge=off',
                         monitors=1)
        pid = vm.get_pid()
        start, length = ram_range(pid, 4096 * MiB)
        self.assertEqual(smaps_mergeable(pid, start, length), 0)
        self.pause_then_cancel(vm, 'off')
        self.assertEqual(smaps_mergeable(pid, start, length), 0,
                         'a cancelled unmerge registered merge=off memory with KSM')
        b = self.backend(vm, 'off')
        self.assertEqual((b['merge'], b['mergeable'], b['mergeable-size']), (False, False, 0))

    def test_cancel_libvirt_pc_ram_nosharepages(self):
        # libvirt's <nosharepages/>: -machine mem-merge=off and pc.ram a
        # memory-backend-ram (merge defaults to the machine's mem-merge).
        vm = self.launch('-object', 'memory-backend-ram,id=pc.ram,size=2G', ram='pc.ram',
                         mem=2048, machine='pc,mem-merge=off', monitors=1)
        pid = vm.get_pid()
        start, length = ram_range(pid, 2048 * MiB)
        self.fill_identical(vm, 200)
        self.assertEqual(smaps_mergeable(pid, start, length), 0)
        self.pause_then_cancel(vm, 'pc.ram')
        self.assertEqual(smaps_mergeable(pid, start, length), 0,
                         'a cancelled unmerge registered pc.ram with KSM under <nosharepages/>')
        self.assertFalse(self.backend(vm, 'pc.ram', exact=False)['mergeable'])

    def test_failed_unmerge_of_merge_off_backend(self):
        # Stock memory-backend-ram with merge=off under mem-merge=on: QEMU
        # registers it with KSM all the same, and its pages merge.  The
        # unmerge fails part-way for want of memory; what it took out of KSM
        # stays out, as merge=off asks.
        vm = self.launch('-object', 'memory-backend-ram,id=pc.ram,size=128M,merge=off',
                         ram='pc.ram')
        pid = vm.get_pid()
        start, length = ram_range(pid, 128 * MiB)
        self.assertEqual(smaps_mergeable(pid, start, length), length)
        self.fill_identical(vm, 96)
        samepage('set', *[f'{k}={v}' for k, v in FAST_KSM.items()])
        self.wait_merged(vm, 'pc.ram', 96 * MiB // PAGE * 9 // 10)
        samepage('set', 'run=0')
        time.sleep(0.5)

        cg = MemoryCgroup('qemu-unmerge-fail', 1 << 40)
        self.addCleanup(cg.remove)
        self.addCleanup(lambda: vm.shutdown())
        cg.add(pid)
        if cg.v2:
            # No OOM kill (nothing in the group may be killed): the charge
            # fails, and MADV_UNMERGEABLE says EAGAIN.
            with open(f'/proc/{pid}/oom_score_adj', 'w') as f:
                f.write('-1000')
            usage_file, limit_file, events = 'memory.current', 'memory.max', 'memory.events'
        else:
            cg._write('memory.oom_control', '1')
            usage_file, limit_file, events = ('memory.usage_in_bytes', 'memory.limit_in_bytes',
                                              'memory.failcnt')
        with open(os.path.join(cg.path, usage_file)) as f:
            usage = int(f.read())
        # Room for two 16 MiB chunks of copies, not for the third.
        cg._write(limit_file, str(usage + 40 * MiB))

        def hit_limit():
            with open(os.path.join(cg.path, events)) as f:
                text = f.read()
            if cg.v2:
                return int(re.search(r'^max (\d+)', text, re.M).group(1)) > 0
            return int(text) > 0
        r = vm.qmp('ksm-unmerge', id='pc.ram', force=True,
                   **{'job-id': 'f', 'auto-dismiss': False})
        self.assertEqual(r, {'return': {}})
        wait_for(hit_limit, 60, interval=0.01, what='the unmerge to reach the limit')
        time.sleep(1)       # libksm retries EAGAIN for 31 ms, then the job fails
        cg._write(limit_file, str(1 << 40))
        final = self.wait_job(vm, 'f')[-1]
        self.assertIn('error', final, final)
        done = final['current-progress']
        self.assertGreater(done, 0)
        self.assertLess(done, length)
        self.assertEqual(smaps_mergeable(pid, start, done), 0,
                         'a failed unmerge registered merge=off memory with KSM again')
        self.assert_alive(vm)


class TestNoThreadToSpare(QemuTestCase):
    """Where QEMU can start no thread (a pids limit here; a memory cgroup
    at its limit refuses a thread's stack the same way), ksm-unmerge and
    exact counts are refused with an error and QEMU keeps running: they
    never ask QEMU's thread pool, which aborts QEMU when it cannot grow."""

    def test_refused_then_done_once_the_limit_is_raised(self):
        vm = self.launch('-object', 'memory-backend-ksm,id=m0,size=128M')
        pid = vm.get_pid()
        self.fill_identical(vm, 16)
        cg = PidsCgroup('qemu-no-thread')
        self.addCleanup(cg.remove)
        self.addCleanup(lambda: vm.shutdown())
        cg.add(pid)
        cg.limit(cg.current())

        for cmd, args in (('ksm-unmerge', {'id': 'm0', 'force': True}),
                          ('query-ksm-stats', {'exact': True})):
            r = vm.qmp(cmd, **args)
            self.assertIn('error', r, f'{cmd} with no thread to spare: {r}')
            self.assertIn('none could be started', r['error']['desc'])
            self.assert_alive(vm)
        self.assertEqual(vm.qmp('query-jobs'), {'return': []}, 'a refused unmerge left a job')
        self.assertNotIn('count', self.stats(vm), 'the default answer needs no thread')

        cg.limit(None)
        r = vm.qmp('ksm-unmerge', id='m0', force=True, **{'job-id': 'u', 'auto-dismiss': False})
        self.assertEqual(r, {'return': {}})
        self.assertNotIn('error', self.wait_job(vm, 'u')[-1])
        self.assertEqual(self.stats(vm, exact=True, **{'max-age': 0})['count']['walks'], 1)
        self.assert_alive(vm)


class TestWalk(QemuTestCase):
    """Exact counts come from walks in a worker thread: the default answer
    walks nothing, concurrent callers share a walk, a backend deleted
    during a walk is answered clearly, and the counts are right."""

    def merged(self, vm, bid, mib, base=GUEST_RAM_BASE):
        vm.qtest(f'memset {base:#x} {mib * MiB:#x} 0x5a')
        samepage('set', *[f'{k}={v}' for k, v in FAST_KSM.items()])
        wait_for(lambda: self.backend(vm, bid)['merged-pages'] >= mib * MiB // PAGE * 9 // 10,
                 120, what=f'{mib} MiB merged in {bid}')
        samepage('set', 'run=0')
        time.sleep(0.3)

    def test_default_answer_walks_nothing(self):
        vm = self.launch('-object', 'memory-backend-ksm,id=m0,size=128M')
        for _ in range(5):
            answer = self.stats(vm)
            self.assertNotIn('count', answer)
            self.assertNotIn('resident-pages', answer['backends'][0])
        count = self.stats(vm, exact=True, **{'max-age': 10 ** 9})['count']
        self.assertEqual((count['walks'], count['counting']), (1, True),
                         'the default answers started no walk')
        self.assertNotIn('age', count, 'no walk had finished')

    def test_process_counter_attribution(self):
        vm = self.launch('-object', 'memory-backend-ksm,id=m0,size=128M',
                         '-object', 'memory-backend-ksm,id=off,size=16M,merge=off',
                         machine='pc,mem-merge=off')
        self.merged(vm, 'm0', 64)
        with open(f'/proc/{vm.get_pid()}/ksm_stat') as f:
            merging = int(re.search(r'^ksm_merging_pages (\d+)', f.read(), re.M).group(1))
        by_id = {b['id']: b for b in self.stats(vm)['backends']}
        self.assertEqual((by_id['m0']['counted-by'], by_id['m0']['merged-pages']),
                         ('process', merging))
        self.assertNotIn('merged-pages', by_id['off'])
        # A second mergeable backend: the counter is no longer one backend's.
        self.assertEqual(vm.qmp('object-add', **{'qom-type': 'memory-backend-ksm',
                                                 'id': 'b2', 'size': 16 * MiB}), {'return': {}})
        for b in self.stats(vm)['backends']:
            self.assertNotIn('merged-pages', b, b['id'])

    def test_no_attribution_under_mem_merge(self):
        vm = self.launch('-object', 'memory-backend-ksm,id=m0,size=128M')
        for b in self.stats(vm)['backends']:
            self.assertNotIn('merged-pages', b, 'ROMs are registered too under mem-merge=on')

    def test_counts_agree_with_independent_count(self):
        vm = self.launch('-object', 'memory-backend-ksm,id=m0,size=128M')
        self.merged(vm, 'm0', 64)
        pid = vm.get_pid()
        for _ in range(3):
            first = self.backend(vm, 'm0')
            mine = independent_range_count(pid, *ram_range(pid, 128 * MiB))
            again = self.backend(vm, 'm0')
            keys = ('merged-pages', 'zero-pages', 'resident-pages')
            if all(first[k] == again[k] for k in keys):
                break
            note(f'figures moved ({first} -> {again}): again')
        self.assertEqual((first['merged-pages'], first['zero-pages'], first['resident-pages']),
                         (mine['ksm'], mine['zero'], mine['present']))
        self.assertGreater(first['merged-pages'], 64 * MiB // PAGE * 9 // 10)

    def test_concurrent_exact_requests_share_one_walk(self):
        n = 8
        vm = self.launch('-object', 'memory-backend-ksm,id=m0,size=512M', mem=512, monitors=n)
        self.merged(vm, 'm0', 384)
        walks = self.fresh_stats(vm)['count']['walks']
        mons = [self.monitor(vm) for _ in range(n)]
        for mon in mons:
            mon.send({'execute': 'query-ksm-stats', 'arguments': {'exact': True, 'max-age': 0}})
        answers = [mon.read() for mon in mons]
        for a in answers:
            self.assertIn('return', a, a)
            self.assertEqual(a['return']['count']['walks'], walks + 1, 'one walk for all')
        self.assertTrue(answers[0]['return']['count']['counting'])
        b = self.backend(vm, 'm0')
        self.assertGreater(b['merged-pages'], 0)

    def dimm_vm(self, mib):
        vm = self.launch(maxmem='4G', monitors=1)
        self.assertEqual(vm.qmp('object-add', **{'qom-type': 'memory-backend-ksm', 'id': 'hp',
                                                 'size': mib * MiB}), {'return': {}})
        self.assertEqual(vm.qmp('device_add', driver='pc-dimm', id='dimm0', memdev='hp'),
                         {'return': {}})
        addr = vm.qmp('query-memory-devices')['return'][0]['data']['addr']
        self.merged(vm, 'hp', mib - 1, base=addr)
        return vm

    def eject_dimm(self, vm):
        """The guest's side of device_del: ACPI memory hotplug eject of slot
        0 (selector at 0xa00, command at 0xa14), through qtest."""
        vm.qtest('outl 0xa00 0x0')
        vm.qtest('outl 0xa14 0x8')

    def test_unplug_during_walk(self):
        vm = self.dimm_vm(512)
        pid = vm.get_pid()
        self.assertIsNotNone(ram_range(pid, 512 * MiB))
        mon = self.monitor(vm)
        self.assertEqual(vm.qmp('device_del', id='dimm0'), {'return': {}})
        mon.send({'execute': 'query-ksm-stats', 'arguments': {'exact': True, 'max-age': 0}})
        self.eject_dimm(vm)
        mon.send({'execute': 'object-del', 'arguments': {'id': 'hp'}})
        started = mon.read()['return']['count']
        self.assertTrue(started['counting'])
        self.assertEqual(mon.read(), {'return': {}}, 'object-del during the walk')
        wait_for(lambda: not self.stats(vm, exact=True, **{'max-age': 10 ** 9})['count']['counting'],
                 60, interval=0.01, what='the walk to end')
        answer = self.stats(vm, exact=True, **{'max-age': 10 ** 9})
        self.assertEqual(answer['count']['removed'], ['hp'])
        self.assertEqual(answer['count']['walks'], started['walks'])
        self.assertNotIn('hp', [b['id'] for b in answer['backends']])
        # Freed once the walk dropped its reference (QEMU unmaps RAM blocks
        # after an RCU grace period).
        def freed():
            left = ram_range(pid, 512 * MiB)
            return not (left and left[1] == 512 * MiB)
        wait_for(freed, 30, interval=0.05, what='hp\'s memory to be unmapped')
        self.assert_alive(vm)

    def test_unplug_during_unmerge_preflight(self):
        vm = self.dimm_vm(256)
        pid = vm.get_pid()
        cg = MemoryCgroup('qemu-preflight', 1 << 40)
        self.addCleanup(cg.remove)
        self.addCleanup(lambda: vm.shutdown())
        cg.add(pid)
        usage_file = 'memory.current' if cg.v2 else 'memory.usage_in_bytes'
        with open(os.path.join(cg.path, usage_file)) as f:
            usage = int(f.read())
        cg._write('memory.max' if cg.v2 else 'memory.limit_in_bytes', str(usage + 24 * MiB))
        self.assertEqual(vm.qmp('device_del', id='dimm0'), {'return': {}})
        # mem-merge=on: the counters bound the need too loosely, so the job
        # counts hp in its thread first; hp goes away meanwhile.
        r = vm.qmp('ksm-unmerge', id='hp', **{'job-id': 'p', 'auto-dismiss': False})
        self.assertEqual(r, {'return': {}})
        self.eject_dimm(vm)
        self.assertEqual(vm.qmp('object-del', id='hp'), {'return': {}})
        final = self.wait_job(vm, 'p')[-1]
        self.assertIn('refused', final.get('error', ''), final)
        self.assertEqual(final['current-progress'], 0)
        self.assertEqual(vm.qmp('job-dismiss', id='p'), {'return': {}})
        self.assertNotIn('hp', [b['id'] for b in self.stats(vm)['backends']])
        self.assert_alive(vm)


if __name__ == '__main__':
    unittest.main()
