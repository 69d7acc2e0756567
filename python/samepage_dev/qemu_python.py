"""QEMU's own python/qemu package (qemu.machine, qemu.qmp), from the source
tree of a built QEMU (scripts/build-qemu prints it as qemu_python).

Which tree is known only at run time (the QEMU version a test runs against),
so it cannot come from PYTHONPATH: use_qemu_python() registers that tree's
package as the module `qemu`, leaving the import path alone.  The first tree
registered in a process stays (as an import would): one process drives one
QEMU version."""
import importlib.machinery
import importlib.util
import os
import sys


def use_qemu_python(paths):
    """Make `import qemu.machine` load paths['qemu_python']/qemu."""
    top = paths.get('qemu_python')
    if not top or 'qemu' in sys.modules:
        return
    pkg = os.path.join(top, 'qemu')
    init = os.path.join(pkg, '__init__.py')
    if os.path.exists(init):
        spec = importlib.util.spec_from_file_location('qemu', init,
                                                      submodule_search_locations=[pkg])
    else:   # a namespace package (QEMU 7.2, 10.0: no qemu/__init__.py)
        spec = importlib.machinery.ModuleSpec('qemu', None, is_package=True)
        spec.submodule_search_locations = [pkg]
    module = importlib.util.module_from_spec(spec)
    sys.modules['qemu'] = module
    if spec.loader is not None:
        spec.loader.exec_module(module)
