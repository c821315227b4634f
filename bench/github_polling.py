#!/usr/bin/env python3
"""GitHub requests per poll cycle and rate-limit points per idle hour, adw vs a naive poller.

Both poll the same 10 repositories (each with a few labelled issues) on the fake GitHub
REST API on loopback, which counts requests and rate-limit points exactly as GitHub does
(a 304 answer to a conditional request costs nothing).  An "idle hour" is 60 cycles at
the default 60 s interval with nothing changing; then one issue is edited to show what a
change costs.  The naive poller is the seed's shape: a plain GET of every repository's
labelled issues each cycle.

    .venv/bin/python bench/github_polling.py [--repos 10] [--issues 5] [--cycles 60]
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
from pathlib import Path

from github import Auth, Github

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adw_modules.config.github import GitHubConfig
from adw_modules.queue.store import Store
from adw_modules.sources.github.client import GitHubClient
from adw_modules.sources.github.source import GitHubSource
from tests.fakes.github_api import FAKE_TOKEN, FakeGitHub


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repos", type=int, default=10)
    ap.add_argument("--issues", type=int, default=5)
    ap.add_argument("--cycles", type=int, default=60)
    args = ap.parse_args()
    repos = [f"acme/repo{i}" for i in range(args.repos)]
    # validator=None: the OpenAPI response check (tests only) needs an npm package; counts do not depend on it.
    with FakeGitHub(validator=None) as fake, tempfile.TemporaryDirectory() as tmp:
        for r in repos:
            fake.add_repo(r)
            fake.set_permission(r, "maintainer", "write")
            for j in range(args.issues):
                n = fake.add_issue(r, f"issue {j}", user="someone")
                fake.label_issue(r, n, "adw", actor="maintainer")
        store = Store.open(f"sqlite:///{Path(tmp) / 'adw.db'}")
        source = GitHubSource(
            GitHubConfig(repositories=tuple(repos)),
            store,
            GitHubClient(fake.base_url, FAKE_TOKEN, pace_s=(0, 0)),
            clock=lambda: dt.datetime.now(dt.UTC),
        )
        naive = Github(
            base_url=fake.base_url,
            auth=Auth.Token(FAKE_TOKEN),
            retry=None,
            lazy=True,
            seconds_between_requests=0,
            seconds_between_writes=0,
        )

        def measure(poll: object) -> tuple[int, int, int, int]:
            fake.clear_log()
            poll()  # type: ignore[operator]
            first_req, first_pts = len(fake.requests), fake.points_used()
            fake.clear_log()
            for _ in range(args.cycles):
                poll()  # type: ignore[operator]
            return first_req, first_pts, len(fake.requests), fake.points_used()

        def naive_poll() -> None:
            for r in repos:
                list(naive.get_repo(r).get_issues(state="open", labels=["adw"]))

        ours = measure(source.poll)
        theirs = measure(naive_poll)
        fake.clear_log()
        fake.add_comment(repos[0], 1, "an edit", user="someone")
        source.poll()
        change = (len(fake.requests), fake.points_used())
        store.close()
    print(f"{args.repos} repositories × {args.issues} labelled issues; idle hour = {args.cycles} cycles")
    print(
        f"{'poller':<10}{'first cycle req/pts':>22}{'idle hour requests':>20}{'idle hour points':>18}"
        f"{'req per idle cycle':>20}"
    )
    for name, (fr, fp, reqs, pts) in (("adw", ours), ("naive", theirs)):
        print(f"{name:<10}{f'{fr} / {fp}':>22}{reqs:>20}{pts:>18}{reqs / args.cycles:>20.1f}")
    print(f"adw after one issue changed: {change[0]} requests, {change[1]} points")
    ratio = "∞" if ours[3] == 0 else f"{theirs[3] / ours[3]:.0f}×"
    print(f"idle-hour points, naive / adw: {theirs[3]} / {ours[3]} ({ratio} fewer)")


if __name__ == "__main__":
    main()
