"""Processes a test or benchmark started, stopped by their PID (never by
name), and the small checks around daemons: does a socket answer, what does
a (pid)file say."""
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time


def pid_alive(pid):
    """The process exists and is not a zombie (/proc/PID/stat)."""
    try:
        with open(f'/proc/{pid}/stat') as f:
            return f.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except (OSError, IndexError):
        return False


def stop_pid(pid, timeout=30):
    """SIGTERM a process we started (a child, or a daemon that forked), wait
    up to timeout seconds, then SIGKILL; a child of ours is reaped."""
    if not pid or not pid_alive(pid):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while pid_alive(pid) and time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)   # reaped if it is our child
            time.sleep(0.05)
        if pid_alive(pid):
            print(f'# pid {pid} ignored SIGTERM: SIGKILL', file=sys.stderr, flush=True)
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def socket_answers(path):
    """Something accepts connections on the unix socket path."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


def read_text(path):
    """The file's text, or '' when it does not exist (yet)."""
    try:
        with open(path, errors='replace') as f:
            return f.read()
    except FileNotFoundError:
        return ''


def run(cmd, check=True, timeout=120, tail=None, **kw):
    """subprocess.run with text output; with check, a non-zero exit raises
    AssertionError with the command's output (its last `tail` characters
    of each stream, if given)."""
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if check and r.returncode != 0:
        out, err = (r.stdout, r.stderr) if tail is None else (r.stdout[-tail:], r.stderr[-tail:])
        raise AssertionError(f'{cmd!r} exited {r.returncode}:\n{out}{err}')
    return r
