"""Modules on the snippets' Python path (not imported by the server): see packages.py."""
