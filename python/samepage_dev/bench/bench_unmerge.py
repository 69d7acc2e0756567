"""Benchmark 2: unmerge.

For merged guests: the QMP ksm-unmerge job (MADV_UNMERGEABLE in the guest's
own QEMU, in chunks off the main loop) against a global run=2 of the same
amount (samepage unmerge --all --force: the kernel's unmerge of everything)
and against the kernel selftest's own figure (ksm_tests -D: MADV_UNMERGEABLE
of an area of identical pages, built from Debian's linux-source).  QMP
round trips (query-status on a second monitor) during the job and idle.

Guests: the convergence benchmark's when it ran first (merged, ksmd stopped
here), else two guests filled with one seed, merged here with ksmd at full
speed.  With k guests sharing their pages, jobs unmerge the first k - 1; the
last one's pages then map KSM pages alone, and run=2 breaks those: the same
amount of work per page (one copy each), measured on the global counters.
"""
import glob
import hashlib
import os
import re
import subprocess
import tempfile
import time

from samepage_dev.bench.common import (ENV, BenchError, PeerAbsent, fmt, ksm_clean, ksm_set,
                                       ksm_stats, load_note, log, percentile, samepage, table)
from samepage_dev.cli import stats_value
from samepage_dev.paths import PAGE, MiB
from samepage_dev.bench.guest import Guest, start_all, stop_all_guests
from samepage_dev.qmp import LatencyProbe

LOCK = '/run/samepage/ksm.lock'


def merged_pages(g):
    return g.backend_stats(exact=True)['merged-pages']


def merge_fast(guests, fill_pages, timeout=180):
    """ksmd at full speed until every guest's fill is merged (or timeout)."""
    ksm_set('advisor_mode=none', 'pages_to_scan=20000', 'sleep_millisecs=0', 'run=1')
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = [merged_pages(g) for g in guests]
        if all(m >= 0.9 * fill_pages for m in got):
            return got
        time.sleep(0.5)
    raise BenchError(f'the guests did not merge within {timeout} s: merged pages {got}')


def settle_scan(smoke, timeout=120):
    """Two full scans at full speed (the unmerged guests are no longer
    mergeable: nothing new merges there), then ksmd stopped."""
    start = stats_value(ksm_stats(), 'full_scans') or 0
    ksm_set('advisor_mode=none', 'pages_to_scan=20000', 'sleep_millisecs=0', 'run=1')
    deadline = time.monotonic() + (20 if smoke else timeout)
    while time.monotonic() < deadline and (stats_value(ksm_stats(), 'full_scans') or 0) < start + 2:
        time.sleep(0.2)
    ksm_set('run=0')
    time.sleep(0.3)


def latency_summary(rtts):
    ms = [x * 1000 for x in rtts]
    return {'n': len(ms), 'p50': percentile(ms, 50), 'p99': percentile(ms, 99),
            'max': max(ms) if ms else float('nan')}


def idle_latency(g, seconds):
    q = g.second_qmp()
    try:
        probe = LatencyProbe(q, pause=0.002).start()
        time.sleep(seconds)
        return latency_summary(probe.stop())
    finally:
        q.close()


def run_job(g):
    """One ksm-unmerge job on g's backend, timed; QMP latency during it."""
    before = g.backend_stats(exact=True)
    q = g.second_qmp()
    try:
        probe = LatencyProbe(q, pause=0.002).start()
        time.sleep(0.05)
        t0 = time.monotonic()
        g.qmp.cmd('ksm-unmerge', id='m0', force=True, **{'job-id': 'bench', 'auto-dismiss': False})
        g.qmp.wait_event('JOB_STATUS_CHANGE',
                         lambda e: e['data'].get('id') == 'bench' and
                         e['data'].get('status') == 'concluded', timeout=600)
        t = time.monotonic() - t0
        time.sleep(0.05)
        rtts = probe.stop()
    finally:
        q.close()
    job = [j for j in g.qmp.cmd('query-jobs') if j['id'] == 'bench'][0]
    g.qmp.cmd('job-dismiss', id='bench')
    if job.get('error'):
        raise BenchError(f'{g.name}: ksm-unmerge: {job["error"]}')
    after = g.backend_stats(exact=True)
    # Only the round trips that fell inside the job.
    return {'guest': g.name, 'seconds': t, 'merged_before': before['merged-pages'],
            'merged_after': after['merged-pages'], 'backend_bytes': before['size'],
            'mib_s': before['merged-pages'] * PAGE / MiB / t, 'latency': latency_summary(rtts),
            'rtts_ms': [x * 1000 for x in rtts]}


def run_global(g):
    """samepage unmerge --all --force (safe run=2), timed; QMP latency on g."""
    s = ksm_stats()
    amount = (stats_value(s, 'pages_shared') or 0) + (stats_value(s, 'pages_sharing') or 0)
    guest_before = g.backend_stats(exact=True)['merged-pages']
    q = g.second_qmp()
    try:
        probe = LatencyProbe(q, pause=0.002).start()
        time.sleep(0.05)
        t0 = time.monotonic()
        out = ksm_clean()
        t = time.monotonic() - t0
        rtts = probe.stop()
    finally:
        q.close()
    kernel_s = out['duration_ms'] / 1000 if out and out.get('duration_ms') else t
    b = (out or {}).get('before', {})
    if b:
        amount = b.get('pages_shared', 0) + b.get('pages_sharing', 0)
    return {'seconds': t, 'kernel_seconds': kernel_s, 'pages': amount,
            'guest_merged_before': guest_before,
            'mib_s': amount * PAGE / MiB / kernel_s, 'mib_s_wall': amount * PAGE / MiB / t,
            'latency': latency_summary(rtts), 'outcome': out}


# ---- the kernel selftest (the peer's own figure) --------------------------------

# Debian's linux-source-* packages (the peer tests point this elsewhere).
KERNEL_SOURCES = '/usr/src/linux-source-*.tar.xz'


def ksm_tests_binary():
    """Build tools/testing/selftests/mm/ksm_tests.c from the newest
    /usr/src/linux-source-*.tar.xz (as scripts/kernel-selftests does), cached
    under $SAMEPAGE_CACHE/bench/ by the tarball's name and size.  A kernel
    source without it, or whose ksm_tests has no -D (before 6.3: bookworm's
    linux-source-6.1), makes the peer absent, not the benchmark failed."""
    tars = sorted(glob.glob(KERNEL_SOURCES),
                  key=lambda p: [int(x) if x.isdigit() else x
                                 for x in re.split(r'(\d+)', os.path.basename(p))])
    if not tars:
        raise PeerAbsent('absent: no /usr/src/linux-source-*.tar.xz (scripts/setup installs '
                         'linux-source-6.12)')
    tar = tars[-1]
    key = hashlib.sha256(f'{tar} {os.path.getsize(tar)}'.encode()).hexdigest()[:16]
    cache = os.path.join(ENV.cache, 'bench', f'ksm_tests-{key}')
    binary = os.path.join(cache, 'ksm_tests')
    no_d = os.path.join(cache, 'no-D')
    absent_no_d = PeerAbsent(f'absent: ksm_tests of {os.path.basename(tar)} has no -D '
                             '(6.3+; scripts/setup installs linux-source-6.12)')
    if os.access(binary, os.X_OK):
        return binary, os.path.basename(tar)
    if os.path.exists(no_d):
        raise absent_no_d
    if not os.path.exists('/usr/include/numa.h'):
        raise PeerAbsent('absent: ksm_tests needs numa.h (scripts/setup installs libnuma-dev)')
    log(f'unmerge: building ksm_tests from {tar}')
    tmp = tempfile.mkdtemp(prefix='samepage-bench-kst-')
    try:
        subprocess.run(f"xz -dc '{tar}' | tar -x -C '{tmp}' --wildcards "
                       "'*/tools/testing/selftests/mm/*' '*/tools/testing/selftests/vm/*' "
                       "'*/tools/testing/selftests/kselftest*' '*/tools/include/*' "
                       "'*/tools/arch/x86/include/*' '*/include/vdso/*' 2>/dev/null",
                       shell=True)
        top = glob.glob(os.path.join(tmp, 'linux-source-*'))
        if not top:
            raise BenchError(f'nothing extracted from {tar}')
        top = top[0]
        sdir = os.path.join(top, 'tools/testing/selftests/mm')
        if not os.path.isdir(sdir):
            sdir = os.path.join(top, 'tools/testing/selftests/vm')
        helpers = [f for f in ('vm_util.c', 'thp_settings.c') if os.path.exists(os.path.join(sdir, f))]
        os.makedirs(cache, exist_ok=True)
        try:
            with open(os.path.join(sdir, 'ksm_tests.c')) as f:
                has_d = "case 'D':" in f.read()
        except OSError:
            raise PeerAbsent(f'absent: no ksm_tests.c in {os.path.basename(tar)}')
        if not has_d:
            open(no_d, 'w').close()     # remembered: no need to unpack it again
            raise absent_no_d
        r = subprocess.run(['gcc', '-Wall', '-O2', '-I', top, '-isystem',
                            os.path.join(top, 'tools/include/uapi'), '-o', binary + '.tmp',
                            'ksm_tests.c', *helpers, '-lnuma'], cwd=sdir, capture_output=True,
                           text=True)
        if r.returncode != 0:
            raise BenchError(f'building ksm_tests failed: {r.stderr[-1500:]}')
        os.rename(binary + '.tmp', binary)
    finally:
        subprocess.run(['rm', '-rf', tmp])
    return binary, os.path.basename(tar)


def run_ksm_tests(mib, timeout=240):
    """ksm_tests -D -s MIB: its "Average speed" of MADV_UNMERGEABLE.  It writes
    the KSM knobs itself (it is the peer): the knobs are saved and restored
    around it through samepage, and it runs under the samepage host lock, as
    scripts/kernel-selftests does."""
    binary, src = ksm_tests_binary()
    fd, saved = tempfile.mkstemp(prefix='samepage-bench-kst-knobs-')
    os.close(fd)
    samepage('save', '--file', saved)
    os.makedirs(os.path.dirname(LOCK), exist_ok=True)
    try:
        t0 = time.monotonic()
        r = subprocess.run(['flock', '-w', '120', LOCK, 'timeout', '--kill-after=10', str(timeout),
                            binary, '-D', '-s', str(mib), '-l', str(timeout - 20)],
                           capture_output=True, text=True)
        wall = time.monotonic() - t0
    finally:
        samepage('restore', '--file', saved, check=False)
        os.unlink(saved)
    m = re.search(r'Average speed:\s+([\d.]+) MiB/s', r.stdout)
    t = re.search(r'Total time:\s+([\d.]+) s', r.stdout)
    if not m:
        raise BenchError(f'ksm_tests -D -s {mib} gave no figure (exit {r.returncode}): '
                         f'{(r.stdout + r.stderr)[-800:]}')
    return {'mib': mib, 'mib_s': float(m.group(1)), 'seconds': float(t.group(1)) if t else None,
            'wall': wall, 'source': src}


# ---- the benchmark ------------------------------------------------------------

def run(opts, reuse=None):
    own = reuse is None
    fill_pages = opts.fill_mib * MiB // PAGE
    if own:
        guests = [Guest(f'unm{i}', opts.guest_mem, workload='fill', mib=opts.fill_mib, seed=7)
                  for i in range(2)]
        log(f'unmerge: booting 2 guests of {opts.guest_mem} MiB filled with one seed')
        start_all(guests, timeout=opts.boot_timeout)
    else:
        guests = [g for g in reuse if g.seed == 1]     # the shared-seed ones
        for g in reuse:
            if g not in guests:
                g.stop()
    res = {'guests': [g.name for g in guests], 'reused': not own}
    try:
        load = load_note()
        merged = [merged_pages(g) for g in guests]
        if not all(m >= 0.9 * fill_pages for m in merged):
            log('unmerge: merging the guests (ksmd at full speed)')
            merged = merge_fast(guests, fill_pages)
        # ksmd stopped: nothing re-merges while we unmerge.
        ksm_set('run=0')
        time.sleep(0.3)
        res['idle'] = idle_latency(guests[0], 0.5 if opts.smoke else 2.0)
        res['jobs'] = []
        for g in guests[:-1]:
            j = run_job(g)
            log(f'unmerge: job on {g.name}: {j["merged_before"] * PAGE / MiB:.0f} MiB in '
                f'{j["seconds"]:.2f} s = {j["mib_s"]:.0f} MiB/s, QMP p99 '
                f'{j["latency"]["p99"]:.2f} ms')
            res['jobs'].append(j)
        last = guests[-1]
        # MADV_UNMERGEABLE breaks the pages but leaves their rmap items in the
        # stable tree until ksmd next passes (pages_sharing still counts them,
        # and run=2 would drop them for free): one full scan clears them, so
        # pages_shared + pages_sharing is the mappings run=2 really breaks.
        settle_scan(opts.smoke)
        res['global'] = run_global(last)
        log(f'unmerge: run=2 of {res["global"]["pages"] * PAGE / MiB:.0f} MiB in '
            f'{res["global"]["kernel_seconds"]:.2f} s = {res["global"]["mib_s"]:.0f} MiB/s')
        res['load'] = load
    finally:
        stop_all_guests(guests)
    try:
        # Three runs, the median: it times MADV_UNMERGEABLE without checking that
        # its merge phase really merged (another process's run=2 meanwhile makes
        # it time an unmerge of nothing), so one run can be an outlier.
        runs = [run_ksm_tests(opts.fill_mib) for _ in range(1 if opts.smoke else 3)]
        runs.sort(key=lambda x: x['mib_s'])
        res['selftest'] = dict(runs[len(runs) // 2])
        res['selftest']['all_mib_s'] = [x['mib_s'] for x in runs]
        res['selftest']['load'] = load_note()
    except PeerAbsent as e:
        log(f'unmerge: ksm_tests: {e}')
        res['selftest'] = {'absent': str(e)}
    except BenchError as e:
        log(f'unmerge: ksm_tests: {e}')
        res['selftest'] = {'error': str(e)}
    return res, render(res)


def render(res):
    rows = []
    notes_extra = []
    lat = lambda l: f"{l['p50']:.2f} / {l['p99']:.2f} / {l['max']:.2f}"
    for j in res.get('jobs', []):
        rows.append([f"ksm-unmerge job ({j['guest']})", f"{j['merged_before'] * PAGE / MiB:.0f}",
                     f"{j['seconds']:.2f}", f"{j['mib_s']:.0f}", lat(j['latency']),
                     str(j['latency']['n'])])
    g = res.get('global')
    if g:
        rows.append(['global run=2 (samepage unmerge --all)', f"{g['pages'] * PAGE / MiB:.0f}",
                     f"{g['kernel_seconds']:.2f}", f"{g['mib_s']:.0f}", lat(g['latency']),
                     str(g['latency']['n'])])
    st = res.get('selftest', {})
    if 'mib_s' in st:
        rows.append([f"ksm_tests -D -s {st['mib']} ({st['source']})", str(st['mib']),
                     fmt(st.get('seconds'), '.2f'), f"{st['mib_s']:.0f}", '-', '-'])
        if len(st.get('all_mib_s', [])) > 1:
            notes_extra.append('ksm_tests -D: median of ' + ', '.join(
                f'{x:.0f}' for x in st['all_mib_s']) + ' MiB/s')
    elif 'error' in st:
        rows.append(['ksm_tests -D', 'error: ' + st['error'][:70], '', '', '', ''])
    elif 'absent' in st:
        rows.append(['ksm_tests -D (kernel selftest)', st['absent'][:90], '', '', '', ''])
    if res.get('idle'):
        rows.append(['QMP idle (no unmerge)', '-', '-', '-', lat(res['idle']), str(res['idle']['n'])])
    notes = [f"load: {res.get('load', '-')}; ksmd stopped (run=0) during the measurements; before "
             "run=2 two full scans clear the unmerged guests' stale rmap items",
             'MiB: pages that mapped a KSM page before (job: the backend\'s exact merged-pages; '
             'run=2: pages_shared + pages_sharing)',
             'QMP ms: query-status round trips on a second monitor of the same QEMU, '
             'p50 / p99 / max'] + notes_extra
    text = table('Unmerge (benchmark 2)', ['what', 'MiB', 'seconds', 'MiB/s', 'QMP ms p50/p99/max',
                                            'QMP n'], rows, notes)
    jobs = res.get('jobs', [])
    if jobs and g:
        # All the jobs together: their MiB over their seconds; their round trips pooled.
        job_rate = (sum(j['merged_before'] for j in jobs) * PAGE / MiB /
                    sum(j['seconds'] for j in jobs))
        ratio = job_rate / g['mib_s'] if g['mib_s'] else float('nan')
        pooled = [x for j in jobs for x in j.get('rtts_ms', [])]
        p99 = percentile(pooled, 99) if pooled else max(j['latency']['p99'] for j in jobs)
        text += (f"  all jobs: {job_rate:.0f} MiB/s; QMP during them p50 {percentile(pooled, 50):.2f} "
                 f"p99 {p99:.2f} max {max(pooled) if pooled else float('nan'):.2f} ms "
                 f"({len(pooled)} round trips)\n")
        text += f"  job vs run=2: {ratio:.2f}x ({job_rate:.0f} vs {g['mib_s']:.0f} MiB/s)"
        if 'mib_s' in st:
            text += f"; job vs ksm_tests -D: {job_rate / st['mib_s']:.2f}x"
        text += '\n'
        ok = ratio >= 0.9 and p99 <= 20
        text += (f"  TARGET ksm-unmerge >= 0.9x run=2 throughput, QMP p99 <= 20 ms during it: "
                 f"{ratio:.2f}x, p99 {p99:.2f} ms: {'met' if ok else 'MISSED'}\n")
        res['target'] = {'ratio': ratio, 'p99_ms': p99, 'met': ok}
    return text


def has_numbers(res):
    st = res.get('selftest', {})
    return bool(res.get('jobs')) and 'global' in res and ('mib_s' in st or 'absent' in st)
