"""The HTML study report.
"""
