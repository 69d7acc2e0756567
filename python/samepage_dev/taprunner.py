#!/usr/bin/python3
"""Run unittest test modules and report in TAP, one line per test case, so
meson (protocol: 'tap') and scripts/test-summary count every case.

    PYTHONPATH=python python3 -m samepage_dev.taprunner [-k PATTERN] file.py...
"""
import argparse
import importlib.util
import os
import sys
import time
import traceback
import unittest


class TapResult(unittest.TestResult):
    """One TAP line per test, written when the test (and its tearDown and
    cleanups) is over: the first failure decides, every traceback is shown."""

    def __init__(self, stream):
        super().__init__()
        self.stream = stream
        self.n = 0
        self.started = 0.0
        self.outcome = None     # None (passed), 'fail', ('skip', reason), 'todo'

    def _line(self, text):
        self.stream.write(text + '\n')
        self.stream.flush()

    def _diag(self, text):
        for line in text.rstrip().splitlines():
            self._line('# ' + line)

    def startTest(self, test):
        super().startTest(test)
        self.started = time.monotonic()
        self.outcome = None
        self._line(f'# start {test.id()}')

    def stopTest(self, test):
        super().stopTest(test)
        self._report(test)

    def _report(self, test):
        self.n += 1
        took = f'({time.monotonic() - self.started:.1f}s)'
        if self.outcome == 'fail':
            self._line(f'not ok {self.n} {test.id()} {took}')
        elif isinstance(self.outcome, tuple):
            self._line(f'ok {self.n} {test.id()} # SKIP {self.outcome[1]}')
        elif self.outcome == 'todo':
            self._line(f'ok {self.n} {test.id()} # TODO expected failure')
        else:
            self._line(f'ok {self.n} {test.id()} {took}')

    def _failed(self, err):
        self._diag(''.join(traceback.format_exception(*err)))
        self.outcome = 'fail'

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._failed(err)

    def addError(self, test, err):
        super().addError(test, err)
        # setUpClass/tearDownClass errors come with no start/stop of a test.
        if isinstance(test, unittest.suite._ErrorHolder):
            self.started = time.monotonic()
            self._failed(err)
            self._report(test)
            return
        self._failed(err)

    def addSubTest(self, test, subtest, err):
        super().addSubTest(test, subtest, err)
        if err is not None:
            self._diag(f'subtest {subtest.id()} failed:')
            self._failed(err)

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        if isinstance(test, unittest.suite._ErrorHolder):
            self.outcome = ('skip', reason)
            self._report(test)
        elif self.outcome is None:
            self.outcome = ('skip', reason)

    def addExpectedFailure(self, test, err):
        super().addExpectedFailure(test, err)
        self.outcome = 'todo'

    def addUnexpectedSuccess(self, test):
        super().addUnexpectedSuccess(test)
        self._diag('unexpected success')
        self.outcome = 'fail'


def load(path):
    name = os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return unittest.defaultTestLoader.loadTestsFromModule(module)


def main():
    ap = argparse.ArgumentParser(prog='samepage_dev.taprunner', description=__doc__)
    ap.add_argument('-k', dest='pattern', help='only tests whose id contains this')
    ap.add_argument('files', nargs='+')
    args = ap.parse_args()

    suite = unittest.TestSuite()
    for f in args.files:
        suite.addTests(load(f))
    tests = list(iter_tests(suite))
    if args.pattern:
        tests = [t for t in tests if args.pattern in t.id()]
    result = TapResult(sys.stdout)
    unittest.TestSuite(tests).run(result)
    # The plan goes last: a class skipped in setUpClass reports one line,
    # not one per test.
    print(f'1..{result.n}', flush=True)
    return 0 if result.wasSuccessful() else 1


def iter_tests(suite):
    for t in suite:
        if isinstance(t, unittest.TestSuite):
            yield from iter_tests(t)
        else:
            yield t


if __name__ == '__main__':
    sys.exit(main())
