"""Uploaded CSV files waiting for confirmation, kept in the instance folder under a random token.

Between "upload and preview" and "confirm" the file lives on the server (not in the session
cookie, which is small and sent with every request). Each upload gets an unguessable token and
remembers who uploaded it, so only that person can preview, confirm or discard it. Uploads not
confirmed within a day are removed the next time anyone uploads.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO

from scholarise.errors import InputError, NotFoundError

MAX_AGE_SECONDS = 24 * 3600
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{32,64}$")


@dataclass
class PendingImport:
    """What was uploaded and chosen, waiting for the person to confirm."""

    token: str
    owner_id: int
    user_type: str
    filename: str
    branch: str | None
    branch_id: int | None
    priority: int
    title: str
    encoding: str | None
    created: float


class UploadStore:
    """Files under ``<folder>/<token>.csv`` with their choices in ``<token>.json``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def save(self, stream: IO[bytes], *, max_bytes: int, **choices: object) -> PendingImport:
        """Copy the upload to disk (refusing more than ``max_bytes``) and remember the choices.

        Raises:
            InputError: the file is empty or too large (nothing is kept).
        """
        self.folder.mkdir(parents=True, exist_ok=True)
        self.purge()
        token = secrets.token_urlsafe(32)
        path = self._csv(token)
        size = 0
        try:
            with path.open("xb") as out:
                path.chmod(0o600)
                while chunk := stream.read(1024 * 1024):
                    size += len(chunk)
                    if size > max_bytes:
                        raise InputError(f"The file is larger than the {max_bytes // (1024 * 1024)} MB limit. "
                                         "Split it into smaller files.")
                    out.write(chunk)
            if size == 0:
                raise InputError("The file is empty. Choose the CSV file again.")
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        pending = PendingImport(token=token, created=time.time(), **choices)  # type: ignore[arg-type]
        self._meta(token).write_text(json.dumps(asdict(pending)))
        return pending

    def load(self, token: str, owner_id: int) -> PendingImport:
        """The pending import, if it exists and belongs to ``owner_id``.

        Raises:
            NotFoundError: unknown, expired, or someone else's token (the same answer on purpose).
        """
        gone = NotFoundError("This upload has expired or was already used. Upload the file again.")
        if not _TOKEN.match(token or ""):
            raise gone
        try:
            pending = PendingImport(**json.loads(self._meta(token).read_text()))
        except (OSError, ValueError, TypeError):
            raise gone from None
        if pending.owner_id != owner_id or time.time() - pending.created > MAX_AGE_SECONDS:
            raise gone
        if not self._csv(token).is_file():
            raise gone
        return pending

    def path(self, pending: PendingImport) -> Path:
        return self._csv(pending.token)

    def discard(self, token: str) -> None:
        if _TOKEN.match(token or ""):
            self._csv(token).unlink(missing_ok=True)
            self._meta(token).unlink(missing_ok=True)

    def purge(self, max_age: float = MAX_AGE_SECONDS) -> int:
        """Remove uploads older than ``max_age`` seconds; returns how many files went."""
        if not self.folder.is_dir():
            return 0
        cutoff = time.time() - max_age
        removed = 0
        for path in self.folder.iterdir():
            if path.suffix in (".csv", ".json") and path.stat().st_mtime < cutoff:
                path.unlink(missing_ok=True)
                removed += 1
        return removed

    def _csv(self, token: str) -> Path:
        return self.folder / f"{token}.csv"

    def _meta(self, token: str) -> Path:
        return self.folder / f"{token}.json"
