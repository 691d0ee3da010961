"""Storage edges: everything that reads or writes files under the state directory (run
records, baselines, the ledger, keys, seals, artifacts, the delta index), and
``rtgov verify``. Never imports :mod:`pytest_rtgov.report`: writing rendered files is
:mod:`pytest_rtgov.publish`'s.
"""
