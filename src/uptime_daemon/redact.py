"""The one credential masker: ``scheme://user:password@host`` → ``scheme://user:***@host``, in any text.

Used for a single URL (store URLs in logs, health output, ``config validate``) and for free text that
may quote one (probe details, log fields), so both always mask alike.
"""

from __future__ import annotations

import re
from typing import Final

_URL_CREDENTIALS: Final = re.compile(
    r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]*):[^@/\s]+@", re.IGNORECASE
)


def redact(text: str) -> str:
    """Mask the password of every URL in ``text`` (an empty user name too: ``://:secret@``)."""
    return _URL_CREDENTIALS.sub(r"\g<scheme>\g<user>:***@", text) if "@" in text else text
