"""Marshmallow schemas that validate one person to import: a CSV row or a JSON API item.

One schema per user type, so a row is judged by exactly the rules its records will be stored
under (lengths match the columns in :mod:`scholarise.models.people`). Every error message is a
full sentence that names the field in words, because it ends up in front of the administrator
who has to fix the file, not in front of a developer.

Conventions shared by all callers:

* Keys are the canonical field names (``first_name``, ``class_name`` ...). Spreadsheet headers
  are mapped to them with :func:`canonical_field`; unknown keys are ignored.
* Strings are trimmed; an empty string or ``None`` means "not given".
* The clean output is JSON-safe: dates become ISO ``YYYY-MM-DD`` strings, missing optional
  values are left out, the email is trimmed and lower-cased.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, fields, pre_load
from marshmallow import validate as mm_validate

from scholarise.errors import InputError

USER_TYPES: tuple[str, ...] = ("teacher", "employee", "student")

#: How each field is named in messages meant for people.
FIELD_LABELS: dict[str, str] = {
    "first_name": "first name",
    "last_name": "last name",
    "email": "email",
    "phone": "phone",
    "subject": "subject",
    "employee_code": "employee code",
    "date_of_joining": "date of joining",
    "designation": "designation",
    "department": "department",
    "admission_number": "admission number",
    "class_name": "class",
    "section": "section",
    "date_of_birth": "date of birth",
    "guardian_name": "guardian name",
    "guardian_phone": "guardian phone",
}

# Header spellings seen in school exports, compared after _header_key() (case, spaces and
# punctuation removed), so "First Name", "first_name" and "firstName" are one entry.
_ALIASES: dict[str, tuple[str, ...]] = {
    "first_name": ("firstname", "givenname", "forename", "first", "fname"),
    "last_name": ("lastname", "surname", "familyname", "last", "lname"),
    "email": ("email", "emailaddress", "emailid", "mail", "mailaddress"),
    "phone": ("phone", "phonenumber", "phoneno", "mobile", "mobilenumber", "mobileno", "telephone",
              "contactnumber", "contactno", "cell", "cellphone"),
    "subject": ("subject", "subjects", "subjecttaught"),
    "employee_code": ("employeecode", "empcode", "employeeid", "empid", "employeeno", "employeenumber",
                      "staffid", "staffcode", "staffnumber"),
    "date_of_joining": ("dateofjoining", "joiningdate", "datejoined", "joindate", "doj", "joinedon"),
    "designation": ("designation", "jobtitle", "position"),
    "department": ("department", "dept"),
    "admission_number": ("admissionnumber", "admissionno", "admno", "admissionid", "admission"),
    "class_name": ("classname", "class", "grade", "standard", "std"),
    "section": ("section", "division", "div"),
    "date_of_birth": ("dateofbirth", "dob", "birthdate", "birthday"),
    "guardian_name": ("guardianname", "guardian", "parentname", "parent", "parentguardianname"),
    "guardian_phone": ("guardianphone", "guardianphonenumber", "guardianmobile", "guardiancontact",
                       "parentphone", "parentphonenumber", "parentmobile", "parentcontact"),
}
_BY_HEADER_KEY: dict[str, str] = {alias: name for name, aliases in _ALIASES.items() for alias in aliases}

_DATE_HINT = "use YYYY-MM-DD or DD/MM/YYYY"
_ISO_DATE = re.compile(r"(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})")
_DMY_DATE = re.compile(r"(\d{1,2})[-/.](\d{1,2})[-/.](\d{4})")


def _header_key(header: str) -> str:
    return re.sub(r"[\W_]+", "", header.casefold())


def canonical_field(header: str) -> str | None:
    """Map a column header or JSON key as people write it to a canonical field name.

    Matching ignores case, spaces, underscores, hyphens and punctuation and knows common
    aliases ("Surname", "E-mail", "DOB", "Admission No."), because schools export from many
    different systems and should not have to rename columns by hand.

    Args:
        header: the header text as written in the file.

    Returns:
        The canonical field name, or ``None`` when the header means nothing to us.
    """
    return _BY_HEADER_KEY.get(_header_key(header))


def _label(name: str) -> str:
    return FIELD_LABELS.get(name, name.replace("_", " "))


class Text(fields.String):
    """Trimmed text that also takes whole numbers (spreadsheets and JSON turn codes like 10 into numbers)."""

    def _deserialize(self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        elif isinstance(value, float) and value.is_integer():
            value = str(int(value))
        text = super()._deserialize(value, attr, data, **kwargs).strip()
        if "\x00" in text or not _encodable(text):
            label = FIELD_LABELS.get(attr or "", attr or "a value")
            raise ValidationError(f"{label}: contains a character that cannot be stored (a NUL byte or a broken "
                                  "character); save the file again as CSV UTF-8")
        return text


def _encodable(text: str) -> bool:
    """False for lone surrogates (a broken UTF-16 pair), which no database can store."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class EmailAddress(Text):
    """An email address: trimmed, checked, then lower-cased, so duplicates compare equal."""

    def _deserialize(self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any) -> Any:
        text = super()._deserialize(value, attr, data, **kwargs)
        if len(text) > 254 or "," in text or ";" in text:
            raise ValidationError(f"email: {text!r} is not a valid email address")
        try:
            mm_validate.Email()(text)
        except ValidationError:
            raise ValidationError(f"email: {text!r} is not a valid email address") from None
        return text.lower()


class FlexibleDate(fields.Field):
    """A calendar date written ISO-style (2021-02-28) or day first (28/02/2021, 28-02-2021, 28.02.2021).

    Day-first is what schools outside the US type and what their spreadsheets export; ISO is what
    programs send. The output is an ISO string so it can be stored as JSON unchanged.
    """

    def __init__(self, *, not_in_future: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.not_in_future = not_in_future

    def _deserialize(self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any) -> str:
        label = _label(self.name or attr or "date")
        parsed = _parse_date(value)
        if parsed is None:
            raise ValidationError(f"{label}: {value!r} is not a valid date ({_DATE_HINT})")
        if not 1900 <= parsed.year <= 2100:
            raise ValidationError(f"{label}: {value!r} is not a plausible date (the year must be 1900-2100)")
        if self.not_in_future and parsed > date.today():
            raise ValidationError(f"{label}: {value!r} is in the future")
        return parsed.isoformat()

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> Any:
        return value.isoformat() if isinstance(value, date) else value


def _parse_date(value: Any) -> date | None:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if not isinstance(value, str):
        return None
    text = value.strip()
    if match := _ISO_DATE.fullmatch(text):
        year, month, day = (int(part) for part in match.groups())
    elif match := _DMY_DATE.fullmatch(text):
        day, month, year = (int(part) for part in match.groups())
    else:
        return None
    try:
        return date(year, month, day)
    except ValueError:
        return None


class _MaxLength(mm_validate.Validator):
    """Length check whose message names the field and says by how much it is over."""

    def __init__(self, label: str, limit: int) -> None:
        self.label = label
        self.limit = limit

    def __call__(self, value: str) -> str:
        if len(value) > self.limit:
            raise ValidationError(f"{self.label} is too long ({len(value)} characters; the limit is {self.limit})")
        return value


def _messages(name: str) -> dict[str, str]:
    label = _label(name)
    return {
        "required": f"{label} is required",
        "null": f"{label} is required",
        "invalid": f"{label}: must be text",
    }


def _text(name: str, limit: int, *, required: bool = False) -> Text:
    return Text(required=required, validate=_MaxLength(_label(name), limit), error_messages=_messages(name))


def _date(name: str, **kwargs: Any) -> FlexibleDate:
    return FlexibleDate(error_messages=_messages(name), **kwargs)


class PersonRowSchema(Schema):
    """Fields every imported person has; the email is the identity shared with the provider."""

    class Meta:
        unknown = EXCLUDE  # a CSV may carry columns we do not store (roll number, notes ...)

    first_name = _text("first_name", 100, required=True)
    last_name = _text("last_name", 100)
    email = EmailAddress(required=True, error_messages=_messages("email"))
    phone = _text("phone", 40)

    @pre_load
    def _drop_blanks(self, data: Any, **kwargs: Any) -> Any:
        """Treat empty cells and ``null`` as "not given", so they hit ``required`` instead of a format check."""
        if not isinstance(data, Mapping):
            return data
        return {
            key: value
            for key, value in data.items()
            if value is not None and not (isinstance(value, str) and not value.strip())
        }


class TeacherRowSchema(PersonRowSchema):
    subject = _text("subject", 100)
    employee_code = _text("employee_code", 40)
    date_of_joining = _date("date_of_joining")


class EmployeeRowSchema(PersonRowSchema):
    designation = _text("designation", 100)
    department = _text("department", 100)
    employee_code = _text("employee_code", 40)


class StudentRowSchema(PersonRowSchema):
    admission_number = _text("admission_number", 40)
    class_name = _text("class_name", 20)
    section = _text("section", 20)
    date_of_birth = _date("date_of_birth", not_in_future=True)
    guardian_name = _text("guardian_name", 200)
    guardian_phone = _text("guardian_phone", 40)


ROW_SCHEMAS: dict[str, type[PersonRowSchema]] = {
    "teacher": TeacherRowSchema,
    "employee": EmployeeRowSchema,
    "student": StudentRowSchema,
}

_SCHEMA_INSTANCES: dict[str, PersonRowSchema] = {}


def _schema(user_type: str) -> PersonRowSchema:
    # Schema instances are stateless once built; building one per row would dominate a 100k-row import.
    if user_type not in ROW_SCHEMAS:
        raise InputError(f"Unknown user type {user_type!r}; use one of: {', '.join(USER_TYPES)}.")
    if user_type not in _SCHEMA_INSTANCES:
        _SCHEMA_INSTANCES[user_type] = ROW_SCHEMAS[user_type]()
    return _SCHEMA_INSTANCES[user_type]


def field_names(user_type: str) -> tuple[str, ...]:
    """The canonical fields of a user type in template order (useful for a downloadable CSV template)."""
    return tuple(_schema(user_type).fields)


def required_fields(user_type: str) -> tuple[str, ...]:
    """The fields a row of this user type cannot do without."""
    return tuple(name for name, field in _schema(user_type).fields.items() if field.required)


def match_columns(user_type: str, headers: Sequence[str]) -> dict[str, int]:
    """Find which column holds which field, or explain in words why the header cannot be used.

    Args:
        user_type: the user type the file is for; columns of other types are ignored.
        headers: the header cells as written.

    Returns:
        Canonical field name -> position in ``headers``, for every recognised column.

    Raises:
        InputError: a required column is missing, or two columns mean the same field.
    """
    wanted = field_names(user_type)
    positions: dict[str, int] = {}
    for position, header in enumerate(headers):
        name = canonical_field(header)
        if name not in wanted:
            continue
        if name in positions:
            raise InputError(
                f"The columns {headers[positions[name]].strip()!r} and {header.strip()!r} both mean "
                f"{_label(name)}; keep only one of them."
            )
        positions[name] = position
    missing = [name for name in required_fields(user_type) if name not in positions]
    if missing:
        raise InputError(_missing_columns_message(user_type, missing, headers))
    return positions


def _missing_columns_message(user_type: str, missing: list[str], headers: Sequence[str]) -> str:
    words = " and ".join(_label(name) for name in missing)
    plural = len(missing) > 1
    found = ", ".join(repr(header.strip()) for header in headers if header.strip()) or "none"
    message = (
        f"The file has no {words} column{'s' if plural else ''}, which {'are' if plural else 'is'} "
        f"required for {user_type}s. Columns found: {found}."
    )
    if any("@" in header for header in headers):
        message += " The first line looks like data: the file needs a header row."
    elif {_header_key(header) for header in headers} & {"name", "fullname", f"{user_type}name"}:
        message += " A single name column is not split: use separate first name and last name columns."
    return message + f" Expected columns: {', '.join(field_names(user_type))}."


def validate_row(user_type: str, raw: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Validate one person and say, in words, everything that is wrong with it at once.

    All problems are reported together so an administrator fixes a row in one go instead of
    re-uploading once per mistake.

    Args:
        user_type: ``"teacher"``, ``"employee"`` or ``"student"``.
        raw: canonical-keyed values (strings from a CSV, or JSON values); unknown keys are ignored.

    Returns:
        ``(clean_data, errors)``. When ``errors`` is empty, ``clean_data`` holds the canonical,
        JSON-safe values; otherwise ``clean_data`` is empty.

    Raises:
        InputError: the user type is unknown.
    """
    schema = _schema(user_type)
    if not isinstance(raw, Mapping):
        return {}, [f"each person must be an object with named fields (got {type(raw).__name__})"]
    try:
        return schema.load(raw), []
    except ValidationError as exc:
        return {}, _flatten(exc.normalized_messages(), list(schema.fields))


def _flatten(messages: Any, order: list[str]) -> list[str]:
    if not isinstance(messages, Mapping):
        return [str(messages)]
    rank = {name: index for index, name in enumerate(order)}
    result: list[str] = []
    for key in sorted(messages, key=lambda k: rank.get(k, len(rank))):
        value = messages[key]
        items = value if isinstance(value, list) else [value]
        result.extend(str(item) for item in items)
    return result
