"""Errors the library raises; every message is written for the person who has to act on it."""

from __future__ import annotations


class ScholariseError(Exception):
    """Base class: ``str(error)`` is a message a person can act on."""


class ConfigError(ScholariseError):
    """A setting is missing or malformed; the message names the variable."""


class InputError(ScholariseError):
    """An input (file, JSON body, form) cannot be used at all; nothing was stored."""


class NotFoundError(ScholariseError):
    """The thing asked for does not exist (or is not visible to the caller)."""


class InvalidTransitionError(ScholariseError):
    """A task is not in a state that allows the requested change."""


class ProviderError(ScholariseError):
    """Base for identity-provider failures."""


class ProviderRetryableError(ProviderError):
    """A transient failure (429, 409 resource_locked, 5xx, network); try again later.

    Attributes:
        retry_after: seconds the provider asked us to wait, if it said.
        ambiguous: the request may have taken effect (timeout or 5xx after sending),
            so the next attempt must look the user up before creating again.
    """

    def __init__(self, message: str, *, retry_after: float | None = None, ambiguous: bool = False) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.ambiguous = ambiguous


class ProviderFatalError(ProviderError):
    """The provider refuses all work (bad key, quota, plan): stop the task, do not fail every row."""


class ProviderUnavailableError(ProviderError):
    """Transient failures outlasted the retry budget for one batch; the batch goes back to pending."""
