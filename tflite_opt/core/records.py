"""Frozen dataclasses to JSON and back, by their type hints: how a search keeps its finished candidates on disk
without pickle (a file that unpickles runs code; a JSON record only fills typed fields).

Handles dataclasses, enums, paths, numpy arrays, tuples, lists, dicts with string keys, unions with None, and
the JSON scalars (inf and nan included). A field typed ``Any`` (a Keras model) is not recorded: the caller keeps
such fields in files of their own and passes them back.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import types
import typing
from pathlib import Path
from typing import Any

import numpy as np

_ARRAY = "__ndarray__"


def to_record(value: Any) -> Any:
    """``value`` as JSON-able data (fields typed ``Any`` left out).

    Raises:
        TypeError: a value of a type the record cannot hold (bytes, an object that is not a dataclass).
    """
    if value is None or isinstance(value, (bool, int, float, str)) and not isinstance(value, enum.Enum):
        return value
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return {_ARRAY: value.tolist(), "dtype": str(value.dtype), "shape": list(value.shape)}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        hints = _hints(type(value))
        return {
            f.name: to_record(getattr(value, f.name)) for f in dataclasses.fields(value) if hints[f.name] is not Any
        }
    if isinstance(value, (tuple, list)):
        return [to_record(item) for item in value]
    if isinstance(value, dict):
        return {str(key): to_record(item) for key, item in value.items()}
    raise TypeError(f"a record cannot hold a {type(value).__name__}")


def from_record(kind: Any, record: Any, **extra: Any) -> Any:
    """The value of type ``kind`` that ``record`` (from :func:`to_record`) holds; ``extra`` fills a dataclass's
    fields the record left out (those typed ``Any``).

    Raises:
        ValueError: the record does not fit the type.
    """
    try:
        return _decode(kind, record, extra)
    except (TypeError, KeyError, AttributeError) as exc:
        raise ValueError(f"a record does not fit {getattr(kind, '__name__', kind)}: {exc}") from exc


def _decode(kind: Any, record: Any, extra: dict[str, Any]) -> Any:
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if kind is Any:
        return record
    if origin in (typing.Union, types.UnionType):
        if record is None:
            return None
        return _decode(next(a for a in args if a is not type(None)), record, {})
    if origin in (tuple, list, dict):
        return _decode_container(origin, args, record)
    if dataclasses.is_dataclass(kind):
        hints = _hints(kind)
        fields = {f.name: f for f in dataclasses.fields(kind) if f.init}
        values = {name: _decode(hints[name], record[name], {}) for name in fields if name in record}
        return kind(**values, **extra)
    return _decode_leaf(kind, record)


def _decode_container(origin: type, args: tuple[Any, ...], record: Any) -> Any:
    if origin is tuple:
        items = args[:1] * len(record) if len(args) == 2 and args[1] is Ellipsis else args
        return tuple(_decode(a, r, {}) for a, r in zip(items, record, strict=True))
    if origin is list:
        return [_decode(args[0], r, {}) for r in record]
    return {_decode(args[0], k, {}): _decode(args[1], v, {}) for k, v in record.items()}


def _decode_leaf(kind: Any, record: Any) -> Any:
    if kind is np.ndarray:
        return np.asarray(record[_ARRAY], dtype=record["dtype"]).reshape(record["shape"])
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return kind(record)
    if kind is Path:
        return Path(record)
    return kind(record) if isinstance(kind, type) else record


@functools.cache
def _hints(kind: type) -> dict[str, Any]:
    return typing.get_type_hints(kind)
