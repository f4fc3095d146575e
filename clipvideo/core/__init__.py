"""The bottom layer: errors, atomic files, CSV tables, the file contracts, paths, ids, text and the machine.

Imports nothing else of clipvideo, and nothing heavier than the standard library.
"""
