#!/usr/bin/python3
"""plan.py: what the kernel test guest runs, from meson's own test list.

    plan.py BUILD_DIR PLAN_OUT FILES_OUT SUITE...

Reads BUILD_DIR/meson-info/intro-tests.json, keeps the tests of the given
suites in meson's serial order (priority, then definition order), and writes
  PLAN_OUT   one `run_test NAME TIMEOUT WORKDIR K=V... CMD ARG...` line per
             test, shell-quoted, for tests/kernels/guest-init;
  FILES_OUT  every path the guest needs at the same absolute path: the test
             programs, the programs and directories their environment names
             (SAMEPAGE_CLI, SAMEPAGE_HOOK_BIN, G_TEST_SRCDIR, ...).
A test whose program is not an ELF file of the build (the Python suites) is
refused: the guest has no Python."""
import json
import os
import shlex
import sys


def main():
    build, plan_out, files_out, *suites = sys.argv[1:]
    if not suites:
        print('plan.py: name at least one suite', file=sys.stderr)
        return 2
    with open(os.path.join(build, 'meson-info', 'intro-tests.json')) as f:
        tests = json.load(f)
    # meson's serial order: higher priority first, stable otherwise.
    order = sorted(range(len(tests)), key=lambda i: (-tests[i].get('priority', 0), i))
    wanted = set(suites)
    lines, files = [], set()
    for i in order:
        t = tests[i]
        names = {s.split(':', 1)[-1] for s in t['suite']}
        if not names & wanted:
            continue
        prog = t['cmd'][0]
        with open(prog, 'rb') as p:
            if p.read(4) != b'\x7fELF':
                print(f'plan.py: {t["name"]}: {prog} is not a compiled test '
                      '(the guest has no interpreter)', file=sys.stderr)
                return 1
        files.add(prog)
        env = dict(t.get('env') or {})
        for v in list(env.values()) + t['cmd'][1:]:
            if os.path.isabs(v) and os.path.exists(v):
                files.add(os.path.normpath(v))
        workdir = t.get('workdir') or build
        argv = ['run_test', t['name'], str(int(t.get('timeout') or 30)), workdir]
        argv += [f'{k}={v}' for k, v in sorted(env.items())]
        argv += t['cmd']
        lines.append(' '.join(shlex.quote(a) for a in argv))
    if not lines:
        print(f'plan.py: no test in suites {", ".join(suites)}', file=sys.stderr)
        return 1
    with open(plan_out, 'w') as f:
        f.write('# Written by tests/kernels/plan.py from meson introspect.\n')
        f.write('\n'.join(lines) + '\n')
    with open(files_out, 'w') as f:
        f.write('\n'.join(sorted(files)) + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
