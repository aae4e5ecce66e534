"""Typed errors: raised where a problem is found, printed once at the CLI edge."""

from __future__ import annotations


class TfliteOptError(Exception):
    """Base class of every error a user can act on; the CLI prints it as one line."""

    exit_code = 2


class UsageError(TfliteOptError):
    """Flags or arguments that do not make sense together."""


class ModelLoadError(TfliteOptError):
    """A model file that is missing, unreadable or of an unsupported kind."""


class DataError(TfliteOptError):
    """Representative or evaluation data that cannot be used."""


class ConversionError(TfliteOptError):
    """The TFLite converter failed."""


class VerificationError(TfliteOptError):
    """A converted model is not what was asked for (dtype, float fallback)."""


class StackError(TfliteOptError):
    """The installed TensorFlow stack cannot do what was asked (see version_check)."""

    exit_code = 1


class OutputExistsError(TfliteOptError):
    """An output file exists and --overwrite was not given."""


class TranslationError(TfliteOptError):
    """A Keras 3 model that cannot be rebuilt faithfully in tf_keras, which pruning needs."""
