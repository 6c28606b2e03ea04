"""Adapters: the embedded defaults (SQLite, directory, local processes) and cloud ones.

Import the concrete module you need (e.g. ``control_plane.adapters.sqlite_store``); this
package imports nothing heavy on its own.
"""
