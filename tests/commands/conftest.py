"""Stand-ins for what a command calls: the job (and the renderer it prints with), so that a command test checks
flags → arguments, printing and exit codes without converting anything."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytest

from tflite_opt.core.errors import (
    ConversionError,
    DataError,
    ModelLoadError,
    OutputExistsError,
    StackError,
    TranslationError,
    UsageError,
    VerificationError,
)

# Every typed error and the exit code the CLI edge gives it.
TYPED_ERRORS = {
    UsageError: 2,
    ModelLoadError: 2,
    DataError: 2,
    ConversionError: 2,
    VerificationError: 2,
    StackError: 1,
    OutputExistsError: 2,
    TranslationError: 2,
}


class Stub:
    """Stands in for a function a command imported: binds each call to the real function's signature (so a
    command passing an argument the job does not take fails), records the arguments by name with the defaults
    filled in, and returns ``result`` or raises ``error``."""

    def __init__(self, real: Callable[..., Any], result: Any = None, error: BaseException | None = None):
        self.signature = inspect.signature(real)
        self.result = result
        self.error = error
        self.calls: list[dict[str, Any]] = []

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        bound = self.signature.bind(*args, **kwargs)
        bound.apply_defaults()
        self.calls.append(dict(bound.arguments))
        if self.error is not None:
            raise self.error
        return self.result

    @property
    def received(self) -> dict[str, Any]:
        """The arguments of the one call the command made."""
        assert len(self.calls) == 1, f"expected one call, got {len(self.calls)}"
        return self.calls[0]


@pytest.fixture
def stub(monkeypatch) -> Callable[..., Stub]:
    """``stub(module, "run_convert", result=...)``: replace what ``module`` imported under that name (it must
    exist there) with a :class:`Stub` for this test."""

    def install(module: Any, name: str, result: Any = None, error: BaseException | None = None) -> Stub:
        fake = Stub(getattr(module, name), result, error)
        monkeypatch.setattr(module, name, fake)
        return fake

    return install


@pytest.fixture(params=list(TYPED_ERRORS.items()), ids=lambda item: item[0].__name__)
def typed_error(request) -> tuple[type[Exception], int]:
    """Each typed error class, with the exit code a command must return for it."""
    return request.param


@pytest.fixture
def typed_errors() -> dict[type[Exception], int]:
    """All typed error classes and their exit codes."""
    return dict(TYPED_ERRORS)
