"""Rendering: the terminal tables (onto a rich console it is handed), the HTML report,
the exports (one module per format) and the CI output, each from a run record and its
verdict.

Pure but for :mod:`.ci`, which appends to GitHub's step summary file; the HTML report
is written by :mod:`pytest_rtgov.publish`, the exports by the plugin and the CLI.
"""
