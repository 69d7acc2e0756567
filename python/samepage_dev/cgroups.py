"""Memory and pids cgroups (v1 at /sys/fs/cgroup/memory or /pids, or v2):
not KSM, made and removed by the tests that need them."""
import os
import time


class MemoryCgroup:
    """A memory cgroup made by a test (v1 at /sys/fs/cgroup/memory, or v2)."""

    def __init__(self, name, limit_bytes):
        v1 = '/sys/fs/cgroup/memory'
        self.v2 = not os.path.isdir(v1)
        base = '/sys/fs/cgroup' if self.v2 else v1
        self.path = os.path.join(base, f'samepage-{name}-{os.getpid()}')
        os.mkdir(self.path)
        limit_file = 'memory.max' if self.v2 else 'memory.limit_in_bytes'
        self._write(limit_file, str(limit_bytes))

    def _write(self, name, value):
        with open(os.path.join(self.path, name), 'w') as f:
            f.write(value)

    def add(self, pid):
        self._write('cgroup.procs', str(pid))

    def pids(self):
        with open(os.path.join(self.path, 'cgroup.procs')) as f:
            return [int(x) for x in f.read().split()]

    def oom_kills(self):
        """OOM kills inside this cgroup (v2 memory.events, v1 memory.oom_control)."""
        name = 'memory.events' if self.v2 else 'memory.oom_control'
        with open(os.path.join(self.path, name)) as f:
            for line in f:
                k, _, v = line.partition(' ')
                if k == 'oom_kill':
                    return int(v)
        return 0

    def remove(self, timeout=10):
        """rmdir once empty; the test must have stopped its processes inside."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                os.rmdir(self.path)
                return
            except FileNotFoundError:
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)


class PidsCgroup:
    """A pids cgroup made by a test (v1 at /sys/fs/cgroup/pids, or v2):
    with pids.max at the tasks a process has, it can start no thread."""

    def __init__(self, name):
        v1 = '/sys/fs/cgroup/pids'
        self.v2 = not os.path.isdir(v1)
        base = '/sys/fs/cgroup' if self.v2 else v1
        self.path = os.path.join(base, f'samepage-{name}-{os.getpid()}')
        os.mkdir(self.path)

    def _write(self, name, value):
        with open(os.path.join(self.path, name), 'w') as f:
            f.write(value)

    def add(self, pid):
        self._write('cgroup.procs', str(pid))

    def limit(self, tasks):
        self._write('pids.max', 'max' if tasks is None else str(tasks))

    def current(self):
        with open(os.path.join(self.path, 'pids.current')) as f:
            return int(f.read())

    remove = MemoryCgroup.remove
