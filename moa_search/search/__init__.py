"""The search: the space of mixtures, scoring a mixture, the Optuna study driver, choosing and
exporting a mixture.
"""
