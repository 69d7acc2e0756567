"""Running the samepage CLI, and the host's KSM figures as it reports them.

KSM itself is only ever read and written through samepage (libksm): nothing
here opens /sys/kernel/mm/ksm."""
import json
import subprocess

from samepage_dev.paths import cli_path


def samepage(*args, check=True, timeout=60, error=AssertionError):
    """Run samepage; returns the CompletedProcess (text).  With check, a
    non-zero exit raises `error` (the benchmarks pass their BenchError)."""
    r = subprocess.run([cli_path(), *args], capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise error(f'samepage {" ".join(args)} exited {r.returncode}: {r.stderr.strip()}')
    return r


def host_stats():
    """The host's KSM knobs and counters, as `samepage stats --json` reports them."""
    return json.loads(samepage('stats', '--json').stdout)


def stats_value(stats, name):
    """A knob or counter of a `samepage stats --json` answer, or None."""
    for section in ('counters', 'knobs', 'unknown'):
        if name in stats.get(section, {}):
            return stats[section][name]
    return None


def host_value(name):
    """One knob or counter of the host now; KeyError when samepage has none."""
    value = stats_value(host_stats(), name)
    if value is None:
        raise KeyError(f'samepage stats --json has no {name}')
    return value
