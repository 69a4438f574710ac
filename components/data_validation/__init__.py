"""Data validation before training: statistics, a kept schema, drift and skew.

component.py has the components and how they gate the Trainer; schema.py
what TFDV computes and compares; store.py the schema directory kept across
runs; options.py the settings.
"""
