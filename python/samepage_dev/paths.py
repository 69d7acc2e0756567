"""Where things are: the source and build trees, the built QEMUs and guest
images (scripts/build-qemu, scripts/make-guest), and the sizes every helper
counts in."""
import os
import subprocess

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
BUILD = os.environ.get('SAMEPAGE_BUILD', os.path.join(ROOT, 'build'))
QEMU_VERSIONS = ('7.2', '10.0')
PAGE = os.sysconf('SC_PAGE_SIZE')
MiB = 1 << 20
GiB = 1 << 30


def cli_path():
    """The samepage CLI under test: $SAMEPAGE_CLI, else the build tree's."""
    return os.environ.get('SAMEPAGE_CLI') or os.path.join(BUILD, 'cli', 'samepage')


def _script_paths(script, *args):
    r = subprocess.run([os.path.join(ROOT, 'scripts', script), *args, '--print'],
                       capture_output=True, text=True)
    if r.returncode != 0:
        return None
    out = {}
    for line in r.stdout.splitlines():
        k, _, v = line.partition('=')
        if v:
            out[k.strip()] = v.strip()
    return out


def find_qemu(version):
    """What scripts/build-qemu --qemu VERSION --print prints ({'qemu': binary,
    'qemu_python': dir, ...}), or None when it is not built.
    $SAMEPAGE_QEMU_7_2 (and $SAMEPAGE_QEMU_PYTHON) name another binary."""
    env = f'SAMEPAGE_QEMU_{version.replace(".", "_")}'
    if os.environ.get(env):
        return {'qemu': os.environ[env], 'qemu_python': os.environ.get('SAMEPAGE_QEMU_PYTHON', '')}
    return _script_paths('build-qemu', '--qemu', version)


def find_guest(image='busybox'):
    """What scripts/make-guest --image IMAGE --print prints, or None when it
    is not built: {'kernel', 'initrd'} for busybox; for debian also 'disk'
    (raw ext4), 'append' (kernel command line), 'marker', 'image'."""
    return _script_paths('make-guest', '--image', image)
