"""Issue 16: what became of a task's pull request (merged, closed unmerged, open) is read where
the sync already watches it, stored in the task's source state, and counted by learned routing
with ``[learning] success = "merged"`` (real coordinator, real git remote, the fake GitHub)."""

from __future__ import annotations

from pathlib import Path

from adw_modules.ops.stats import learning_facts, outcome_stats
from tests.fakes.github_api import FakeGitHub
from tests.workspace.pr_flow.test_pull_requests import REPO, Rig, fake, provider, remote  # noqa: F401


def test_pull_request_fates_are_recorded_and_count_as_success_when_merged(
    tmp_path: Path,
    fake: FakeGitHub,  # noqa: F811
    remote: Path,  # noqa: F811
) -> None:
    rig = Rig(tmp_path, fake, remote, provider("a") + provider("b"), extra='[learning]\nsuccess = "merged"')
    merged, closed = rig.issue("Add a feature"), rig.issue("Rename a thing")
    rig.run()
    assert rig.source.poll()  # the sync's first look at the pull requests: both open
    states = {n: rig.store.source_state(rig.task(n).id) for n in (merged, closed)}
    assert {s["pr_fate"] for s in states.values()} == {"open"}

    fake.clear_log()
    assert rig.source.poll()
    reads = [r for r in fake.requests if "/pulls/" in r.path and r.method == "GET"]
    assert reads and all(r.status == 304 and r.points == 0 for r in reads)  # watching costs nothing

    fake.merge_pull(REPO, int(states[merged]["pr_number"]), actor="maintainer")
    fake.close_issue(REPO, int(states[closed]["pr_number"]), actor="maintainer")
    assert rig.source.poll()
    assert rig.store.source_state(rig.task(merged).id)["pr_fate"] == "merged"
    assert rig.store.source_state(rig.task(closed).id)["pr_fate"] == "closed"
    events = [e["message"] for e in rig.store.events(task_id=rig.task(merged).id) if e["kind"] == "github.pr"]
    assert any("merged" in m for m in events), events

    fake.clear_log()
    assert rig.source.poll()  # decided fates are not read again
    assert [r for r in fake.requests if "/pulls/" in r.path and r.method == "GET" and "/comments" not in r.path] == []

    facts = rig.store.attempt_facts(rig.task(merged).created_at)
    by_task = {f.task_id: f.pr_fate for f in facts}
    assert by_task == {rig.task(merged).id: "merged", rig.task(closed).id: "closed"}
    counted = learning_facts(facts, rig.config)
    assert sorted(f.ok for f in counted) == [False, True]  # merged: success; closed unmerged: failure
    (group,) = outcome_stats(rig.store, by="rule", days=1, now=rig.task(merged).updated_at, mode="merged")
    assert (group.attempts, group.counted, group.successes) == (2, 2, 1)
    rig.coord.shutdown()
