"""fturun's built-in components: one plugin module per kind, registered through the same hooks as
third-party plugins (see fturun.hookspecs). ``datasets.py`` is the example to copy."""
