"""Stages, one module each, in the order data flows: model_safety → load → prune → data → convert → verify →
layer_errors → benchmark → search → report → package → repository.

A stage imports core and earlier stages only; it parses no flags and prints nothing.
"""
