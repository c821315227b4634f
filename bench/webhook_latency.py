"""Label -> attempt start with the webhook vs polling, and GitHub requests per idle hour with webhooks on.

Runs the real ``adw run`` service (``tests/sources/github/service_rig.py``) against the fake
GitHub on loopback, alternately A B A B: A = webhook on (the fake signs and posts the
``issues.labeled`` delivery right after labelling, as GitHub does), B = polling only with
``poll_interval_s`` = ``--poll`` (default 10 s; the wait is uniform over the interval, so the
median scales as interval / 2: at the default 60 s it is ~30 s).  Prints median, p95 and range.

Idle requests: an idle service with webhooks on (safety-net poll every 600 s, sync every 5 s) and
off (poll every 60 s) is simulated for one hour of its schedule by calling the source's ``poll``
and ``sync`` as the scheduler would, and the fake's request log is counted (and the rate-limit
points charged).

    .venv/bin/python bench/webhook_latency.py [--rounds 2] [--per-round 10] [--poll 10]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adw_modules.config.github import GitHubConfig, WebhookConfig
from adw_modules.queue.store import Store
from adw_modules.sources.github.client import GitHubClient
from adw_modules.sources.github.source import GitHubSource
from tests.fakes.github_api import FAKE_TOKEN, FakeGitHub
from tests.sources.github.service_rig import REPO, SECRET, label_to_attempt_s, running_service


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def measure(webhook: bool, per_round: int, poll: float) -> list[float]:
    with tempfile.TemporaryDirectory() as tmp, FakeGitHub() as fake:
        fake.add_repo(REPO)
        fake.set_permission(REPO, "maintainer", "write")
        with running_service(Path(tmp), fake, poll_s=600 if webhook else poll, webhook=webhook) as service:
            if webhook:
                assert service.webhook is not None
                fake.add_hook(REPO, service.webhook.url, SECRET, ["issues"])
            out = []
            for _ in range(per_round):
                if not webhook:  # label at a random point of the poll cycle, as people do
                    time.sleep(random.uniform(0, poll))
                out.append(label_to_attempt_s(service, fake, webhook=webhook, timeout_s=poll * 3 + 30))
            return out


def idle_hour(repos: int, webhook: bool = True) -> tuple[int, int]:
    """(requests, rate-limit points) of one idle hour, ``repos`` repositories, webhooks on or off."""
    with tempfile.TemporaryDirectory() as tmp, FakeGitHub() as fake:
        names = [f"acme/r{i}" for i in range(repos)]
        for name in names:
            fake.add_repo(name)
        hook = WebhookConfig(listen=("127.0.0.1", 0)) if webhook else None
        cfg = GitHubConfig(repositories=tuple(names), webhook=hook)
        poll_s = hook.poll_interval_s if hook is not None else cfg.poll_interval_s
        store = Store.open(f"sqlite:///{tmp}/adw.db")
        source = GitHubSource(cfg, store, GitHubClient(fake.base_url, FAKE_TOKEN, pace_s=(0, 0)))
        source.poll()
        source.sync()  # start-up: the first full read
        fake.clear_log()
        polls, syncs = int(3600 / poll_s), int(3600 / cfg.sync_interval_s)
        for tick in range(syncs):
            source.sync()
            if tick % (syncs // polls) == 0:
                source.poll()
        store.close()
        return len(fake.requests), fake.points_used()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--per-round", type=int, default=10)
    ap.add_argument("--poll", type=float, default=10.0)
    args = ap.parse_args()
    results: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(args.rounds):
        for webhook in (True, False):  # A B A B
            results[webhook] += measure(webhook, args.per_round, args.poll)
    for webhook, name in ((True, "webhook"), (False, f"polling_{args.poll:g}s")):
        v = results[webhook]
        print(
            f"FIGURE label_to_attempt_{name}_s median={statistics.median(v):.3f} p95={p95(v):.3f} "
            f"range={min(v):.3f}-{max(v):.3f} n={len(v)}"
        )
    for repos in (1, 10):
        for webhook in (True, False):
            requests, points = idle_hour(repos, webhook)
            name = "on" if webhook else "off"
            print(f"FIGURE idle_hour_webhooks_{name} repos={repos} requests={requests} points={points}")


if __name__ == "__main__":
    main()
