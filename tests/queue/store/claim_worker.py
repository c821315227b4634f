"""A second process for the concurrent-claim test: claim until nothing is left, print the ids.

Usage: python -m tests.queue.store.claim_worker URL OWNER.  Prints "ready" once the store is
open, waits for a line on stdin (so it starts together with the test's threads), then
prints the claimed task ids as one JSON list.
"""

from __future__ import annotations

import datetime as dt
import json
import sys

from adw_modules.queue.store import Store

NOW = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)


def main() -> None:
    url, owner = sys.argv[1], sys.argv[2]
    store = Store.open(url)
    print("ready", flush=True)
    sys.stdin.readline()
    ids = []
    while (task := store.claim_task(owner, NOW + dt.timedelta(minutes=5), NOW)) is not None:
        ids.append(task.id)
    store.close()
    print(json.dumps(ids), flush=True)


if __name__ == "__main__":
    main()
