"""The API's flask-smorest Blueprint: authentication first, a multipart location, documented refusals.

webargs reads ``form`` and ``files`` as two separate locations, but an upload is one
``multipart/form-data`` body with both; the ``multipart`` location below reads them together so one
marshmallow schema validates (and documents) the whole form.
"""

from __future__ import annotations

import http
import re
from collections.abc import Callable, Mapping
from typing import Any

import marshmallow as ma
from flask import Request
from flask_smorest import Blueprint
from webargs.flaskparser import FlaskParser, is_json_request
from webargs.multidictproxy import MultiDictProxy
from werkzeug.datastructures import CombinedMultiDict, MultiDict

from admin.api.auth import authenticate
from admin.api.errors import ApiError, register_blueprint_handlers

UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def unstorable_path(value: Any, path: str = "") -> str | None:
    """Where the first character no database can store sits in parsed input (keys included), or None.

    JSON may carry U+0000 and unpaired UTF-16 surrogates (``"\\ud800"``): PostgreSQL refuses the
    first, and neither can be encoded as UTF-8 for SQLite or PostgreSQL. Such input is refused with
    a 422 naming the field instead of failing in the database.
    """
    if isinstance(value, str):
        return (path or "_schema") if UNSTORABLE.search(value) else None
    if isinstance(value, MultiDictProxy):
        value = value.data
    if isinstance(value, MultiDict):
        items: Any = ((k, v) for k, vs in value.lists() for v in vs)
    elif isinstance(value, Mapping):
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        here = f"{path}.{key}" if path else str(key)
        if UNSTORABLE.search(str(key)):
            return UNSTORABLE.sub("?", here)
        found = unstorable_path(item, here)
        if found:
            return found
    return None


class ApiParser(FlaskParser):
    """webargs' Flask parser plus the ``multipart`` location (form fields and files of one body),
    refusing characters the database cannot store anywhere in the input."""

    __location_map__ = {**FlaskParser.__location_map__, "multipart": "load_multipart"}
    DEFAULT_UNKNOWN_BY_LOCATION = {**FlaskParser.DEFAULT_UNKNOWN_BY_LOCATION, "multipart": ma.EXCLUDE}

    def _load_location_data(self, *, schema: ma.Schema, req: Request, location: str) -> Any:
        data = super()._load_location_data(schema=schema, req=req, location=location)
        where = unstorable_path(data)
        if where:
            raise ApiError(422, "invalid_input", "The input contains a character that cannot be stored: NUL "
                           "(\\u0000) or half of a UTF-16 surrogate pair. Remove it.",
                           errors={where: ["Must not contain NUL or unpaired surrogate characters."]})
        return data

    def _raw_load_json(self, req: Request) -> Any:
        if req.content_length and not is_json_request(req):  # webargs would report every field "missing"
            raise ApiError(415, "unsupported_media_type", "Send the body as JSON, with the header "
                           "'Content-Type: application/json'.")
        return super()._raw_load_json(req)

    def load_multipart(self, req: Request, schema: ma.Schema) -> MultiDictProxy:
        if req.content_length and req.mimetype != "multipart/form-data":
            raise ApiError(415, "unsupported_media_type", "Send a multipart/form-data form with the CSV file as "
                           "the part named 'file' (curl -F file=@teachers.csv).")
        return self._makeproxy(CombinedMultiDict([req.form, req.files]), schema)


class ApiBlueprint(Blueprint):
    """A smorest Blueprint whose every request is authenticated before its arguments are parsed,
    and whose every error answers with the envelope of :mod:`admin.api.errors`."""

    ARGUMENTS_PARSER = ApiParser()
    DEFAULT_LOCATION_CONTENT_TYPE_MAPPING = {
        **Blueprint.DEFAULT_LOCATION_CONTENT_TYPE_MAPPING,
        "multipart": "multipart/form-data",
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.before_request(authenticate)
        register_blueprint_handlers(self)

    def refusals(self, *codes: int) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Document the error answers an operation can give (each with the error envelope)."""

        def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
            for code in codes:
                func = self.alt_response(code, response=http.HTTPStatus(code).name)(func)
            return func

        return decorate
