"""unittest helpers: skips for what a test needs, notes in its TAP stream.
The guest test base is testing.guesttest; the libvirt daemons testing.libvirtd."""
import os
import sys
import unittest

from samepage_dev.paths import find_guest, find_qemu
from samepage_dev.qemu_python import use_qemu_python


def require_root(test):
    if os.geteuid() != 0:
        raise unittest.SkipTest('needs root: KSM knobs, pagemap frame numbers and cgroups')


def require_qemu(version):
    paths = find_qemu(version)
    if not paths:
        raise unittest.SkipTest(f'QEMU {version} is not built (scripts/build-qemu --qemu {version})')
    use_qemu_python(paths)
    return paths


def require_guest(image='busybox'):
    g = find_guest(image)
    if not g:
        raise unittest.SkipTest(f'no {image} guest built (scripts/make-guest --image {image})')
    return g


def note(text):
    """A diagnostic line for the TAP stream (taprunner.py): what a test saw
    and wants on record without asserting it."""
    for line in str(text).splitlines() or ['']:
        sys.stdout.write(f'# {line}\n')
    sys.stdout.flush()


def unittest_main(skip_reason):
    """main() of a test file run as a program (not through taprunner): exit
    77, meson's skip, printing skip_reason when it is not None; else
    unittest.main on __main__ with -v and the command line's arguments."""
    if skip_reason:
        print(f'SKIP: {skip_reason}')
        return 77
    argv = [sys.argv[0], '-v'] + sys.argv[1:]
    prog = unittest.main(module='__main__', argv=argv, exit=False)
    return 0 if prog.result.wasSuccessful() else 1
