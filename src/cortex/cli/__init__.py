"""The ``cortex`` command: a thin layer that parses, configures logging and calls the library."""

from __future__ import annotations
