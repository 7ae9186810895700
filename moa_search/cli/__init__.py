"""The ``moa-search`` command line.
"""
