"""Shared pytest setup."""

from __future__ import annotations

from . import generic_containers


def pytest_configure(config):
    # Until the generic OrderedDict/defaultdict handlers are merged (see generic_containers).
    generic_containers.install()
