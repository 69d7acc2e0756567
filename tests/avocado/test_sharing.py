"""Guests sharing memory through memory-backend-ksm, and query-ksm-stats
telling the truth about it (issue 5).

Real guests (scripts/make-guest) fill memory with a pattern derived from a
seed: two guests with the same seed hold FILL_PAGES page pairs KSM can
merge, guests with different seeds hold none.  Besides the fill, two guests
of the same kernel and initramfs share some memory of their own (kernel
text, the initramfs): the tests tell the fill's pages apart by reading
them (fill_census) instead of guessing how much that is.

    PYTHONPATH=python SAMEPAGE_QEMU_VERSION=7.2 /usr/bin/python3 -m samepage_dev.taprunner tests/avocado/test_sharing.py
"""


from samepage_dev.cli import host_value
from samepage_dev.paths import PAGE, MiB
from samepage_dev.testing import note
from samepage_dev.testing.guesttest import (FILL_MIB, FILL_PAGES, GUEST_MIB, SEED, SEED_HOTPLUG,
                                            SEED_OTHER, GuestTest)
from samepage_dev.waits import wait_for

class SameSeed(GuestTest):
    def test_same_seed_merges(self):
        """Two guests, one fill seed: each backend's merged pages cover the
        fill, the host's pages_sharing rose, and the figures equal the
        test's own pagemap/kpageflags count."""
        a, b = self.filled_guests(('a', SEED), ('b', SEED))
        self.wait_fill_merged([a, b], SEED)
        with self.frozen(a, b):
            sharing = host_value('pages_sharing')
            for g in (a, b):
                fig = self.assert_counts_agree(g)
                census = g.fill_census(SEED)
                note(f'{g.short}: merged-pages {fig["merged-pages"]} of which fill '
                     f'{census["fill_ksm"]}/{census["fill"]}, zero-pages {fig["zero-pages"]}, '
                     f'resident {fig["resident-pages"]}')
                self.assertEqual(census['fill'], FILL_PAGES, 'the whole fill is in guest RAM')
                self.assertGreaterEqual(census['fill_ksm'], FILL_PAGES * 98 // 100,
                                        'the fill merged')
                # Close to the fill size: the fill plus what the two kernels share.
                self.assertGreaterEqual(fig['merged-pages'], census['fill_ksm'])
                self.assertLess(fig['merged-pages'], FILL_PAGES * 2)
                self.assertTrue(fig['merge'] and fig['mergeable'])
        # Each fill page pair is one KSM page and one more mapping of it.
        note(f'host pages_sharing {sharing}')
        self.assertGreaterEqual(sharing, FILL_PAGES * 98 // 100)

    def test_merge_off_never_merged(self):
        """Next to two merging guests, a third with the same fill on
        memory-backend-ksm merge=off is never merged, under the default
        mem-merge=on and under mem-merge=off."""
        fill = dict(workload='fill', mib=FILL_MIB, seed=SEED)
        a, b = self.guest('a', **fill), self.guest('b', **fill)
        c = self.guest('off-memmerge-on', ram_opts=',merge=off', **fill)
        d = self.guest('off-memmerge-off', ram_opts=',merge=off', machine_opts=',mem-merge=off',
                       **fill)
        for g in (a, b, c, d):
            g.wait_filled(timeout=180)
        self.wait_fill_merged([a, b], SEED)
        self.wait_full_scans(2, timeout=120)   # c and d's pages had their chances
        with self.frozen(a, b, c, d):
            for g in (c, d):
                fig = self.assert_counts_agree(g)
                self.assertEqual((fig['merge'], fig['mergeable'], fig['mergeable-size'],
                                  fig['merged-pages']), (False, False, 0, 0), g.short)
                self.assertEqual(g.smaps_mergeable(), 0, f'{g.short}: "mg" in smaps')
                census = g.fill_census(SEED)
                self.assertEqual((census['fill'], census['fill_ksm']), (FILL_PAGES, 0), g.short)
            for g in (a, b):
                self.assertGreaterEqual(g.fill_census(SEED)['fill_ksm'], FILL_PAGES * 98 // 100)
        self.assert_alive(c)


class DifferentSeeds(GuestTest):
    def test_different_seeds_little_sharing(self):
        """Two guests, different seeds: none of the fill merges; what does
        merge (kernel, initramfs) is less than the fill, and query-ksm-stats
        says exactly that."""
        a, b = self.filled_guests(('a', SEED), ('b', SEED_OTHER))
        self.wait_full_scans(3, timeout=120)
        with self.frozen(a, b):
            for g, seed in ((a, SEED), (b, SEED_OTHER)):
                fig = self.assert_counts_agree(g)
                census = g.fill_census(seed)
                note(f'{g.short}: merged-pages {fig["merged-pages"]} (fill {census["fill_ksm"]}'
                     f'/{census["fill"]}), resident {fig["resident-pages"]}')
                self.assertEqual(census, {'fill': FILL_PAGES, 'fill_ksm': 0})
                self.assertLessEqual(fig['merged-pages'], fig['resident-pages'] - FILL_PAGES)
                self.assertLess(fig['merged-pages'], FILL_PAGES)


class LibvirtStyle(GuestTest):
    def test_pc_ram_listed(self):
        """-object memory-backend-ram,id=pc.ram + -machine memory-backend=pc.ram,
        the way libvirt starts guests: query-ksm-stats lists that backend,
        mergeable (stock QEMU under mem-merge=on), with exact counts."""
        g = self.guest('libvirt', workload='fill', mib=FILL_MIB, seed=SEED,
                       ram_type='memory-backend-ram', ram_id='pc.ram')
        g.wait_filled(timeout=180)
        backends = g.ksm_stats()['backends']
        self.assertEqual([(x['id'], x['type'], x['size']) for x in backends],
                         [('pc.ram', 'memory-backend-ram', GUEST_MIB * MiB)])
        with self.frozen(g):
            fig = self.assert_counts_agree(g, 'pc.ram')
            self.assertTrue(fig['mergeable'])
            self.assertEqual(g.fill_census(SEED, 'pc.ram')['fill'], FILL_PAGES)
        info = g.cmd('human-monitor-command', **{'command-line': 'info ksm'})
        self.assertRegex(info, r'\npc\.ram +memory-backend-ram +256 ')


class Hotplug(GuestTest):
    HP_MIB = 128
    HP_FILL = 96

    def test_hotplug_backend_merges(self):
        """object-add memory-backend-ksm + device_add pc-dimm into two
        running guests: the backend appears in query-ksm-stats, mergeable;
        the guests online the DIMM as movable memory (memhp_default_state),
        where user pages go first, so a fill started after the hot-plug
        lands there and the two hot-plugged backends merge."""
        a, b = (self.guest(n, maxmem='1G', append='memhp_default_state=online_movable')
                for n in ('a', 'b'))
        for g in (a, b):
            g.wait_ready()
            self.assertEqual(g.qmp('object-add', **{'qom-type': 'memory-backend-ksm', 'id': 'hp',
                                                     'size': self.HP_MIB * MiB}), {'return': {}})
            self.assertEqual(g.qmp('device_add', driver='pc-dimm', id='dimm0', memdev='hp'),
                             {'return': {}})
            fig = g.backend('hp')
            self.assertEqual((fig['type'], fig['size'], fig['merge'], fig['mergeable']),
                             ('memory-backend-ksm', self.HP_MIB * MiB, True, True))
            self.assertEqual(g.smaps_mergeable('hp'), self.HP_MIB * MiB)
        for g in (a, b):
            # The guest's ACPI driver adds the DIMM; the kernel onlines it.
            def online():
                rc, out = g.run('cat /sys/devices/system/memory/memory*/state')
                states = [x.strip() for x in out if x.strip() in ('online', 'offline')]
                return len(states) > 2 and all(s == 'online' for s in states)
            wait_for(online, 60, interval=1, what=f'{g.short} to online the DIMM')
            g.send(f'fill --mib {self.HP_FILL} --seed {SEED_HOTPLUG} &\n')
        hp_fill = self.HP_FILL * MiB // PAGE
        for g in (a, b):
            g.wait_line(rf'SAMEPAGE-FILLED mib={self.HP_FILL} seed={SEED_HOTPLUG}', 180)
        # Most of the fill is in the DIMM (the rest in base RAM): wait for
        # what is there to merge.
        self.wait_fill_merged([a, b], SEED_HOTPLUG, 'hp')
        with self.frozen(a, b):
            for g in (a, b):
                fig = self.assert_counts_agree(g, 'hp')
                c = g.fill_census(SEED_HOTPLUG, 'hp')
                note(f'{g.short}: hp merged-pages {fig["merged-pages"]}, fill in hp '
                     f'{c["fill"]}/{hp_fill} pages')
                self.assertGreaterEqual(fig['merged-pages'], c['fill_ksm'])
                self.assertGreater(c['fill'], hp_fill // 2, 'most of the fill is in the DIMM')
        self.assert_alive(a)
