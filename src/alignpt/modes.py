"""Mode tags: XML-style spans that mark who is speaking in a document.

``<human>…</human>`` marks human voice and ``<ai>…</ai>`` marks AI voice. The mix stage
registers every string in ``MODE_TAGS`` as a special token, so a model can be conditioned
on (or asked to continue in) one voice.
"""

from __future__ import annotations

import re

HUMAN_OPEN, HUMAN_CLOSE = "<human>", "</human>"
AI_OPEN, AI_CLOSE = "<ai>", "</ai>"
MODE_TAGS: list[str] = [HUMAN_OPEN, HUMAN_CLOSE, AI_OPEN, AI_CLOSE]
_TAG = re.compile("|".join(re.escape(tag) for tag in MODE_TAGS))


def human(text: str, enabled: bool) -> str:
    """``text`` marked as human voice when ``enabled``."""
    return f"{HUMAN_OPEN}{text}{HUMAN_CLOSE}" if enabled else text


def ai(text: str, enabled: bool) -> str:
    """``text`` marked as AI voice when ``enabled``."""
    return f"{AI_OPEN}{text}{AI_CLOSE}" if enabled else text


def strip_modes(text: str) -> str:
    """``text`` with every mode tag removed."""
    return _TAG.sub("", text)
