"""The analyzer of the document pipeline: reads $CORTEX_MNT/inbox, writes reports to $CORTEX_MNT/outbox."""

from __future__ import annotations

import collections
import json
import os
import re
import time
from pathlib import Path

MNT = Path(os.environ["CORTEX_MNT"])
INBOX, OUTBOX = MNT / "inbox", MNT / "outbox"
_STOPWORDS = "a an and are as at be by for from in is it of on or that the this to was were with"
STOPWORDS = frozenset(_STOPWORDS.split())


def analyse(text: str) -> dict[str, object]:
    words = re.findall(r"[a-zA-Z']+", text.lower())
    counts = collections.Counter(w for w in words if w not in STOPWORDS)
    sentences = [s for s in re.split(r"[.!?]+", text) if s.strip()]
    return {
        "words": len(words),
        "sentences": len(sentences),
        "top_words": counts.most_common(5),
        "reading_seconds": round(len(words) / 4, 1),
    }


def main() -> None:
    INBOX.mkdir(parents=True, exist_ok=True)
    OUTBOX.mkdir(parents=True, exist_ok=True)
    while True:
        for document in sorted(INBOX.glob("*.txt")):
            report = analyse(document.read_text(errors="replace"))
            tmp = OUTBOX / f".{document.stem}.tmp"
            tmp.write_text(json.dumps(report))
            tmp.rename(OUTBOX / f"{document.stem}.json")
            document.unlink()
        time.sleep(0.02)


if __name__ == "__main__":
    main()
