"""Benchmark 4: census speed (build/bench/census-speed): the census's GB/s
next to a memcpy and a plain read of /proc/PID/mem of the same bytes, in the
same run, on one core."""
import re
import subprocess

from samepage_dev.bench.common import BenchError, ENV, load_note, log


def run(opts):
    mib, runs = (32, 1) if opts.smoke else (512, 3)
    load = load_note()
    log(f'census: census-speed --mib {mib} --runs {runs}')
    r = subprocess.run([ENV.census_speed, '--mib', str(mib), '--runs', str(runs)],
                       capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise BenchError(f'census-speed exited {r.returncode}: {r.stderr.strip()}')
    res = {'mib': mib, 'runs': runs, 'load': load, 'output': r.stdout}
    for key, label in (('memcpy', 'memcpy'), ('plain', 'plain read'), ('census', 'census (')):
        m = re.search(re.escape(label) + r'[^\n]*?\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\n',
                      r.stdout)
        if m:
            res[key] = {'wall': float(m.group(1)), 'cpu': float(m.group(2))}
    if 'plain' in res and 'census' in res:
        res['ratio_wall'] = res['census']['wall'] / res['plain']['wall']
        res['ratio_cpu'] = res['census']['cpu'] / res['plain']['cpu']
        res['met'] = res['ratio_cpu'] >= 0.5
    text = 'Census speed (benchmark 4)\n\n' + ''.join('  ' + l + '\n' for l in
                                                       r.stdout.rstrip().split('\n'))
    text += f'  load: {load}\n'
    if 'ratio_cpu' in res:
        text += (f"  TARGET census >= 0.5x plain read (one core, by CPU time): "
                 f"{res['ratio_cpu']:.2f}x (by wall time {res['ratio_wall']:.2f}x): "
                 f"{'met' if res['met'] else 'MISSED'}\n")
    return res, text


def has_numbers(res):
    return 'ratio_cpu' in res and res['census']['wall'] > 0
