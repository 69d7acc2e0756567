"""Benchmark: fleet fingerprints (samepage fingerprint, samepage place).

Accuracy: pairs of busybox guests whose fills overlap 0, 25, 50, 75 and 100%
(fill --seed S --seed2 T --share-pct P: the first P% of the fill from the
common seed, the rest from each guest's own).  For each pair, side by side:
  predicted   samepage place --pairs: the estimated |D_A ∩ D_B|, distinct
              non-zero contents the two have in common, from the guests'
              fingerprints (keyed bottom-k sketches, k = 8192);
  census      samepage estimate over the pair: dup_across_pages, the exact
              |D_A ∩ D_B| (every page hashed and confirmed byte for byte);
  KSM         what KSM actually merged across the pair once it converged with
              both running: the census's exact merged pages (KSM frames
              mapped n > 1 times, from kpageflags) of the pair, minus those of
              each guest alone.  That is the pages_sharing + ksm_zero_pages
              delta between running the pair together and apart, measured on
              one converged state (the counters alone cannot tell a merge
              inside a guest from one across).
Every figure reads only what KSM can merge: areas registered with KSM
(--mergeable-only: the guests' RAM on memory-backend-ksm).  "Within 5%" is
|predicted - census| / census; the error is also given relative to the
guest's distinct pages, since for a small common count the relative error is
large by construction (the sketch's standard error is about
estimate / sqrt(samples)).  Within 10% of KSM likewise, relative to KSM.

Speed: build/bench/fleet-speed (fingerprint MiB/s vs a plain read of
/proc/PID/mem in the same run; ranking 1,000 guests against 100 hosts).
"""
import json
import os
import shutil
import subprocess
import tempfile
import time

from samepage_dev.bench.common import (ENV, BenchError, fmt, ksm_clean, ksm_set, ksm_stats,
                                       load_note, log, samepage, table)
from samepage_dev.bench.guest import Guest, start_all, stop_all_guests
from samepage_dev.cli import stats_value

OVERLAPS = (0, 25, 50, 75, 100)
SCAN = ('pages_to_scan=4000', 'sleep_millisecs=10')


def make_key(d):
    path = os.path.join(d, 'fleet.key')
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, os.urandom(32))
    os.close(fd)
    return path


def fingerprint(key, out, pids, hostname, group=None):
    args = ['fingerprint', '--key', key, '--rate', '0', '--mergeable-only',
            '--hostname', hostname, '-o', out]
    for p in pids:
        args += ['--pid', str(p)]
    if group:
        args += ['--trust-group', group]
    samepage(*args, timeout=600)
    return out


def census(pids):
    args = ['estimate', '--json', '--mergeable-only']
    for p in pids:
        args += ['--pid', str(p)]
    return json.loads(samepage(*args, timeout=600).stdout)


def merged(c):
    if not c.get('merged_exact'):
        raise BenchError('the census has no exact merged figure (frame numbers need root)')
    return c['merged_pages']


def ksm_saving():
    s = ksm_stats()
    return (stats_value(s, 'pages_sharing') or 0) + (stats_value(s, 'ksm_zero_pages') or 0), \
        stats_value(s, 'full_scans') or 0


def converge(timeout):
    """KSM on with fast scanning until pages_sharing + ksm_zero_pages holds
    still (within 0.1%: idle guests still touch a few pages) over two full
    scans, or timeout; then ksmd is stopped (run=0 keeps what it merged) so
    that the censuses that follow read one state.  Returns (seconds,
    converged)."""
    ksm_set(*SCAN, 'run=1')
    t0 = time.monotonic()
    last, scans = ksm_saving()
    still_since = None
    while time.monotonic() - t0 < timeout:
        time.sleep(1.0)
        now, s = ksm_saving()
        if now > 0 and abs(now - last) <= max(16, now // 1000):
            if still_since is None:
                still_since = s
            elif s >= still_since + 2:
                ksm_set('run=0')
                return time.monotonic() - t0, True
        else:
            still_since = None
        last = now
    ksm_set('run=0')
    return time.monotonic() - t0, False


def across_merged(pids_a, pids_b):
    """KSM's pages merged across two groups of processes (see the top)."""
    return merged(census(pids_a + pids_b)) - merged(census(pids_a)) - merged(census(pids_b))


def pct(a, b):
    return None if not b else 100.0 * (a - b) / b


def run_pair(o, key, d, overlap, mem, fill):
    seed = 7100 + overlap
    a = Guest(f'fleet-a{overlap}', mem, workload='fill', mib=fill, seed=seed,
              seed2=seed + 500, share=overlap)
    b = Guest(f'fleet-b{overlap}', mem, workload='fill', mib=fill, seed=seed,
              seed2=seed + 600, share=overlap)
    try:
        ksm_clean()
        start_all([a, b])
        fa = fingerprint(key, os.path.join(d, f'a{overlap}.json'), [a.pid], 'a')
        fb = fingerprint(key, os.path.join(d, f'b{overlap}.json'), [b.pid], 'b')
        pairs = json.loads(samepage('place', '--pairs', '--json', fa, fb).stdout)
        predicted = pairs['shared_pages'][0][1]
        distinct_a = pairs['shared_pages'][0][0]
        larger = max(distinct_a, pairs['shared_pages'][1][1])
        # The sketch's own standard error: samples ~ predicted * k / larger distinct count.
        samples = predicted * 8192 / larger if larger > 8192 else predicted
        se_pct = 100.0 / samples ** 0.5 if samples >= 1 else None
        c = census([a.pid, b.pid])
        exact = c['dup_across_pages']
        secs, conv = converge(o.fleet_timeout)
        ksm = across_merged([a.pid], [b.pid])
        row = {'overlap': overlap, 'predicted': predicted, 'census': exact, 'ksm': ksm,
               'distinct_a': distinct_a, 'se_pct': se_pct, 'converge_s': secs, 'converged': conv,
               'err_census_pct': pct(predicted, exact), 'err_ksm_pct': pct(predicted, ksm),
               'err_of_distinct_pct': 100.0 * (predicted - exact) / distinct_a if distinct_a else None}
        log(f'fleet: overlap {overlap}%: predicted {predicted}, census {exact}, KSM {ksm} '
            f'({"converged" if conv else "not converged"} in {secs:.0f} s)')
        return row
    finally:
        stop_all_guests([a, b])
        ksm_set('run=0', check=False)


def speed(o):
    exe = os.path.join(ENV.build, 'bench', 'fleet-speed')
    mib, runs = (32, 1) if o.smoke else (512, 3)
    r = subprocess.run([exe, '--mib', str(mib), '--runs', str(runs)], capture_output=True,
                       text=True, timeout=900)
    if r.returncode != 0:
        raise BenchError(f'fleet-speed exited {r.returncode}: {r.stderr.strip()}')
    return r.stdout


def run(o):
    mem, fill = (128, 32) if o.smoke else (256, 128)
    overlaps = (0, 100) if o.smoke else OVERLAPS
    load = load_note()
    d = tempfile.mkdtemp(prefix='samepage-bench-fleet-')
    try:
        key = make_key(d)
        rows = [run_pair(o, key, d, ov, mem, fill) for ov in overlaps]
    finally:
        shutil.rmtree(d, ignore_errors=True)     # the key and the fingerprints
    res = {'guest_mib': mem, 'fill_mib': fill, 'load': load, 'pairs': rows}

    def within(r, key_name, limit):
        e = r[key_name]
        return '-' if e is None else ('yes' if abs(e) <= limit else 'NO')

    trows = [[f"{r['overlap']}%", r['distinct_a'], r['predicted'],
              f"{r['se_pct']:.1f}%" if r.get('se_pct') else '-', r['census'], r['ksm'],
              fmt(r['err_census_pct'], '+.1f') + '%' if r['err_census_pct'] is not None else '-',
              within(r, 'err_census_pct', 5),
              fmt(r['err_of_distinct_pct'], '+.2f') + '%',
              fmt(r['err_ksm_pct'], '+.1f') + '%' if r['err_ksm_pct'] is not None else '-',
              within(r, 'err_ksm_pct', 10),
              f"{r['converge_s']:.0f}{'' if r['converged'] else ' (not converged)'}"]
             for r in rows]
    text = table(f'Fleet fingerprint accuracy: pairs of busybox guests ({mem} MiB, {fill} MiB '
                 f'filled), shareable pages predicted from fingerprints vs exact',
                 ['overlap', 'distinct A', 'predicted', '1 se', 'census', 'KSM merged',
                  'vs census', '<=5%',
                  'of distinct', 'vs KSM', '<=10%', 'KSM s'], trows,
                 ['predicted: samepage place --pairs (k = 8192 sketches); census: samepage '
                  'estimate, dup_across_pages of the pair (exact);',
                  'KSM merged: pages KSM merged across the pair after converging (census frames of '
                  'the pair minus each alone);',
                  '"vs census" = (predicted - census) / census; "of distinct" = (predicted - '
                  'census) / the guest\'s distinct pages;',
                  '1 se: the sketch\'s standard error, 1 / sqrt(samples) (samples ~ predicted x '
                  'k / the larger distinct count).',
                  f'load: {load}'])
    res['met_census'] = all(r['err_census_pct'] is None or abs(r['err_census_pct']) <= 5
                            for r in rows if r['census'] > 0)
    res['met_ksm'] = all(r['err_ksm_pct'] is None or abs(r['err_ksm_pct']) <= 10
                         for r in rows if r['ksm'] > 0)
    text += (f"  TARGET within 5% of the census at every overlap: "
             f"{'met' if res['met_census'] else 'MISSED'}; within 10% of KSM: "
             f"{'met' if res['met_ksm'] else 'MISSED'}\n")
    try:
        sp = speed(o)
    except (BenchError, OSError, subprocess.TimeoutExpired) as e:
        sp = f'fleet-speed FAILED: {e}'
    res['speed_output'] = sp
    text += '\nFleet fingerprint speed (build/bench/fleet-speed)\n\n' + \
        ''.join('  ' + line + '\n' for line in sp.rstrip().split('\n'))
    return res, text


def has_numbers(res):
    return bool(res.get('pairs')) and 'speed_output' in res
