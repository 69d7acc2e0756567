"""bench/run: samepage's benchmarks, each next to its peers, in one run.

    bench/run [--smoke] [--out DIR] [--only NAME,...] [options]

  convergence  N guests (4 x 256 MiB filled with one seed + 1 unique) on
               memory-backend-ksm: time to 50/90/95% of what the census says
               is achievable, and ksmd CPU-seconds, for the kernel defaults,
               ksmtuned, the kernel's scan-time advisor and samepage's policy
               (samepage tune); a PNG plot of MiB saved over time
  unmerge      ksm-unmerge job throughput vs a global run=2 of the same amount
               vs the kernel selftest (ksm_tests -D); QMP latency during it
  stats        query-ksm-stats on 1, 4, 8 GiB of merged RAM: default and exact
               answer latency, main-loop stall (query-status on a second monitor),
               vs smaps_rollup and the kernel's smaps + pagemap reads; samepage stats
               --json with 1, 4 and 8 QEMU processes
  cli-stats    samepage stats --json / --prometheus / table with 1, 8, 64
               QEMU processes vs a shell loop that cats every ksm_stat
  census       census GB/s vs memcpy and a plain read (build/bench/census-speed)
  overhead     boot time and in-guest fill time, memory-backend-ksm vs
               memory-backend-ram, KSM off and on
  fleet        fleet fingerprints: predicted shareable pages of guest pairs at
               0..100% overlap vs the census's exact count and vs what KSM
               merges; fingerprint speed vs a plain read; ranking 1,000 guests
               against 100 hosts (build/bench/fleet-speed)
  fleet-demo   three simulated hosts fingerprinted in turn, a new guest placed by
               samepage place and by free memory, then run on each: predicted
               vs measured savings
  timeline     real Debian guests (scripts/make-guest --image debian) starting
               every 30 s up to 4, one running pgbench, one stopping mid-way,
               replayed under each policy: saved MiB over time (SVG), the
               census bound, time to 95% after each start, ksmd CPU-seconds,
               steady ksmd CPU%, MiB-hours per ksmd CPU-second (about 5 min
               a policy; --policies one at a time with the same --out, then
               --timeline-merge, to split it)

Needs root, a built tree (it runs meson/ninja when needed), the built QEMU
(scripts/build-qemu) and the guest (scripts/make-guest).  Every KSM knob is
saved first and restored at the end, on failure and on Ctrl-C; only the
processes this run started are stopped, by PID.  KSM is global: other work
on the host that uses KSM makes the numbers noisy, and each table notes the
load and the other mergeable QEMUs next to its numbers.

--smoke runs every benchmark once at tiny sizes (well under a minute) and
exits 1 unless each produced numbers: `meson test --suite bench`.
fleet, fleet-demo and timeline run only when named (--only ...): they boot and
converge guests for minutes (real guests boot for tens of seconds under TCG).
"""
import argparse
import json
import os
import subprocess
import sys
import time
import traceback

from samepage_dev.bench import common
from samepage_dev.bench.common import BenchError, ENV, log
from samepage_dev.paths import ROOT, find_guest, find_qemu

BENCHMARKS = ('convergence', 'unmerge', 'stats', 'cli-stats', 'census', 'overhead', 'fleet',
              'fleet-demo', 'timeline')
# Run only when named with --only (not by default, not by --smoke): they boot
# and converge guests for several minutes each.
ON_REQUEST = ('fleet', 'fleet-demo', 'timeline')


def parse_args(argv):
    ap = argparse.ArgumentParser(prog='bench/run', description=__doc__.split('\n\n')[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split('\n\n', 1)[1])
    ap.add_argument('--smoke', action='store_true', help='tiny sizes, each benchmark once')
    ap.add_argument('--out', help='where tables, JSON, plot go (default bench/results)')
    ap.add_argument('--only', help='comma-separated: ' + ','.join(BENCHMARKS))
    ap.add_argument('--build', help='meson build directory (default $SAMEPAGE_BUILD or build/)')
    ap.add_argument('--qemu-version', default='7.2', help='which built QEMU (7.2 or 10.0)')
    ap.add_argument('--guests', type=int, help='guests sharing a seed (default 4; smoke 2)')
    ap.add_argument('--guest-mem', type=int, help='guest RAM, MiB (default 384; smoke 80)')
    ap.add_argument('--fill-mib', type=int, help='MiB each guest fills (default 256; smoke 16)')
    ap.add_argument('--policies', help='comma-separated subset: defaults,ksmtuned,advisor,samepage')
    ap.add_argument('--policy-timeout', type=float,
                    help='seconds a policy may take to 95%% (default 300; smoke 4)')
    ap.add_argument('--tail', type=float,
                    help='seconds followed after 95%% (default 10; smoke 1)')
    ap.add_argument('--advisor-target', type=int, default=None,
                    help='advisor_target_scan_time for the advisor peer (default: the same '
                         'full-scan time samepage aims at)')
    ap.add_argument('--tune-fast', type=float, help='samepage policy: seconds for a full '
                    'scan while converging (samepage tune --fast-scan; default 3)')
    ap.add_argument('--tune-args', default='',
                    help='extra arguments for samepage tune (samepage policy)')
    ap.add_argument('--sample-ms', type=int, help='sampling interval (default 400; smoke 100)')
    ap.add_argument('--retries', type=int, default=None,
                    help='convergence: runs of a policy disturbed by another process that '
                         'may be repeated (default 2; smoke 0)')
    ap.add_argument('--reps', type=int, help='overhead: boots per configuration (default 7)')
    ap.add_argument('--stats-gib', help='stats: merged guest RAM sizes in GiB (default 1,4,8)')
    ap.add_argument('--convergence-budget', type=float,
                    help='seconds the convergence benchmark may spend, repeats included '
                         '(default 780)')
    ap.add_argument('--boot-timeout', type=float, default=300)
    ap.add_argument('--fleet-timeout', type=float, default=120,
                    help='fleet, fleet-demo: seconds KSM may take to converge per run (120)')
    ap.add_argument('--timeline-guests', type=int, default=4,
                    help='timeline: guests started (default 4; the third stops)')
    ap.add_argument('--timeline-every', type=float, default=30,
                    help='timeline: seconds between guest starts (default 30)')
    ap.add_argument('--timeline-mem', type=int, default=512,
                    help='timeline: RAM of each Debian guest, MiB (default 512)')
    ap.add_argument('--timeline-stop-at', type=float, default=None,
                    help='timeline: when the third guest stops (default: last start + 60 s)')
    ap.add_argument('--timeline-end', type=float, default=None,
                    help='timeline: when the run ends (default: the stop + 90 s)')
    ap.add_argument('--timeline-pgbench-scale', type=int, default=4,
                    help='timeline: pgbench -s in the churning guest (default 4)')
    ap.add_argument('--timeline-pgbench-rate', type=int, default=20,
                    help='timeline: pgbench -R, transactions/s (default 20)')
    ap.add_argument('--timeline-merge', action='store_true',
                    help='timeline: run nothing, make the table and plot from the results '
                         'kept in OUT/timeline (a run split per policy)')
    o = ap.parse_args(argv)
    s = o.smoke
    o.guests = o.guests or (2 if s else 4)
    o.guest_mem = o.guest_mem or (80 if s else 384)
    o.fill_mib = o.fill_mib or (16 if s else 256)
    o.policy_timeout = o.policy_timeout or (4 if s else 300)
    o.convergence_budget = o.convergence_budget or (60 if s else 780)
    o.tail = o.tail if o.tail is not None else (1 if s else 10)
    o.sample_ms = o.sample_ms or (100 if s else 400)
    o.retries = o.retries if o.retries is not None else (0 if s else 2)
    o.reps = o.reps or (1 if s else 7)
    o.stats_gib = [float(x) for x in (o.stats_gib or ('0.0625' if s else '1,4,8')).split(',')]
    o.policies = o.policies.split(',') if o.policies else None
    o.tune_args = o.tune_args.split() if o.tune_args else []
    o.only = o.only.split(',') if o.only else [b for b in BENCHMARKS if b not in ON_REQUEST]
    if o.tune_fast is None:
        o.tune_fast = 3
    if o.advisor_target is None:
        o.advisor_target = max(1, round(o.tune_fast))
    o.tune_args = [f'--fast-scan={o.tune_fast}', '--json'] + o.tune_args
    for b in o.only:
        if b not in BENCHMARKS:
            ap.error(f'unknown benchmark {b}')
    o.out = os.path.abspath(o.out or os.path.join(ROOT, 'bench', 'results'))
    return o


def run_quiet(args, what, cwd=None):
    r = subprocess.run(args, capture_output=True, text=True, cwd=cwd)
    if r.returncode != 0:
        raise BenchError(f'{what} failed ({" ".join(args)}):\n{r.stdout[-3000:]}{r.stderr[-3000:]}')
    return r.stdout


def setup(o):
    """Build what is missing and find QEMU and the guest."""
    ENV.build = os.path.abspath(o.build or os.environ.get('SAMEPAGE_BUILD')
                                or os.path.join(ROOT, 'build'))
    ENV.out = o.out
    ENV.smoke = o.smoke
    os.makedirs(o.out, exist_ok=True)
    if not os.path.exists(os.path.join(ENV.build, 'build.ninja')):
        log(f'meson setup {ENV.build}')
        run_quiet(['meson', 'setup', ENV.build], 'meson setup', cwd=ROOT)
    targets = ['cli/samepage', 'bench/census-speed', 'bench/ksm-sample', 'bench/fleet-speed']
    if not os.environ.get('MESON_TEST_ITERATION') and not o.smoke:
        # Under meson test the test's own depends built them already.
        log('ninja: ' + ' '.join(targets))
        run_quiet(['ninja', '-C', ENV.build, *targets], 'ninja')
    ENV.samepage = os.environ.get('SAMEPAGE_CLI') or os.path.join(ENV.build, 'cli', 'samepage')
    os.environ['SAMEPAGE_CLI'] = ENV.samepage     # for samepage_dev.cli: this run's samepage
    ENV.census_speed = os.path.join(ENV.build, 'bench', 'census-speed')
    ENV.ksm_sample = os.path.join(ENV.build, 'bench', 'ksm-sample')
    for p in (ENV.samepage, ENV.census_speed, ENV.ksm_sample):
        if not os.access(p, os.X_OK):
            raise BenchError(f'{p} is not built (ninja -C {ENV.build})')

    needs_qemu = set(o.only) & {'convergence', 'unmerge', 'stats', 'cli-stats', 'overhead', 'fleet',
                                'fleet-demo', 'timeline'}
    if o.only == ['timeline'] and o.timeline_merge:
        needs_qemu = set()
    if needs_qemu:
        paths = find_qemu(o.qemu_version)
        if not paths or not paths.get('qemu'):
            if o.smoke:
                raise BenchError(f'QEMU {o.qemu_version} is not built: scripts/build-qemu '
                                 f'--qemu {o.qemu_version}')
            log(f'building QEMU {o.qemu_version} (scripts/build-qemu: cached by its inputs)')
            run_quiet([os.path.join(ROOT, 'scripts', 'build-qemu'), '--qemu', o.qemu_version],
                      'scripts/build-qemu')
            paths = find_qemu(o.qemu_version)
        ENV.qemu = paths['qemu']
        ENV.qemu_version = o.qemu_version
        g = find_guest()
        if not g:
            log('building the guest (scripts/make-guest)')
            run_quiet([os.path.join(ROOT, 'scripts', 'make-guest')], 'scripts/make-guest')
            g = find_guest()
        ENV.kernel, ENV.initrd = g['kernel'], g['initrd']
        if 'timeline' in o.only:
            d = find_guest('debian')
            if not d and not o.smoke:
                log('building the Debian guest (scripts/make-guest --image debian)')
                run_quiet([os.path.join(ROOT, 'scripts', 'make-guest'), '--image', 'debian'],
                          'scripts/make-guest --image debian')
                d = find_guest('debian')
            ENV.debian = d
    log(f'build {ENV.build}; QEMU {ENV.qemu}; guest {ENV.kernel}')


def save(o, results, texts, summary):
    os.makedirs(o.out, exist_ok=True)
    with open(os.path.join(o.out, 'results.json'), 'w') as f:
        json.dump(results, f, indent=1, default=str)
    with open(os.path.join(o.out, 'tables.txt'), 'w') as f:
        f.write(f'# {results["started"]}, kernel {os.uname().release}, {os.cpu_count()} CPUs, '
                f'QEMU {ENV.qemu}\n\n')
        f.write('\n'.join(texts) + '\n' + summary + '\n')


def main(argv):
    o = parse_args(argv)
    if os.geteuid() != 0:
        print('bench/run: needs root (KSM knobs, frame numbers, /proc/PID/mem)', file=sys.stderr)
        return 77
    common.install_signal_handlers()
    started = time.monotonic()
    results = {'started': time.strftime('%Y-%m-%d %H:%M:%S'), 'smoke': o.smoke,
               'host': {'kernel': os.uname().release, 'cpus': os.cpu_count(),
                        'load_at_start': os.getloadavg()}}
    texts = []
    failures = []
    guard = None
    reuse = None
    try:
        setup(o)
        # Making the timeline's table from kept results touches no knob.
        if not (o.only == ['timeline'] and o.timeline_merge):
            guard = common.KnobGuard()
        import importlib
        for name in BENCHMARKS:
            if name not in o.only:
                continue
            log(f'== {name} ({common.load_note()})')
            t = time.monotonic()
            try:
                mod = importlib.import_module('samepage_dev.bench.' + (
                    f'bench_{name.replace("-", "_")}' if name != 'convergence' else 'convergence'))
                if name == 'convergence':
                    res, text, reuse = mod.run(o)
                elif name == 'unmerge':
                    res, text = mod.run(o, reuse)
                    reuse = None
                else:
                    if reuse:
                        from samepage_dev.bench.guest import stop_all_guests
                        stop_all_guests(reuse)
                        reuse = None
                    res, text = mod.run(o)
                res['seconds'] = time.monotonic() - t
                results[name] = res
                texts.append(text)
                print(text, flush=True)
                save(o, results, texts, '(partial: the run goes on)')
                if o.smoke and not mod.has_numbers(res):
                    failures.append(f'{name}: produced no numbers')
            except (BenchError, OSError) as e:
                log(f'{name} failed: {e}')
                traceback.print_exc(file=sys.stderr)
                failures.append(f'{name}: {e}')
                results[name] = {'error': str(e)}
                texts.append(f'{name}: FAILED: {e}\n')
            log(f'== {name} took {time.monotonic() - t:.0f} s')
    except KeyboardInterrupt:
        failures.append('interrupted')
        log('interrupted: stopping what this run started and restoring the KSM knobs')
    except BenchError as e:
        failures.append(str(e))
        log(str(e))
    finally:
        if reuse:
            from samepage_dev.bench.guest import stop_all_guests
            stop_all_guests(reuse)
        common.stop_all()
        if guard:
            guard.restore()
    results['seconds'] = time.monotonic() - started
    results['failures'] = failures
    summary = (f'bench/run{" --smoke" if o.smoke else ""}: {results["seconds"]:.0f} s, '
               f'load at the end {os.getloadavg()[0]:.2f}')
    save(o, results, texts, summary)
    print(summary)
    print(f'tables: {os.path.join(o.out, "tables.txt")}; raw: {os.path.join(o.out, "results.json")}')
    if failures:
        print('FAILED: ' + '; '.join(failures))
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
