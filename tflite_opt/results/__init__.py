"""Every result type the stages share, and the enums that name their kinds: the project's ``qtyping``.

Stages make these and read each other's through here, never through the stage that made them; the package
imports nothing of tflite_opt but :mod:`tflite_opt.core`.
"""
