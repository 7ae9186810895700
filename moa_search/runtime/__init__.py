"""Running mixtures: prompting, backends, the executor, the response cache and the trace.

Imports only :mod:`moa_search.config` and :mod:`moa_search.errors`; never search, judges,
analysis, interop or report.
"""
