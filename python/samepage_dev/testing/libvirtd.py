"""The libvirt daemons of one test run (tests/libvirt, tests/packages): no
systemd runs here, so the test starts its own syslogd (busybox, only when the
host has no /dev/log: the hook logs with syslog(3)), virtlogd and libvirtd,
each with its log in the run's work directory, sets /dev/kvm as libvirt
expects it, and stops them by PID on the way out (callbacks on the run's
ExitStack, undone in reverse)."""
import contextlib
import grp
import os
import shutil
import stat
import subprocess

from samepage_dev.procs import read_text, run, socket_answers, stop_pid
from samepage_dev.waits import wait_for

URI = 'qemu:///system'
SOCKETS = ('/run/libvirt/libvirt-sock', '/run/libvirt/virtlogd-sock')


def virsh(*args, check=True, timeout=120):
    return run(['virsh', '-q', '-c', URI, *args], check=check, timeout=timeout)


def running_elsewhere():
    """Why this host's libvirt is not the test's to start (a daemon already
    answers), or None."""
    for sock in SOCKETS:
        if socket_answers(sock):
            return f'a libvirt daemon already answers on {sock}: this test starts its own'
    return None


def read_pidfile(path, timeout=30):
    return int(wait_for(lambda: read_text(path).strip(), timeout, what=path))


class LibvirtDaemons:
    """start() brings up syslogd (if needed), virtlogd and libvirtd and
    pushes their stops on `stack`; stop_libvirtd()/start_libvirtd() restart
    libvirtd alone.  libvirtd logs `log_filters` to work/libvirtd.log; the
    hook's syslog lines go to .syslog when the syslogd is ours (.syslogd)."""

    def __init__(self, work, stack, log_filters='1:hooks 3:*'):
        self.work = work
        self.stack = stack
        self.log_filters = log_filters
        self.syslog = os.path.join(work, 'syslog')
        self.libvirtd_log = os.path.join(work, 'libvirtd.log')
        self.syslogd = None
        self.virtlogd_pid = self.libvirtd_pid = None

    def start(self):
        self._start_syslogd()
        self._start_virtlogd()
        self._kvm_for_libvirt()
        self.stack.callback(self.stop_libvirtd)    # also when it never answers
        self.start_libvirtd()

    def _start_syslogd(self):
        """A syslog daemon for the hook's syslog(3) lines, if the host has none."""
        if os.path.exists('/dev/log') or not shutil.which('busybox'):
            return
        self.syslogd = subprocess.Popen(['busybox', 'syslogd', '-n', '-O', self.syslog],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def stop():
            self.syslogd.terminate()
            self.syslogd.wait(10)
            with contextlib.suppress(FileNotFoundError):
                os.unlink('/dev/log')
        self.stack.callback(stop)
        wait_for(lambda: os.path.exists('/dev/log'), 10, what='/dev/log')

    def _start_virtlogd(self):
        conf = os.path.join(self.work, 'virtlogd.conf')
        with open(conf, 'w') as f:
            f.write(f'log_outputs = "3:file:{self.work}/virtlogd.log"\n')
        pidfile = os.path.join(self.work, 'virtlogd.pid')
        run(['virtlogd', '-d', '-p', pidfile, '-f', conf])
        self.virtlogd_pid = read_pidfile(pidfile)
        self.stack.callback(stop_pid, self.virtlogd_pid)
        wait_for(lambda: socket_answers('/run/libvirt/virtlogd-sock'), 30,
                 what='virtlogd socket')

    def _kvm_for_libvirt(self):
        """/dev/kvm as Debian's udev rule makes it (root:kvm 0660) while the
        test's libvirtd runs, put back afterwards.  libvirtd probes QEMU as
        root (KVM enabled) but checks its cached capabilities as the QEMU
        user (libvirt-qemu, group kvm): with /dev/kvm root-only, as on this
        machine without udev, every check finds "KVM was enabled when
        probing, but it is not available now" and probes again, 2 s each
        time libvirt looks (~12 of the hook test's 15 minutes).  The guests
        stay TCG (domain type 'qemu')."""
        path = '/dev/kvm'
        try:
            st = os.stat(path)
            kvm_gid = grp.getgrnam('kvm').gr_gid
        except (OSError, KeyError):
            return
        if st.st_gid == kvm_gid and st.st_mode & 0o060 == 0o060:
            return

        def restore():
            os.chown(path, -1, st.st_gid)
            os.chmod(path, stat.S_IMODE(st.st_mode))
        self.stack.callback(restore)
        os.chown(path, -1, kvm_gid)
        os.chmod(path, stat.S_IMODE(st.st_mode) | 0o660)

    def start_libvirtd(self):
        conf = os.path.join(self.work, 'libvirtd.conf')
        with open(conf, 'w') as f:
            f.write(f'log_outputs = "1:file:{self.libvirtd_log}"\n'
                    f'log_filters = "{self.log_filters}"\n')
        pidfile = os.path.join(self.work, 'libvirtd.pid')
        with contextlib.suppress(FileNotFoundError):
            os.unlink(pidfile)
        run(['libvirtd', '-d', '-p', pidfile, '-f', conf])
        self.libvirtd_pid = read_pidfile(pidfile)
        wait_for(lambda: virsh('list', check=False).returncode == 0, 60,
                 what='libvirtd answering')

    def stop_libvirtd(self):
        stop_pid(self.libvirtd_pid)
        self.libvirtd_pid = None


def guest_domain_xml(name, uuid, mib, metadata, kernel, initrd, cmdline, emulator, console,
                     extra=''):
    """A libvirt domain of the project's busybox guest (scripts/make-guest:
    kernel and initramfs booted directly) under TCG (type 'qemu') on
    `emulator`, its serial console written to the file `console`.  name,
    metadata (inside <metadata>) and extra (after it) go in as they are:
    the caller escapes what needs it."""
    return f"""<domain type='qemu'>
  <name>{name}</name>
  <uuid>{uuid}</uuid>
  <memory unit='MiB'>{mib}</memory>
  <vcpu>1</vcpu>
  <metadata>{metadata}</metadata>
  {extra}
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{kernel}</kernel>
    <initrd>{initrd}</initrd>
    <cmdline>{cmdline}</cmdline>
  </os>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>{emulator}</emulator>
    <controller type='usb' model='none'/>
    <serial type='file'><source path='{console}'/><target port='0'/></serial>
    <memballoon model='none'/>
  </devices>
</domain>
"""
