"""A labelled issue delivered by webhook starts its attempt within a second (polling every 10 min).

The bound is asserted loosely here (the median of 10); the precise figures, against polling,
are ``bench/webhook_latency.py``'s.
"""

from __future__ import annotations

from pathlib import Path

from tests.fakes.github_api import FakeGitHub
from tests.sources.github.service_rig import REPO, SECRET, label_to_attempt_s, median, running_service


def test_a_webhook_labelled_issue_starts_its_attempt_within_a_second(tmp_path: Path) -> None:
    with FakeGitHub() as fake:
        fake.add_repo(REPO)
        fake.set_permission(REPO, "maintainer", "write")
        with running_service(tmp_path, fake, poll_s=600, webhook=True) as service:
            assert service.webhook is not None
            fake.add_hook(REPO, service.webhook.url, SECRET, ["issues"])
            latencies = [label_to_attempt_s(service, fake, webhook=True) for _ in range(10)]
        assert median(latencies) < 1.0, latencies
        # The first poll ran at start (before any issue); none since: the webhook did it all.
        listings = [r for r in fake.requests if r.path == f"/repos/{REPO}/issues" and "labels" in r.query]
        assert len(listings) == 1
        fake.assert_valid()
