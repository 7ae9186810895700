"""Interoperability with other tools' formats: AlpacaEval data and Archon configs.
"""
