"""Serving mixtures as an OpenAI-compatible endpoint.
"""
