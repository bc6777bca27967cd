"""What the driver of a run pays per image: parse a worker's entry (JSON) and append it to the
run journal (one flushed line), for an entry with 8 detections.

    python bench/journal_cost.py [--entries 20000]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time


def main() -> None:
    from singleshot.io.journal import Journal
    from singleshot.runtime.cpu import describe

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", type=int, default=20000)
    args = ap.parse_args()
    entry = {"path": "/data/coco/val2017/000000397133.jpg", "width": 640, "height": 427,
             "detections": [{"box": [1.0, 2.0, 3.0, 4.0], "score": 0.9, "category_id": 1,
                             "category": "person"}] * 8, "error": None,
             "source": {"size": 160000, "mtime": 1700000000000000000}}
    line = json.dumps(entry)
    journal = Journal(tempfile.mkdtemp(), key=lambda e: e["path"])
    t0 = time.perf_counter()
    with journal.appender() as add:
        for k in range(args.entries):
            e = json.loads(line)
            e["path"] = str(k)
            add(e)
    per = (time.perf_counter() - t0) / args.entries
    print(describe())
    print(f"{per * 1e6:.1f} us per image ({len(line)}-byte lines): "
          f"{1 / per:,.0f} images/s on one driver core")


if __name__ == "__main__":
    main()
