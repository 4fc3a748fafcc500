"""One module per method; each registers itself with ``bench.workloads.method.register``.

Every module in this package is imported by ``bench.engine.methods.all_methods()``, so adding a method
is adding a file (``python -m bench new-method NAME`` writes a commented template).
"""
