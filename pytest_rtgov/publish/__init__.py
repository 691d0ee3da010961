"""Writing what a run publishes: the HTML report file (and its ledger facts).

A floor above ``store/`` and ``report/``: it reads records and ledger facts through
``store/``, renders them through ``report/`` and writes the files. ``store/`` never
imports ``report/``; the plugin and the CLI call this package.
"""
