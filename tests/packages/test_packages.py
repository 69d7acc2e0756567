#!/usr/bin/python3
"""The Debian packages end to end: build, lint, install, use, purge.

Builds the binary packages of this tree with `dpkg-buildpackage -b -uc -us`
in a copy of it (samepage-qemu from scripts/build-qemu's cache), runs
lintian (no error allowed), installs them with apt, then uses what was
installed: the samepage CLI, its man page and bash completion, libksm
through pkg-config, samepage-tune.service's own commands (no systemd runs
here: `systemd-analyze verify`, then each Exec line as systemd would run
it), and the libvirt hook under a real libvirtd (started by the test, as
tests/libvirt does) with two mergeable guests on the packaged QEMU.  Then
it purges the packages while the guests still run, and checks that nothing
is left: the packages' files, /run and /var/lib state, processes, and that
the KSM knobs are as they were before the install.

On the way out, also on failure: purge whatever is still installed, stop
the guests and the daemons it started (by pid), put /dev/kvm and every KSM
knob back.

Exit 77 (skip) with the reason when something it needs is missing, when a
libvirtd already runs, or when samepage packages are installed already (not
ours to purge).

    PYTHONPATH=python /usr/bin/python3 -m samepage_dev.taprunner tests/packages/test_packages.py
"""
import contextlib
import glob
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest
import uuid as uuidlib

from samepage_dev import procs, taprunner
from samepage_dev.cli import host_value, samepage
from samepage_dev.knobs import ksm_knobs
from samepage_dev.paths import PAGE, ROOT, cli_path, find_guest, find_qemu
from samepage_dev.procs import pid_alive, read_text
from samepage_dev.testing import note
from samepage_dev.testing.libvirtd import (LibvirtDaemons, guest_domain_xml, running_elsewhere,
                                           virsh)
from samepage_dev.waits import wait_for

PACKAGES = ('libksm0', 'libksm-dev', 'samepage', 'samepage-libvirt-hook', 'samepage-qemu')
QEMU = '/usr/lib/samepage/qemu-system-x86_64'
HOOK = '/etc/libvirt/hooks/qemu.d/samepage-ksm'
CONF = '/etc/samepage/ksm.conf'
UNIT = '/lib/systemd/system/samepage-tune.service'
NS = 'https://samepage.invalid/xmlns/ksm/1'
PREFIX = 'samepage-pkgtest-'
FILL_MIB = 48
# Where the packages keep state, and where the test looks for leftovers.
BLOCKING = ('test_01_build', 'test_03_install', 'test_08_purge_while_guests_run')
WATCHED = ('/etc/samepage', '/etc/libvirt/hooks', '/usr/lib/samepage', '/usr/libexec/samepage',
           '/run/samepage', '/run/samepage-tune', '/var/lib/samepage-libvirt-hook',
           '/usr/include/ksm')


def log(msg):
    print(f'# {msg}', file=sys.stderr, flush=True)


def run(cmd, check=True, timeout=600, **kw):
    return procs.run(cmd, check=check, timeout=timeout, tail=3000, **kw)


def installed(pkg):
    r = run(['dpkg-query', '-W', '-f=${db:Status-Status}', pkg], check=False)
    return r.returncode == 0 and r.stdout.strip() not in ('', 'not-installed')


def tree(paths):
    """Every path under the given ones (files, links, directories)."""
    out = set()
    for top in paths:
        if not os.path.lexists(top):
            continue
        out.add(top)
        for d, dirs, files in os.walk(top):
            out.update(os.path.join(d, n) for n in dirs + files)
    return out


def package_processes():
    """pid -> executable of every process running a program of the packages."""
    out = {}
    for p in glob.glob('/proc/[0-9]*'):
        try:
            exe = os.readlink(f'{p}/exe')
        except OSError:
            continue
        if (exe.startswith(('/usr/bin/samepage', '/usr/libexec/samepage/', '/usr/lib/samepage/'))):
            out[int(os.path.basename(p))] = exe
    return out


def knobs_now():
    """Every knob as `samepage save` writes them (the build tree's samepage:
    the packaged one is gone after the purge)."""
    return dict(line.split('=', 1) for line in samepage('save').stdout.split()
                if '=' in line)


def prerequisites():
    if os.geteuid() != 0:
        return 'needs root (apt, libvirtd, KSM knobs)'
    if not os.path.exists('/sys/kernel/mm/ksm/run'):
        return 'this kernel has no KSM'
    for prog in ('dpkg-buildpackage', 'lintian', 'apt-get', 'libvirtd', 'virtlogd', 'virsh',
                 'systemd-analyze'):
        if not shutil.which(prog) and not os.path.exists(f'/usr/sbin/{prog}'):
            return f'{prog} is not installed (scripts/setup)'
    if not os.access(cli_path(), os.X_OK):
        return f'{cli_path()} is not built (ninja -C build)'
    if not find_qemu('7.2'):
        return 'the project QEMU 7.2 is not built (scripts/build-qemu): samepage-qemu takes it'
    if not find_guest():
        return 'the guest image is not built yet (scripts/make-guest)'
    have = [p for p in PACKAGES if installed(p)]
    if have:
        return f'{" ".join(have)} installed already: not ours to purge'
    elsewhere = running_elsewhere()
    if elsewhere:
        return elsewhere
    if os.path.isdir('/run/samepage/hook') and os.listdir('/run/samepage/hook'):
        return '/run/samepage/hook holds a hook state: not a test host'
    return None


class Host:
    """What one run changes on the machine, undone by close() in reverse."""

    def __init__(self):
        self.stack = contextlib.ExitStack()
        self.work = tempfile.mkdtemp(prefix='samepage-pkgtest-')
        os.chmod(self.work, 0o755)     # libvirt-qemu reads the kernel and initrd here
        self.stack.callback(shutil.rmtree, self.work, ignore_errors=True)
        self.debs = []
        self.file_lists = {}
        self.daemons = None

    def close(self):
        self.stack.close()

    # --- packages ---

    def build(self):
        """A copy of the tree (tracked and new files, as they are now), then
        dpkg-buildpackage -b -uc -us there: the .debs land beside the copy,
        never in the repository's parent."""
        src = os.path.join(self.work, 'src', 'samepage')
        os.makedirs(src)
        files = run(['git', '-C', ROOT, 'ls-files', '-z', '--cached', '--others',
                     '--exclude-standard']).stdout.split('\0')
        files = [f for f in files if f and os.path.lexists(os.path.join(ROOT, f))]
        listing = os.path.join(self.work, 'files')
        with open(listing, 'w') as f:
            f.write('\0'.join(files))
        run(['tar', '-C', ROOT, '--null', '-T', listing, '-cf', os.path.join(self.work, 'src.tar')])
        run(['tar', '-C', src, '-xf', os.path.join(self.work, 'src.tar')])
        t = time.monotonic()
        r = run(['dpkg-buildpackage', '-b', '-uc', '-us', '-j2'], cwd=src, check=False,
                timeout=3000)
        with open(os.path.join(self.work, 'build.log'), 'w') as f:
            f.write(r.stdout + r.stderr)
        if r.returncode != 0:
            raise AssertionError(f'dpkg-buildpackage exited {r.returncode}:\n'
                                 f'{(r.stdout + r.stderr)[-4000:]}')
        out = os.path.dirname(src)
        self.debs = sorted(d for d in glob.glob(os.path.join(out, '*.deb'))
                           if not os.path.basename(d).split('_')[0].endswith('-dbgsym'))
        self.changes = glob.glob(os.path.join(out, '*.changes'))[0]
        return time.monotonic() - t, r.stdout + r.stderr

    def install(self):
        for p in PACKAGES:
            self.stack.callback(self.purge_if_installed, p)
        env = dict(os.environ, DEBIAN_FRONTEND='noninteractive')
        r = run(['apt-get', 'install', '-y', '-q', '--no-install-recommends', '-o',
                 'DPkg::Lock::Timeout=600', *self.debs], env=env)
        for p in PACKAGES:
            self.file_lists[p] = run(['dpkg-query', '-L', p]).stdout.split('\n')
        return r.stdout + r.stderr

    def purge(self):
        env = dict(os.environ, DEBIAN_FRONTEND='noninteractive')
        return run(['apt-get', 'purge', '-y', '-q', '-o', 'DPkg::Lock::Timeout=600',
                    *PACKAGES], env=env)

    def purge_if_installed(self, pkg):
        if installed(pkg):
            log(f'cleanup: purging {pkg}')
            run(['dpkg', '--purge', pkg], check=False,
                env=dict(os.environ, DEBIAN_FRONTEND='noninteractive'))

    # --- libvirt ---

    def start_libvirt(self):
        self.daemons = LibvirtDaemons(self.work, self.stack)
        self.daemons.start()
        self.stack.callback(self._cleanup_domains)

    def _cleanup_domains(self):
        out = virsh('list', '--all', '--name', check=False).stdout
        for name in out.split():
            if name.startswith(PREFIX):
                virsh('destroy', name, check=False)
                virsh('undefine', name, check=False)

    def define(self, name, seed):
        guest = find_guest()
        kernel = os.path.join(self.work, 'vmlinuz')
        initrd = os.path.join(self.work, 'initramfs.img')
        if not os.path.exists(kernel):
            shutil.copy(guest['kernel'], kernel)
            shutil.copy(guest['initrd'], initrd)
        uuid = str(uuidlib.uuid4())
        console = os.path.join(self.work, f'{name}.console')
        xml = guest_domain_xml(
            name, uuid, 160, f'<ksm:policy xmlns:ksm="{NS}" merge="yes" group="pkgtest"/>',
            kernel, initrd, 'console=ttyS0 quiet panic=-1 samepage.workload=fill '
            f'samepage.mib={FILL_MIB} samepage.seed={seed}', QEMU, console)
        path = os.path.join(self.work, f'{name}.xml')
        with open(path, 'w') as f:
            f.write(xml)
        virsh('define', path)
        return uuid, console

    def hook_log(self):
        return read_text(self.daemons.syslog) + read_text(self.daemons.libvirtd_log)


def unit_exec_lines(path):
    """(key, argv) of the unit's Exec lines, in the order systemd runs them."""
    order = ('ExecStartPre', 'ExecStart', 'ExecReload', 'ExecStopPost')
    found = {}
    for line in read_text(path).splitlines():
        m = re.match(r'^(Exec\w+)=(.*)$', line)
        if m:
            found[m.group(1)] = shlex.split(m.group(2).lstrip('-'))
    return [(k, found[k]) for k in order if k in found]


def catches(pid, sig):
    """Whether process pid has a handler for sig (SigCgt of /proc/PID/status)."""
    with open(f'/proc/{pid}/status') as f:
        for line in f:
            if line.startswith('SigCgt:'):
                return bool(int(line.split()[1], 16) & (1 << (sig - 1)))
    return False


class TestPackages(unittest.TestCase):
    """One scenario, in order: each step needs the ones before it."""
    host = None
    before = None
    failed_step = None

    @classmethod
    def setUpClass(cls):
        why = prerequisites()
        if why:
            raise unittest.SkipTest(why)
        cls.host = Host()
        # The knobs as they were: put back at the very end whatever happens
        # (entered first, so it is undone last).
        cls.knobs_cm = ksm_knobs()
        cls.knobs_cm.__enter__()
        cls.before = {'knobs': knobs_now(), 'tree': tree(WATCHED),
                      'procs': set(package_processes())}

    @classmethod
    def tearDownClass(cls):
        if cls.host:
            try:
                cls.host.close()
            finally:
                cls.knobs_cm.__exit__(None, None, None)

    def setUp(self):
        if TestPackages.failed_step:
            self.skipTest(f'needs {TestPackages.failed_step}, which failed')

    def run(self, result=None):
        failures = len(result.failures) + len(result.errors) if result is not None else 0
        r = super().run(result)
        # Building, installing and purging are what the later steps need;
        # a failure elsewhere (lintian, one use of the packages) stops nothing.
        if (result is not None and len(result.failures) + len(result.errors) > failures and
                not TestPackages.failed_step and self._testMethodName in BLOCKING):
            TestPackages.failed_step = self._testMethodName
        return r

    def test_01_build(self):
        seconds, out = self.host.build()
        names = sorted(os.path.basename(d).split('_')[0] for d in self.host.debs)
        self.assertEqual(names, sorted(PACKAGES))
        self.assertIn('samepage-qemu: /var/cache/samepage/qemu/build-', out,
                      'samepage-qemu did not come from scripts/build-qemu\'s cache')
        note(f'dpkg-buildpackage -b: {len(names)} packages in {seconds:.0f} s')

    def test_02_lintian(self):
        r = run(['lintian', '--info', '--display-info', self.host.changes], check=False,
                timeout=900)
        tags = [l for l in r.stdout.splitlines() if re.match(r'^[EWIPX]: ', l)]
        errors = [l for l in tags if l.startswith('E: ')]
        warnings = [l for l in tags if l.startswith('W: ')]
        for l in tags:
            note(f'lintian: {l}')
        self.assertEqual(errors, [], 'lintian errors')
        self.assertEqual(warnings, [], 'lintian warnings (fix them, or override with a comment '
                                       'in debian/*.lintian-overrides)')

    def test_03_install(self):
        out = self.host.install()
        self.assertRegex(out, r'restart (it|libvirtd)', 'postinst did not say to restart libvirtd')
        self.assertEqual(os.path.realpath(HOOK), '/usr/libexec/samepage/samepage-ksm')
        self.assertTrue(os.access(QEMU, os.X_OK))
        # Debian's qemu-system-x86 is untouched: the packaged QEMU is only ours.
        owner = run(['dpkg-query', '-S', QEMU]).stdout.split(':')[0]
        self.assertEqual(owner, 'samepage-qemu')
        conffiles = run(['dpkg-query', '-W', '-f=${Conffiles}', 'samepage-libvirt-hook']).stdout
        self.assertIn(CONF, conffiles)
        run(['/usr/libexec/samepage/samepage-ksm', '--check-config', CONF])

    def test_04_cli(self):
        r = run(['/usr/bin/samepage', 'status'])
        self.assertRegex(r.stdout, r'(?m)^KSM:')
        stats = json.loads(run(['/usr/bin/samepage', 'stats', '--json']).stdout)
        self.assertIn('run', stats['knobs'])
        bad = run(['/usr/bin/samepage', 'set', 'pages_to_scan=abc'], check=False)
        self.assertEqual(bad.returncode, 2)
        man = run(['man', '-w', 'samepage']).stdout.strip()
        self.assertTrue(man.endswith('samepage.1.gz'), man)
        for page in ('samepage-ksm', 'samepage-ksm.conf'):
            run(['man', '-w', page])
        text = run(['man', '-P', 'cat', 'samepage'], env=dict(os.environ, MANWIDTH='80')).stdout
        self.assertIn('EXIT STATUS', text)
        self.assertNotIn('@VERSION@', text)
        # The completion offers the commands, then a command's options.
        script = ('source /usr/share/bash-completion/bash_completion; '
                  'source /usr/share/bash-completion/completions/samepage; '
                  'COMP_LINE="samepage st"; COMP_POINT=${#COMP_LINE}; '
                  'COMP_WORDS=(samepage st); COMP_CWORD=1; _comp_samepage; echo "${COMPREPLY[*]}"; '
                  'COMP_LINE="samepage unmerge --al"; COMP_POINT=${#COMP_LINE}; '
                  'COMP_WORDS=(samepage unmerge --al); COMP_CWORD=2; _comp_samepage; '
                  'echo "${COMPREPLY[*]}"')
        out = run(['bash', '-c', script]).stdout.splitlines()
        self.assertEqual(sorted(out[0].split()), ['stats', 'status'])
        self.assertEqual(out[1].split(), ['--all'])

    def test_05_libksm(self):
        src = os.path.join(self.host.work, 'ksmver.c')
        with open(src, 'w') as f:
            f.write('#include <ksm/ksm.h>\n#include <stdio.h>\n'
                    'int main(void) {\n'
                    '    g_autoptr(GError) error = NULL;\n'
                    '    g_autoptr(KsmContext) ctx = ksm_context_new(NULL, NULL);\n'
                    '    g_autoptr(KsmSnapshot) snap = ksm_snapshot_read(ctx, &error);\n'
                    '    gint64 run = -1;\n'
                    '    if (!snap || !ksm_snapshot_get(snap, KSM_FIELD_RUN, &run)) return 1;\n'
                    '    printf("run=%lld\\n", (long long)run);\n'
                    '    return 0;\n}\n')
        flags = run(['pkg-config', '--cflags', '--libs', 'libksm']).stdout.split()
        binary = os.path.join(self.host.work, 'ksmver')
        run(['cc', '-std=c11', '-Wall', '-Wextra', '-Werror', '-o', binary, src, *flags])
        ldd = run(['ldd', binary]).stdout
        self.assertRegex(ldd, r'libksm\.so\.0 => (/usr)?/lib/[^ ]*/libksm\.so\.0')
        out = run([binary]).stdout.strip()
        self.assertEqual(out, f'run={knobs_now()["run"]}')

    def test_06_unit(self):
        r = run(['systemd-analyze', 'verify', UNIT], check=False)
        # Without systemd as PID 1 verify still parses the unit and checks
        # every Exec path; it must not find anything to say about ours.
        complaints = [l for l in (r.stdout + r.stderr).splitlines() if 'samepage-tune' in l]
        self.assertEqual(complaints, [], r.stdout + r.stderr)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        lines = dict(unit_exec_lines(UNIT))
        self.assertEqual(set(lines), {'ExecStartPre', 'ExecStart', 'ExecReload', 'ExecStopPost'})
        self.assertIn('Restart=on-failure', read_text(UNIT))
        # Its commands as systemd would run them: RuntimeDirectory first.
        rundir = '/run/samepage-tune'
        self.assertFalse(os.path.exists(rundir))
        os.makedirs(rundir, mode=0o700)
        try:
            start_knobs = knobs_now()
            run(lines['ExecStartPre'])
            tune = subprocess.Popen(lines['ExecStart'], stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True)
            try:
                # It takes over the knobs (advisor off, its own rate, ksmd on),
                # and catches SIGUSR1 once its handler is in: run=1 alone
                # says nothing where ksmd was already running.
                wait_for(lambda: knobs_now().get('run') == '1' and catches(tune.pid, signal.SIGUSR1),
                         20, what='samepage tune starting ksmd with its SIGUSR1 handler in')
                reload = [a.replace('$MAINPID', str(tune.pid)) for a in lines['ExecReload']]
                run(reload)
                time.sleep(1)
                self.assertIsNone(tune.poll(), 'samepage tune died on ExecReload (SIGUSR1)')
            finally:
                tune.send_signal(signal.SIGTERM)
                out, _ = tune.communicate(timeout=30)
            note(f'samepage tune said: {out.strip().splitlines()[-1] if out.strip() else ""}')
            run(lines['ExecStopPost'])
            self.assertEqual(knobs_now(), start_knobs, 'ExecStopPost did not restore the knobs')
        finally:
            shutil.rmtree(rundir, ignore_errors=True)

    def test_07_hook_under_libvirtd(self):
        h = self.host
        h.start_libvirt()
        guests = [h.define(f'{PREFIX}{i}', seed=11) for i in range(2)]
        for i, _ in enumerate(guests):
            virsh('start', f'{PREFIX}{i}')
        for _, console in guests:
            wait_for(lambda: 'SAMEPAGE-FILLED' in read_text(console), 180,
                     what='the guests filled')
        # The hook recorded both guests and started ksmd and samepage tune.
        states = sorted(f[:-6] for f in os.listdir('/run/samepage/hook') if f.endswith('.state'))
        self.assertEqual(states, sorted(u for u, _ in guests))
        self.assertEqual(knobs_now()['run'], '1')
        tune_pid = int(read_text('/run/samepage/hook/tune.pid').split()[0])
        self.assertEqual(os.readlink(f'/proc/{tune_pid}/exe'), '/usr/bin/samepage')
        # The packaged QEMU answers samepage's QMP command.
        stats = json.loads(virsh('qemu-monitor-command', f'{PREFIX}0',
                                 '{"execute":"query-ksm-stats"}').stdout)
        self.assertEqual(stats['return']['page-size'], PAGE)
        # The two guests' identical fill merges.
        wait_for(lambda: host_value('pages_sharing') >= FILL_MIB * 256 // 2,
                 120, what='the guests\' fill merging')
        TestPackages.tune_pid = tune_pid

    def test_08_purge_while_guests_run(self):
        r = self.host.purge()
        out = r.stdout + r.stderr
        note('purge: ' + ' | '.join(l for l in out.splitlines()
                                    if 'samepage-libvirt-hook:' in l))
        for p in PACKAGES:
            self.assertFalse(installed(p), p)
        tune_pid = getattr(TestPackages, 'tune_pid', None)
        if tune_pid:
            self.assertFalse(pid_alive(tune_pid), 'the hook\'s samepage tune still runs')

    def test_09_nothing_left(self):
        left = sorted(tree(WATCHED) - self.before['tree'])
        self.assertEqual(left, [], 'left behind by the packages')
        for pkg, files in self.host.file_lists.items():
            for f in files:
                if f and os.path.lexists(f) and not os.path.isdir(f):
                    self.fail(f'{f} of {pkg} is still there')
        # The hook ran ksmd for its guests; removing it unmerged and put every
        # knob back as the host had them before.
        self.assertEqual(knobs_now(), self.before['knobs'])
        # The guests still run (on the QEMU the purge deleted, as any
        # upgrade of a QEMU package leaves running guests): nothing merged.
        self.assertEqual(host_value('pages_sharing'), 0)
        guests = {int(read_text(f'/run/libvirt/qemu/{PREFIX}{i}.pid').strip()) for i in range(2)}
        procs = {p: e for p, e in package_processes().items()
                 if p not in self.before['procs'] and p not in guests}
        self.assertEqual(procs, {}, 'processes of the packages still run')
        # Once the guests are gone, nothing of the packages runs.
        for i in range(2):
            virsh('destroy', f'{PREFIX}{i}')
        wait_for(lambda: not any(pid_alive(p) for p in guests), 30,
                 what='the guests\' QEMUs to exit')
        procs = {p: e for p, e in package_processes().items() if p not in self.before['procs']}
        self.assertEqual(procs, {}, 'processes of the packages still run')


if __name__ == '__main__':
    sys.argv[1:] = [__file__]
    sys.exit(taprunner.main())
