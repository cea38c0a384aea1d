"""Papers read in one ingest, kept in a SQLite file instead of memory.

Reading merges duplicates across files (same id, same abstract = one paper) and ingest
then compares every paper with the catalogue; with the whole corpus held as Python
objects that cost ~20 KB per paper (2.1 GB at 100k). Here each paper is one row looked
up by its id (an indexed lookup), so the reading process holds only the current file's
piece, whatever the corpus size. Insertion order is kept (as a dict's would be): ingest
writes papers in the order they were read.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from ..records import Paper
from ..scratch import OWNER, owner, sweep

_STAGED = re.compile(r"ingest-staged-" + OWNER + r"-.*\.sqlite")


class StagedPapers:
    """A ``paper_id -> Paper`` map on disk (get, set, contains, len) with batched iteration."""

    def __init__(self, directory: Path | None = None) -> None:
        """``directory``: where the temporary file goes (the system's temporary folder if None).
        The file is removed on ``close``."""
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)
            # A killed ingest's file stays (about 3 KB a paper): removed by the next ingest here.
            sweep(directory, _STAGED)
        fd, name = tempfile.mkstemp(prefix=f"ingest-staged-{owner()}-", suffix=".sqlite",
                                    dir=str(directory) if directory is not None else None)
        os.close(fd)
        self.path = Path(name)
        self.db = sqlite3.connect(name, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=OFF")
        self.db.execute("PRAGMA synchronous=OFF")
        self.db.execute("PRAGMA cache_size=-16000")  # 16 MB page cache, whatever the corpus
        self.db.execute("CREATE TABLE staged (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
                        "paper_id TEXT NOT NULL UNIQUE, data TEXT NOT NULL)")
        self._pending = 0

    def get(self, paper_id: str) -> Paper | None:
        row = self.db.execute("SELECT data FROM staged WHERE paper_id=?", (paper_id,)).fetchone()
        return Paper.from_dict(json.loads(row[0])) if row else None

    def __contains__(self, paper_id: object) -> bool:
        return self.db.execute("SELECT 1 FROM staged WHERE paper_id=?", (paper_id,)).fetchone() is not None

    def __setitem__(self, paper_id: str, paper: Paper) -> None:
        # An upsert keeps the first position of an id, as a dict does.
        self.db.execute("INSERT INTO staged (paper_id, data) VALUES (?, ?) "
                        "ON CONFLICT(paper_id) DO UPDATE SET data=excluded.data",
                        (paper_id, json.dumps(paper.to_dict(), ensure_ascii=False)))
        self._pending += 1
        if self._pending >= 5000:
            self.db.commit()
            self._pending = 0

    def __len__(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM staged").fetchone()[0])

    def batches(self, size: int) -> Iterator[list[Paper]]:
        """All papers in the order first read, ``size`` at a time (one query per batch)."""
        self.db.commit()
        last = 0
        while True:
            rows = self.db.execute("SELECT seq, data FROM staged WHERE seq > ? ORDER BY seq LIMIT ?",
                                   (last, size)).fetchall()
            if not rows:
                return
            last = rows[-1][0]
            yield [Paper.from_dict(json.loads(data)) for _, data in rows]

    def known(self, paper_ids: Sequence[str]) -> set[str]:
        """Which of ``paper_ids`` were read in this run (``--prune`` keeps those)."""
        found: set[str] = set()
        for start in range(0, len(paper_ids), 500):
            part = list(paper_ids[start:start + 500])
            q = "SELECT paper_id FROM staged WHERE paper_id IN ({})".format(",".join("?" * len(part)))
            found.update(r[0] for r in self.db.execute(q, part))
        return found

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self.db.close()
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> StagedPapers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
