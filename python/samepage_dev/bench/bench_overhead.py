"""Benchmark 5: what memory-backend-ksm costs a guest.

The same guest booted on memory-backend-ksm and on memory-backend-ram
(QEMU's own; with the default mem-merge=on it is mergeable too), with KSM
off (run=0) and on (samepage's policy, samepage tune, running through the
boot): time from starting QEMU to SAMEPAGE-READY, and the in-guest fill
workload (writing N MiB, from READY to FILLED; the guest's own timing of the
writes as well).  Boots run one at a time, the four configurations
interleaved round by round; medians.
"""
import re
import time

from samepage_dev.bench.common import ENV, fmt, ksm_set, load_note, log, median, spawn, stop, table
from samepage_dev.bench.guest import Guest

CONFIGS = [('memory-backend-ksm', 'off'), ('memory-backend-ram', 'off'),
           ('memory-backend-ksm', 'on'), ('memory-backend-ram', 'on')]


def boot_once(backend, mem, fill, timeout):
    g = Guest('ovh', mem, backend=backend, workload='fill', mib=fill, seed=3)
    try:
        g.start()
        ready = g.wait_marker('SAMEPAGE-READY', timeout)
        filled = g.wait_marker('SAMEPAGE-FILLED', timeout)
        text = g.marker_text('fill:') or ''
        m = re.search(r'wrote \d+ MiB in (\d+) ms', text)
        return {'boot': ready - g.t_start, 'fill': filled - ready,
                'guest_fill_ms': int(m.group(1)) if m else None}
    finally:
        g.stop()


def run(opts):
    mem, fill = (96, 16) if opts.smoke else (256, 128)
    reps = opts.reps
    # Smoke: the target's two configurations only.
    configs = CONFIGS[:2] if opts.smoke else CONFIGS
    out = {f'{b} {k}': [] for b, k in configs}
    loads = []
    tune = None
    try:
        for r in range(reps):
            for backend, ksm in configs:
                key = f'{backend} {ksm}'
                if ksm == 'off':
                    if tune:
                        stop(tune)
                        tune = None
                    ksm_set('run=0')
                elif tune is None:
                    tune = spawn([ENV.samepage, 'tune', '--json'], 'samepage tune',
                                 stdout=open('/dev/null', 'w'))
                    time.sleep(0.3)
                loads.append(load_note())
                x = boot_once(backend, mem, fill, opts.boot_timeout)
                out[key].append(x)
                log(f"overhead: {key}: boot {x['boot']:.2f} s, fill {x['fill']:.2f} s")
    finally:
        if tune:
            stop(tune)
        ksm_set('run=0', check=False)
    res = {'mem_mib': mem, 'fill_mib': fill, 'reps': reps, 'runs': out, 'loads': loads}
    for key, xs in out.items():
        if xs:
            res[key] = {k: median([x[k] for x in xs if x[k] is not None]) for k in
                        ('boot', 'fill', 'guest_fill_ms')}
    return res, render(res)


def render(res):
    rows = []
    for backend, ksm in CONFIGS:
        key = f'{backend} {ksm}'
        if not res['runs'].get(key):
            continue
        m = res[key]
        xs = res['runs'][key]
        rows.append([backend, ksm, f"{m['boot']:.2f}", f"{min(x['boot'] for x in xs):.2f}-"
                     f"{max(x['boot'] for x in xs):.2f}", f"{m['fill']:.2f}",
                     fmt(m['guest_fill_ms'], '.0f')])
    text = table('Overhead (benchmark 5): memory-backend-ksm vs memory-backend-ram',
                 ['backend', 'KSM', 'boot s (median)', 'boot range', 'fill s (READY->FILLED)',
                  'guest fill ms'], rows,
                 [f"{res['mem_mib']} MiB TCG guest writing {res['fill_mib']} MiB; "
                  f"{res['reps']} boots per configuration, interleaved; "
                  f"KSM on = samepage tune running; loads seen: "
                  f"{min(res['loads'])} .. {max(res['loads'])}"])
    ratios = {}
    for ksm in ('off', 'on'):
        if not res['runs'].get(f'memory-backend-ksm {ksm}'):
            continue
        a, b = res[f'memory-backend-ksm {ksm}'], res[f'memory-backend-ram {ksm}']
        ratios[ksm] = (a['boot'] / b['boot'], a['fill'] / b['fill'])
        text += (f"  KSM {ksm}: ksm/ram boot {ratios[ksm][0]:.3f}x, workload "
                 f"{ratios[ksm][1]:.3f}x\n")
    # "Within 2%": no more than 2% slower (faster is noise, or better).
    worst = max(ratios['off'])
    ok = worst <= 1.02
    text += (f"  TARGET memory-backend-ksm within 2% of memory-backend-ram with KSM off: "
             f"boot {ratios['off'][0]:.3f}x, workload {ratios['off'][1]:.3f}x: "
             f"{'met' if ok else 'MISSED'}\n")
    res['ratios'] = ratios
    res['target'] = {'worst_ratio': worst, 'met': ok}
    return text


def has_numbers(res):
    return all(res.get(f'{b} {k}', {}).get('boot', 0) > 0 for b, k in CONFIGS
               if res['runs'].get(f'{b} {k}'))
