"""The base of the fakes' data types: pydantic models validated on construction, short reprs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel, ValidationError

from freshtoken._schema import MODEL_CONFIG, config_error

__all__ = ["Spec"]


class Spec(BaseModel):
    """A frozen pydantic model (:data:`~freshtoken._schema.MODEL_CONFIG`) for the fakes' data.

    Constructing one in Python checks it with the same rules as parsing it from a file or an
    HTTP body, and a bad value raises the same one-line :class:`~freshtoken.ConfigError`, with
    the class name as its source. The repr names only fields that differ from their defaults,
    so a fault plan in a Hypothesis falsifying example stays readable.
    """

    model_config = MODEL_CONFIG

    def __init__(self, /, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise config_error(exc, source=type(self).__name__) from None

    # Parsing nested data validates fields directly; this constructor only translates errors.
    __init__.__pydantic_base_init__ = True  # type: ignore[attr-defined]

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        for name, info in type(self).model_fields.items():
            value = getattr(self, name)
            if info.is_required() or value != info.get_default(call_default_factory=True):
                yield name, value
