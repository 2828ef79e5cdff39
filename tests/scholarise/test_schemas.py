"""Row schemas: what a valid person looks like, and how problems are worded for administrators."""

from __future__ import annotations

import json
from datetime import date

import pytest

from scholarise.errors import InputError
from scholarise.schemas import (
    ROW_SCHEMAS,
    USER_TYPES,
    EmployeeRowSchema,
    StudentRowSchema,
    TeacherRowSchema,
    canonical_field,
    field_names,
    match_columns,
    required_fields,
    validate_row,
)

TEACHER = {
    "first_name": "José",
    "last_name": "Chen",
    "email": "jose.chen1@example.org",
    "phone": "+1-555-662-4741",
    "subject": "Mathematics",
    "employee_code": "T10001",
    "date_of_joining": "2017-09-18",
}


def test_registry_covers_every_user_type() -> None:
    assert USER_TYPES == ("teacher", "employee", "student")
    assert ROW_SCHEMAS == {"teacher": TeacherRowSchema, "employee": EmployeeRowSchema, "student": StudentRowSchema}
    assert all(required_fields(user_type) == ("first_name", "email") for user_type in USER_TYPES)


def test_valid_teacher_comes_back_canonical_and_json_safe() -> None:
    clean, errors = validate_row("teacher", {**TEACHER, "email": "  Jose.Chen1@Example.ORG ", "notes": "ignored"})
    assert errors == []
    assert clean == {**TEACHER, "email": "jose.chen1@example.org"}
    json.dumps(clean)  # dates are strings, nothing exotic


def test_empty_optionals_are_left_out() -> None:
    clean, errors = validate_row(
        "teacher", {"first_name": " Ann ", "email": "ann@example.org", "last_name": "", "phone": "  ", "subject": None}
    )
    assert errors == []
    assert clean == {"first_name": "Ann", "email": "ann@example.org"}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2021-02-28", "2021-02-28"),
        ("28/02/2021", "2021-02-28"),
        ("28-02-2021", "2021-02-28"),
        ("28.02.2021", "2021-02-28"),
        ("1/2/2021", "2021-02-01"),
        ("2021/2/1", "2021-02-01"),
        (date(2021, 2, 28), "2021-02-28"),
    ],
)
def test_dates_accept_iso_and_day_first(raw: object, expected: str) -> None:
    clean, errors = validate_row("teacher", {**TEACHER, "date_of_joining": raw})
    assert errors == []
    assert clean["date_of_joining"] == expected


@pytest.mark.parametrize("raw", ["31/02/2021", "2021-13-01", "02/30/2021", "yesterday", "12/25/20", "1899-12-31"])
def test_impossible_dates_are_rejected_with_a_hint(raw: str) -> None:
    clean, errors = validate_row("teacher", {**TEACHER, "date_of_joining": raw})
    assert clean == {}
    assert len(errors) == 1
    assert errors[0].startswith(f"date of joining: {raw!r} is not a")


def test_the_date_message_says_which_formats_work() -> None:
    _, errors = validate_row("teacher", {**TEACHER, "date_of_joining": "31/02/2021"})
    assert errors == ["date of joining: '31/02/2021' is not a valid date (use YYYY-MM-DD or DD/MM/YYYY)"]


def test_every_problem_is_reported_at_once_in_field_order() -> None:
    _, errors = validate_row(
        "teacher", {"first_name": "", "email": "not-an-email", "date_of_joining": "31/02/2021", "phone": "9" * 41}
    )
    assert errors == [
        "first name is required",
        "email: 'not-an-email' is not a valid email address",
        "phone is too long (41 characters; the limit is 40)",
        "date of joining: '31/02/2021' is not a valid date (use YYYY-MM-DD or DD/MM/YYYY)",
    ]


@pytest.mark.parametrize("email", ["not-an-email", "a@b", "two@example.org,three@example.org", "a b@example.org"])
def test_bad_emails_are_named(email: str) -> None:
    _, errors = validate_row("employee", {"first_name": "Ann", "email": email})
    assert errors == [f"email: {email!r} is not a valid email address"]


def test_missing_and_null_required_fields() -> None:
    assert validate_row("student", {})[1] == ["first name is required", "email is required"]
    assert validate_row("student", {"first_name": None, "email": "   "})[1] == [
        "first name is required",
        "email is required",
    ]


def test_lengths_follow_the_database_columns() -> None:
    _, errors = validate_row("student", {"first_name": "x" * 101, "email": "a@example.org", "class_name": "y" * 21})
    assert errors == [
        "first name is too long (101 characters; the limit is 100)",
        "class is too long (21 characters; the limit is 20)",
    ]
    clean, errors = validate_row("student", {"first_name": "x" * 100, "email": "a@example.org"})
    assert errors == [] and len(clean["first_name"]) == 100


def test_numbers_from_json_become_text() -> None:
    clean, errors = validate_row(
        "student", {"first_name": "Ann", "email": "a@example.org", "class_name": 10, "admission_number": 3001.0}
    )
    assert errors == []
    assert clean["class_name"] == "10" and clean["admission_number"] == "3001"
    _, errors = validate_row("student", {"first_name": ["Ann"], "email": "a@example.org"})
    assert errors == ["first name: must be text"]


def test_student_fields() -> None:
    raw = {
        "first_name": "Ngozi",
        "email": "ngozi@students.example.org",
        "admission_number": "ADM1",
        "class_name": "10",
        "section": "D",
        "date_of_birth": "03/10/2010",
        "guardian_name": "Amara Mbeki",
        "guardian_phone": "+1-555-233-6061",
    }
    clean, errors = validate_row("student", raw)
    assert errors == []
    assert clean == {**raw, "date_of_birth": "2010-10-03"}
    _, errors = validate_row("student", {**raw, "date_of_birth": "2099-01-01"})
    assert errors == ["date of birth: '2099-01-01' is in the future"]


def test_employee_fields() -> None:
    raw = {"first_name": "Zoë", "email": "zoe@example.org", "designation": "Accountant", "department": "IT",
           "employee_code": "E1"}
    assert validate_row("employee", raw) == (raw, [])
    assert "date_of_joining" not in field_names("employee")


def test_non_object_items_and_unknown_types() -> None:
    assert validate_row("teacher", ["Ann", "ann@example.org"]) == (  # type: ignore[arg-type]
        {},
        ["each person must be an object with named fields (got list)"],
    )
    with pytest.raises(InputError, match="Unknown user type 'parent'; use one of: teacher, employee, student"):
        validate_row("parent", {})


@pytest.mark.parametrize(
    ("header", "field"),
    [
        ("First Name", "first_name"), ("first_name", "first_name"), ("firstName", "first_name"),
        ("Given Name", "first_name"), ("Surname", "last_name"), ("Last Name", "last_name"),
        ("Family name", "last_name"), ("E-mail", "email"), ("Email Address", "email"), ("Mobile", "phone"),
        ("Phone Number", "phone"), ("Class", "class_name"), ("Grade", "class_name"), ("DOB", "date_of_birth"),
        ("Birth Date", "date_of_birth"), ("Joining Date", "date_of_joining"), ("Date Joined", "date_of_joining"),
        ("Emp Code", "employee_code"), ("Employee ID", "employee_code"), ("Admission No.", "admission_number"),
        (" GUARDIAN-PHONE ", "guardian_phone"), ("Notes", None),
    ],
)
def test_header_aliases(header: str, field: str | None) -> None:
    assert canonical_field(header) == field


def test_match_columns_ignores_other_types_columns_and_explains_gaps() -> None:
    assert match_columns("teacher", ["Email", "Class", "First Name"]) == {"email": 0, "first_name": 2}
    with pytest.raises(InputError) as excinfo:
        match_columns("student", ["Full Name", "Class"])
    message = str(excinfo.value)
    assert message.startswith("The file has no first name and email columns, which are required for students.")
    assert "Columns found: 'Full Name', 'Class'." in message
    assert "separate first name and last name columns" in message
    with pytest.raises(InputError, match="The columns 'Email' and 'E-mail' both mean email"):
        match_columns("teacher", ["First Name", "Email", "E-mail"])


def test_characters_no_database_can_store_are_refused_with_the_field_named():
    from scholarise.schemas import validate_row

    for bad in ("Ada\x00", "Ada\ud800"):
        data, errors = validate_row("teacher", {"first_name": bad, "email": "ada@example.org"})
        assert data == {} and errors and errors[0].startswith("first name: contains a character that cannot be stored")
