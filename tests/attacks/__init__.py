"""Crafted files that break exactly one rule of SECURITY.md each (see ``craft.py``)."""
