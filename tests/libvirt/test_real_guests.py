#!/usr/bin/python3
"""The samepage libvirt hook with two real guests under a real libvirtd
(issue 13): Debian 12 systems (scripts/make-guest --image debian: systemd,
nginx, PostgreSQL) defined as libvirt domains with merge="yes", on each of
the project's QEMUs (7.2 and 10.0).  Both start and serve (nginx answers the
host through a forwarded loopback port) and merge; the first stops and the
hook unmerges nothing (a guest still merges); the last stops and the hook's
safe unmerge (run=2) empties KSM.

The daemons, hook, config and knobs are test_ksm_hook.py's LibvirtHost
(started and stopped by this module the same way); only the guests differ.

    /usr/bin/python3 tests/libvirt/test_real_guests.py [-k PATTERN]
"""
import os
import sys
import time
import unittest
import uuid as uuidlib

import test_ksm_hook as hk  # its helpers: Python looks in this file's folder first

from samepage_dev.paths import PAGE, find_guest, find_qemu
from samepage_dev.testing import unittest_main
from samepage_dev.waits import wait_for
from samepage_dev.web import free_port, http_get

REAL_MIB = 512
BOOT_S = 420
MERGED_MIN_PAGES = 512      # 2 MiB merged per guest: the hook's policy is at work


def prerequisites():
    why = hk.prerequisites()
    if why:
        return why
    if not find_guest('debian'):
        return 'the Debian guest is not built yet (scripts/make-guest --image debian)'
    return None


class RealDomain(hk.Guest):
    """A Debian guest as a libvirt domain: its own copy of the disk image
    (libvirt relabels and chowns what it boots), serial console to a file,
    and QEMU's user network forwarding 127.0.0.1:port to its nginx (a
    -netdev/-device pair of <qemu:commandline>: libvirt 9.0 forwards ports
    only with passt; the NIC at a slot of its own, away from libvirt's)."""

    def __init__(self, host, name, qemu, image, merge='yes'):
        uuid = str(uuidlib.uuid4())
        super().__init__(host, name, uuid, os.path.join(host.work, f'{uuid}.console'))
        self.port = free_port()
        files = {}
        for key in ('kernel', 'initrd', 'disk'):
            files[key] = os.path.join(host.work, f'{uuid}.{key}')
            # Sparse: the raw image is mostly holes.
            hk.run(['cp', '--sparse=always', image[key], files[key]])
        self.files = files
        xml = f"""<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>{hk.xml_escape(name)}</name>
  <uuid>{uuid}</uuid>
  <memory unit='MiB'>{REAL_MIB}</memory>
  <vcpu>1</vcpu>
  <metadata><ksm:policy xmlns:ksm="{hk.NS}" merge="{merge}"/></metadata>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{files['kernel']}</kernel>
    <initrd>{files['initrd']}</initrd>
    <cmdline>{hk.xml_escape(image['append'])}</cmdline>
  </os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>{qemu}</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='{files['disk']}'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <controller type='usb' model='none'/>
    <serial type='file'><source path='{self.console}'/><target port='0'/></serial>
    <memballoon model='none'/>
    <rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>
  </devices>
  <qemu:commandline>
    <qemu:arg value='-netdev'/>
    <qemu:arg value='user,id=samepage-net0,hostfwd=tcp:127.0.0.1:{self.port}-:80'/>
    <qemu:arg value='-device'/>
    <qemu:arg value='virtio-net-pci,netdev=samepage-net0,romfile=,addr=0x10'/>
  </qemu:commandline>
</domain>
"""
        path = os.path.join(host.work, f'{uuid}.xml')
        with open(path, 'w') as f:
            f.write(xml)
        hk.virsh('define', path)

    def http_ok(self):
        try:
            return http_get(self.port, '/', 5)[0] == 200
        except Exception:  # noqa: BLE001 - any failure: not serving
            return False

    def wait_up(self, timeout=BOOT_S):
        self.wait_console('SAMEPAGE-READY image=debian', timeout)
        wait_for(self.http_ok, 60, interval=0.5, what=f'{self.name}: nginx on {self.port}')

    def remove_files(self):
        for p in self.files.values():
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass


def setUpModule():
    hk.setUpModule()


def tearDownModule():
    try:
        logs = os.path.join(hk.BUILD, 'meson-logs')
        if os.path.isdir(logs):
            with open(os.path.join(logs, 'libvirt-real-guests-hook.log'), 'w') as f:
                f.write(hk.HOST.hook_log_text())
    finally:
        hk.stop_leftover_tune()
        hk.HOST.close()


class RealGuestsHook(unittest.TestCase):
    # test_ksm_hook's per-test set-up and checks, not its tests.
    setUp = hk.HookTest.setUp
    tearDown = hk.HookTest.tearDown
    new_log = hk.HookTest.new_log
    assert_hooks_bounded = hk.HookTest.assert_hooks_bounded

    def real_pair(self, version):
        paths = find_qemu(version)
        if not paths:
            self.skipTest(f'QEMU {version} is not built (scripts/build-qemu --qemu {version})')
        qemu = os.path.realpath(paths['qemu'])
        image = find_guest('debian')
        guests = []
        for suffix in ('real-a', 'real-b'):
            g = RealDomain(hk.HOST, hk.PREFIX + f'{suffix}-{version}', qemu, image)
            self.guests.append(g)
            self.addCleanup(g.remove_files)
            guests.append(g)
        return guests

    def lifecycle(self, version):
        """Both start (the hook sees to ksmd), boot and serve, and merge;
        the first stop unmerges nothing; the last stop unmerges (run=2)."""
        a, b = self.real_pair(version)
        t0 = time.monotonic()
        a.start()
        b.start()
        self.assertRegex(self.new_log(), r'ksmd (started|already running) for 1 mergeable')
        a.wait_up()
        b.wait_up()
        up = time.monotonic() - t0
        states = hk.HOST.state_files()
        self.assertIn(a.uuid, states)
        self.assertIn(b.uuid, states)
        for g in (a, b):
            wait_for(lambda g=g: hk.merging_pages(g.qemu_pid()) >= MERGED_MIN_PAGES, 300,
                     interval=1, what=f'{g.name} with >= {MERGED_MIN_PAGES} merging pages')
        merged = {g.name: hk.merging_pages(g.qemu_pid()) for g in (a, b)}
        hk.log(f'QEMU {version}: both up and serving {up:.1f} s after virsh start; merging pages '
               + ', '.join(f'{n} {p} ({p * PAGE >> 20} MiB)' for n, p in merged.items()))

        hk.HOST.clear_outcome()
        a.destroy()
        wait_for(lambda: 'still running: no unmerge' in self.new_log(), 30,
                 what='the hook deciding on the first stop')
        time.sleep(2)
        self.assertFalse(os.path.exists(hk.OUTCOME), 'an unmerge ran while a guest still merges')
        self.assertTrue(b.http_ok(), 'b stopped serving when a stopped')
        self.assertGreater(hk.merging_pages(b.qemu_pid()), 0)

        b.destroy()
        out = hk.HOST.wait_outcome()
        self.assertEqual(out['result'], 'done', out)
        self.assertEqual(out['after']['run'], 2)
        self.assertEqual(out['after']['pages_sharing'], 0)
        text = self.new_log()
        self.assertIn('last mergeable guest gone', text)
        self.assertIn('unmerge done', text)
        self.assertEqual(hk.HOST.state_files(), {})
        self.assert_hooks_bounded()
        hk.log(f'QEMU {version}: the lifecycle took {time.monotonic() - t0:.1f} s')

    def test_real_guests_qemu_7_2(self):
        self.lifecycle('7.2')

    def test_real_guests_qemu_10_0(self):
        self.lifecycle('10.0')


if __name__ == '__main__':
    sys.exit(unittest_main(prerequisites()))
