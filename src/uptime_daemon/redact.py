"""Remove credentials from free text (URLs with ``user:password@``) before it is logged or stored."""

from __future__ import annotations

import re
from typing import Final

_URL_CREDENTIALS: Final = re.compile(
    r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]+):[^@/\s]+@", re.IGNORECASE
)


def redact(text: str) -> str:
    """``scheme://user:secret@host`` → ``scheme://user:***@host``, anywhere in ``text``."""
    return _URL_CREDENTIALS.sub(r"\g<scheme>\g<user>:***@", text) if "@" in text else text
