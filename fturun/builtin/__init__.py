"""builtin (plugins, importing only fturun.api): fturun's built-in components and tasks.

One plugin module per kind (and ``tasks.py`` with the
task records, their implementations in ``task_*.py``), registered through the same hooks as
third-party plugins (see fturun.hookspecs) and importing only ``fturun.api``. ``datasets.py`` is
the example to copy."""
