"""Jobs: whole runs as plain functions that chain stages and return result objects.

A command calls one job and prints what it returns; a notebook or a test can call it the same way.
Progress is logged (``logging.getLogger("tflite_opt")``), never printed.
"""
