"""Analysis of a finished study: which models help as proposers and as aggregators.
"""
