#!/usr/bin/python3
"""Run unittest test modules and report in TAP, one line per test case, so
meson (protocol: 'tap') and scripts/test-summary count every case.

    taprunner.py [-k PATTERN] module_or_file.py...
"""
import argparse
import importlib.util
import os
import sys
import time
import traceback
import unittest


class TapResult(unittest.TestResult):
    def __init__(self, stream):
        super().__init__()
        self.stream = stream
        self.n = 0
        self.started = 0.0

    def _line(self, text):
        self.stream.write(text + '\n')
        self.stream.flush()

    def startTest(self, test):
        super().startTest(test)
        self.started = time.monotonic()
        self._line(f'# start {test.id()}')

    def _name(self, test):
        return f'{test.id()} ({time.monotonic() - self.started:.1f}s)'

    def _diag(self, text):
        for line in text.rstrip().splitlines():
            self._line('# ' + line)

    def addSuccess(self, test):
        self.n += 1
        self._line(f'ok {self.n} {self._name(test)}')

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self.n += 1
        self._diag(''.join(traceback.format_exception(*err)))
        self._line(f'not ok {self.n} {self._name(test)}')

    def addError(self, test, err):
        super().addError(test, err)
        self.n += 1
        self._diag(''.join(traceback.format_exception(*err)))
        self._line(f'not ok {self.n} {self._name(test)}')

    def addSkip(self, test, reason):
        self.n += 1
        self._line(f'ok {self.n} {test.id()} # SKIP {reason}')

    def addExpectedFailure(self, test, err):
        self.n += 1
        self._line(f'ok {self.n} {test.id()} # TODO expected failure')

    def addUnexpectedSuccess(self, test):
        super().addFailure(test, (AssertionError, AssertionError('unexpected success'), None))
        self.n += 1
        self._line(f'not ok {self.n} {test.id()} unexpected success')


def load(path):
    name = os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return unittest.defaultTestLoader.loadTestsFromModule(module)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument('-k', dest='pattern', help='only tests whose id contains this')
    ap.add_argument('files', nargs='+')
    args = ap.parse_args()
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

    suite = unittest.TestSuite()
    for f in args.files:
        suite.addTests(load(f))
    tests = list(iter_tests(suite))
    if args.pattern:
        tests = [t for t in tests if args.pattern in t.id()]
    print(f'1..{len(tests)}', flush=True)
    result = TapResult(sys.stdout)
    unittest.TestSuite(tests).run(result)
    return 0 if result.wasSuccessful() else 1


def iter_tests(suite):
    for t in suite:
        if isinstance(t, unittest.TestSuite):
            yield from iter_tests(t)
        else:
            yield t


if __name__ == '__main__':
    sys.exit(main())
