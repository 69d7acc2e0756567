"""Saving every KSM knob before a run and putting it back afterwards, also on
failure: KSM is global, whatever a test or benchmark changes it restores.
Through samepage save/restore (libksm), never the sysfs files."""
import contextlib
import os
import tempfile
import time

from samepage_dev.cli import host_stats, host_value, samepage


def save(prefix='samepage-knobs-'):
    """Every knob saved by `samepage save` in a new file; returns its path
    (kept until restored, for `samepage restore --file` after a crash)."""
    fd, path = tempfile.mkstemp(prefix=prefix)
    os.close(fd)
    samepage('save', '--file', path)
    return path


def restore(path):
    """Let ksmd settle (settle_exited), then `samepage restore --file path`;
    the file is removed once restored.  Returns the CompletedProcess."""
    settle_exited()
    r = samepage('restore', '--file', path, check=False)
    if r.returncode == 0:
        os.unlink(path)
    return r


@contextlib.contextmanager
def ksm_knobs(**settings):
    """Save every KSM knob, apply settings (name=value), restore on the way out
    whatever happened.  Yields the file the knobs are saved in (for
    `samepage restore --file` in an emergency, e.g. a signal handler)."""
    saved = save()
    try:
        if settings:
            samepage('set', *[f'{k}={v}' for k, v in settings.items()])
        yield saved
    finally:
        if restore(saved).returncode != 0:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(saved)


def settle_exited(timeout=5):
    """With ksmd running, let it pass over what is left before the knobs go
    back: it drops the KSM metadata of processes that exited (the guests
    just stopped) only when it passes over them, and with run=0 restored
    the counters would keep their pages_sharing for good.  Done when no
    KSM metadata is left, or after two full scans (other mergeable
    processes on the host), or at the timeout."""
    try:
        if host_value('run') != 1:
            return
        start = host_value('full_scans')
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            c = host_stats()['counters']
            if (sum(c.get(k, 0) for k in ('pages_shared', 'pages_sharing', 'pages_unshared',
                                          'pages_volatile')) == 0
                    or c.get('full_scans', 0) >= start + 2):
                return
            time.sleep(0.05)
    except Exception:  # noqa: BLE001 - best effort on the way out
        pass
