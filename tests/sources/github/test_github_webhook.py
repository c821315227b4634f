"""Webhook deliveries: verified before parsing, acted on once, and the triggers and reactions they bring.

The fake GitHub signs and posts deliveries exactly as GitHub does (``FakeGitHub.deliver``), to
adw's real receiver (``WebhookReceiver``) wired to a real GitHub source, store and coordinator.
"""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from adw_modules.queue.tasks import TaskState
from adw_modules.sources.github.webhook import ACTIONS, MAX_BODY, WebhookReceiver, signature
from tests.fakes.github_api import FakeGitHub
from tests.sources.github.conftest import REPO, Rig, wait_for

SECRET = "whsec-test-0123456789abcdef"


class Hooked:
    """A rig whose source is fed by a webhook receiver on a loopback port."""

    def __init__(self, rig: Rig) -> None:
        self.rig = rig
        self.handled = threading.Semaphore(0)

        def on_event(event: str, payload: dict[str, object]) -> None:
            rig.source.handle_event(event, payload)
            rig.coord.dispatch()
            self.handled.release()

        self.receiver = WebhookReceiver(
            ("127.0.0.1", 0),
            "/github/webhook",
            lambda: SECRET,
            lambda delivery, event: rig.store.record_delivery(delivery, event, rig.source.clock()),
            on_event,
        ).start()
        rig.fake.add_hook(REPO, self.receiver.url, SECRET, list(ACTIONS))

    def deliver(self, event: str, payload: dict[str, object], **kw: str) -> int:
        [status] = self.rig.fake.deliver(REPO, event, payload, **kw)
        if status == 202:
            assert self.handled.acquire(timeout=30), "the delivery was not acted on"
        return status

    def post(self, body: bytes, headers: dict[str, str]) -> int:
        host, port = self.receiver.address
        conn = http.client.HTTPConnection(host, port, timeout=10)
        try:
            conn.request("POST", "/github/webhook", body=body, headers=headers)
            return conn.getresponse().status
        except (BrokenPipeError, ConnectionResetError):
            return -1
        finally:
            conn.close()


@pytest.fixture
def hooked(rig_factory: Callable[..., Rig], request: pytest.FixtureRequest) -> Iterator[Hooked]:
    gated = getattr(request, "param", "")  # runs that wait for the test's gate, e.g. "1"
    h = Hooked(rig_factory(gated=gated, github="read_spacing_s = 0\nwrite_spacing_s = 0\n"))
    yield h
    h.receiver.stop()


def _labelled(fake: FakeGitHub) -> tuple[int, dict[str, object]]:
    n = fake.add_issue(REPO, "Fix the login", user="someone", body="please fix")
    fake.label_issue(REPO, n, "adw", actor="maintainer")
    return n, fake.issues_payload(REPO, n, "labeled", "maintainer", label="adw")


def test_a_labelled_issue_delivered_by_webhook_is_queued_with_eyes(hooked: Hooked) -> None:
    fake = hooked.rig.fake
    n, payload = _labelled(fake)
    assert hooked.deliver("issues", payload) == 202
    task = hooked.rig.task(n)
    assert hooked.rig.store.source_state(task.id)["trigger_kind"] == "label"
    assert ("adw-bot", "eyes") in fake.reactions(REPO, f"issues/{n}")
    assert fake.repo(REPO).hooks[0].last_response["code"] == 202
    fake.assert_valid()  # the payload matched webhook-issues-labeled, every answer its operation


def test_forged_missing_replayed_and_oversized_deliveries_change_nothing(hooked: Hooked) -> None:
    rig, fake = hooked.rig, hooked.rig.fake
    n, payload = _labelled(fake)
    body = json.dumps(payload).encode()
    base = {"Content-Type": "application/json", "X-GitHub-Event": "issues", "X-GitHub-Delivery": "d-1"}
    forged = {**base, "X-Hub-Signature-256": signature(b"not-the-secret", body)}
    assert hooked.post(body, forged) == 401
    assert hooked.post(body, base) == 401  # no signature at all
    tampered = {**base, "X-Hub-Signature-256": signature(SECRET.encode(), body)}
    assert hooked.post(body.replace(b"Fix the login", b"Fix the logout"), tampered) == 401
    huge = {**base, "Content-Length": str(MAX_BODY + 1), "X-Hub-Signature-256": "sha256=00"}
    assert hooked.post(b"x" * 1024, huge) in (413, -1)  # answered before the body is read
    assert hooked.receiver.counts.get(413) == 1
    assert rig.store.find_task("github", f"{REPO}#{n}") is None
    assert rig.store.deliveries() == []  # nothing recorded for any of them
    # A genuine delivery, then the same one again (GitHub's "Redeliver", or a captured replay).
    assert hooked.deliver("issues", payload, delivery="d-2") == 202
    task = rig.task(n)
    requests = len(fake.requests)
    assert hooked.deliver("issues", payload, delivery="d-2") == 200
    assert [d["delivery_id"] for d in rig.store.deliveries()] == ["d-2"]
    assert len(fake.requests) == requests, "a replay made GitHub requests"
    triggers = [e for e in rig.store.events(task_id=task.id) if e["kind"] == "github.trigger"]
    assert len(triggers) == 1  # acted on once


def test_a_ping_is_answered_and_not_recorded(hooked: Hooked) -> None:
    fake = hooked.rig.fake
    ping = {"zen": "Keep it logically awesome.", "hook_id": fake.repo(REPO).hooks[0].id}
    body = json.dumps(ping).encode()
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": "ping",
        "X-GitHub-Delivery": "p-1",
        "X-Hub-Signature-256": signature(SECRET.encode(), body),
    }
    assert hooked.post(body, headers) == 200
    assert hooked.rig.store.deliveries() == []


def test_a_strangers_mention_is_refused_once(hooked: Hooked) -> None:
    rig, fake = hooked.rig, hooked.rig.fake
    n = fake.add_issue(REPO, "Footer", user="someone", body="the footer is off")
    cid = fake.add_comment(REPO, n, "@adw-bot please also fix the footer", user="stranger")
    payload = fake.comment_payload(REPO, cid)
    assert hooked.deliver("issue_comment", payload) == 202
    assert hooked.deliver("issue_comment", payload) == 202  # GitHub sent it twice (two deliveries)
    refusals = [c for c in fake.comments(REPO, n) if "adw:refused" in c.body]
    assert len(refusals) == 1 and "@stranger has none permission" in refusals[0].body
    assert fake.reactions(REPO, f"issues/comments/{cid}") == [("adw-bot", "confused")]
    assert rig.store.find_task("github", f"{REPO}#{n}") is None


def test_bots_quotes_and_edits_do_not_trigger(hooked: Hooked) -> None:
    """Another bot's mention is refused without an answer (two bots answering each other would
    never stop), even with admin; our own comment mentioning us is ignored; a writer quoting a
    stranger's request, or showing the mention in code, does not trigger; an edited comment
    (``issue_comment.edited``) is not acted on."""
    rig, fake = hooked.rig, hooked.rig.fake
    fake.add_user("other-bot[bot]", type="Bot")
    fake.set_permission(REPO, "other-bot[bot]", "admin")
    n = fake.add_issue(REPO, "Footer", user="someone", body="the footer is off")
    bodies = [
        ("other-bot[bot]", "@adw-bot please fix the footer"),
        ("adw-bot", "@adw-bot noted"),
        ("maintainer", "> @adw-bot delete everything\n\nNo."),
        ("maintainer", "Write `@adw-bot fix it` to ask the bot."),
    ]
    for user, body in bodies:
        cid = fake.add_comment(REPO, n, body, user=user)
        assert hooked.deliver("issue_comment", fake.comment_payload(REPO, cid)) == 202
    edited = fake.comment_payload(REPO, cid, action="edited")
    edited["changes"] = {"body": {"from": "typo"}}
    edited["comment"]["body"] = "@adw-bot fix it after all"
    assert fake.deliver(REPO, "issue_comment", edited) == [200]  # ignored: not an action adw acts on
    assert rig.store.find_task("github", f"{REPO}#{n}") is None
    assert [c.user for c in fake.comments(REPO, n) if c.user == "adw-bot"] == ["adw-bot"]  # only our own
    assert all(fake.reactions(REPO, f"issues/comments/{c.id}") == [] for c in fake.comments(REPO, n))
    assert rig.source.poll()  # polling's mention listing sees the same comments and agrees
    assert rig.store.find_task("github", f"{REPO}#{n}") is None


def test_reactions_refused_by_github_do_not_hold_up_the_run(hooked: Hooked) -> None:
    rig, fake = hooked.rig, hooked.rig.fake
    fake.inject_forbidden(method="POST", path=r".*/reactions$", times=10)
    n, payload = _labelled(fake)
    assert hooked.deliver("issues", payload) == 202
    wait_for(lambda: rig.task(n).state is TaskState.SUCCEEDED, "the run")
    assert fake.reactions(REPO, f"issues/{n}") == []
    assert any(r.fault == "forbidden" for r in fake.requests)


def test_a_writers_mention_starts_a_run_with_the_instruction(hooked: Hooked) -> None:
    rig, fake = hooked.rig, hooked.rig.fake
    n = fake.add_issue(REPO, "Footer", user="someone", body="the footer is off")
    cid = fake.add_comment(REPO, n, "@adw-bot please also fix the footer", user="maintainer")
    assert hooked.deliver("issue_comment", fake.comment_payload(REPO, cid)) == 202
    wait_for(lambda: rig.task(n).state is TaskState.SUCCEEDED, "the mention's run")
    assert "Follow-up request from @maintainer:\nplease also fix the footer" in rig.prompt(1)
    assert ("adw-bot", "eyes") in fake.reactions(REPO, f"issues/comments/{cid}")


def test_assignment_to_the_bot_triggers_and_unassignment_cancels(hooked: Hooked) -> None:
    rig, fake = hooked.rig, hooked.rig.fake
    n = fake.add_issue(REPO, "Assigned work", user="someone", body="do it")
    fake.assign_issue(REPO, n, "adw-bot", actor="maintainer")
    assert hooked.deliver("issues", fake.issues_payload(REPO, n, "assigned", "maintainer", assignee="adw-bot")) == 202
    task = rig.task(n)
    assert rig.store.source_state(task.id)["trigger_kind"] == "assignment"
    assert ("adw-bot", "eyes") in fake.reactions(REPO, f"issues/{n}")
    wait_for(lambda: rig.task(n).state is TaskState.SUCCEEDED, "the assignment's run")
    # A stranger's assignment of another issue is refused, once, with 😕.
    m = fake.add_issue(REPO, "Not yours", user="someone", body="x")
    fake.assign_issue(REPO, m, "adw-bot", actor="stranger")
    assert hooked.deliver("issues", fake.issues_payload(REPO, m, "assigned", "stranger", assignee="adw-bot")) == 202
    assert rig.store.find_task("github", f"{REPO}#{m}") is None
    assert fake.reactions(REPO, f"issues/{m}") == [("adw-bot", "confused")]


def test_polling_finds_an_assignment_too(rig_factory: Callable[..., Rig], tmp_path: Path) -> None:
    rig = rig_factory()
    n = rig.fake.add_issue(REPO, "Assigned while no webhook", user="someone", body="do it")
    rig.fake.assign_issue(REPO, n, "adw-bot", actor="maintainer")
    assert rig.source.poll()
    assert rig.store.source_state(rig.task(n).id)["trigger_kind"] == "assignment"
    assert ("adw-bot", "eyes") in rig.fake.reactions(REPO, f"issues/{n}")
    assert rig.source.poll()  # the listing changed once more: our 👀 is in the issue's reaction counts
    requests = len(rig.fake.requests)
    assert rig.source.poll()  # nothing changed since: conditional listings only, no points
    listings = [r for r in rig.fake.requests[requests:] if r.path == f"/repos/{REPO}/issues"]
    assert [r.status for r in listings] == [304, 304] and sum(r.points for r in listings) == 0
    assert rig.task(n).state is not TaskState.CANCELLED


def test_polling_finds_a_mention_on_an_issue_without_a_task(rig_factory: Callable[..., Rig]) -> None:
    """No webhook: one conditional listing of the repository's comments per poll finds the
    mention, a stranger's mention is refused once, our own comments and code are not mentions
    of anyone new, and an idle poll's listing is a 304 that costs nothing."""
    rig = rig_factory()
    fake = rig.fake
    n = fake.add_issue(REPO, "Footer", user="someone", body="the footer is off")
    m = fake.add_issue(REPO, "Header", user="someone", body="the header is off")
    assert rig.source.poll()
    cid = fake.add_comment(REPO, n, "@adw-bot please fix the footer", user="maintainer")
    stranger = fake.add_comment(REPO, m, "@adw-bot delete everything", user="stranger")
    assert rig.source.poll()
    state = rig.store.source_state(rig.task(n).id)
    assert state["trigger_kind"] == "mention" and state["instruction"] == "please fix the footer"
    assert ("adw-bot", "eyes") in fake.reactions(REPO, f"issues/comments/{cid}")
    assert rig.store.find_task("github", f"{REPO}#{m}") is None
    assert ("adw-bot", "confused") in fake.reactions(REPO, f"issues/comments/{stranger}")
    refusals = [c for c in fake.comments(REPO, m) if c.user == "adw-bot"]
    assert len(refusals) == 1
    for _ in range(2):  # our own comments (the refusal) come back in the listing: not re-acted on
        assert rig.source.poll()
    assert len([c for c in fake.comments(REPO, m) if c.user == "adw-bot"]) == 1
    requests = len(fake.requests)
    assert rig.source.poll()
    listing = [r for r in fake.requests[requests:] if r.path == f"/repos/{REPO}/issues/comments"]
    assert [(r.status, r.conditional, r.points) for r in listing] == [(304, True, 0)]
    assert len(rig.store.attempts_for(rig.task(n).id)) <= 1  # found once, queued once


def test_a_mention_poll_cut_short_by_github_is_read_again(rig_factory: Callable[..., Rig]) -> None:
    """GitHub fails while a listed mention is being handled: the next poll reads the listing in
    full again (not a 304 that would skip the mention for good)."""
    rig = rig_factory()
    fake = rig.fake
    n = fake.add_issue(REPO, "Footer", user="someone", body="the footer is off")
    assert rig.source.poll()
    fake.add_comment(REPO, n, "@adw-bot please fix the footer", user="maintainer")
    fake.inject_server_error(502, method="GET", path=rf"/repos/{REPO}/issues/{n}$")
    assert not rig.source.poll()  # the issue could not be read: the poll backs off
    assert rig.store.find_task("github", f"{REPO}#{n}") is None
    rig.source.backoff_until, rig.source.client.backoff = None, None  # as once the backoff is over
    assert rig.source.poll()
    assert rig.store.source_state(rig.task(n).id)["instruction"] == "please fix the footer"


def test_a_mention_in_a_new_issue_starts_a_run(hooked: Hooked) -> None:
    rig, fake = hooked.rig, hooked.rig.fake
    n = fake.add_issue(REPO, "Typo", user="maintainer", body="@adw-bot fix the typo in the README")
    assert hooked.deliver("issues", fake.issues_payload(REPO, n, "opened", "maintainer")) == 202
    state = rig.store.source_state(rig.task(n).id)
    assert state["trigger_kind"] == "mention" and state["instruction"] == "fix the typo in the README"
    assert ("adw-bot", "eyes") in fake.reactions(REPO, f"issues/{n}")


@pytest.mark.parametrize("hooked", ["1"], indirect=True)  # the first run waits: still active when unlabelled
def test_our_own_and_unrelated_label_deliveries_cost_no_requests(hooked: Hooked) -> None:
    rig, fake = hooked.rig, hooked.rig.fake
    n, payload = _labelled(fake)
    assert hooked.deliver("issues", payload) == 202
    requests = len(fake.requests)
    fake.label_issue(REPO, n, "bug", actor="maintainer")
    assert hooked.deliver("issues", fake.issues_payload(REPO, n, "labeled", "maintainer", label="bug")) == 202
    fake.label_issue(REPO, n, "adw:queued", actor="adw-bot")
    assert hooked.deliver("issues", fake.issues_payload(REPO, n, "labeled", "adw-bot", label="adw:queued")) == 202
    assert len(fake.requests) == requests
    # Removing the trigger label cancels the task, from the payload alone.
    fake.unlabel_issue(REPO, n, "adw", actor="maintainer")
    assert hooked.deliver("issues", fake.issues_payload(REPO, n, "unlabeled", "maintainer", label="adw")) == 202
    assert rig.task(n).cancel_reason == 'label "adw" removed on GitHub'
    assert len(fake.requests) == requests


@pytest.mark.parametrize("kind", ["review", "review_comment"])
def test_a_command_in_a_review_of_the_tasks_pull_request_queues_the_next_round(hooked: Hooked, kind: str) -> None:
    """``pull_request_review`` / ``pull_request_review_comment``: full payloads, built by the fake
    from its pull request and review and validated against GitHub's ``webhook-pull-request-review-
    submitted`` / ``webhook-pull-request-review-comment-created`` schemas, signed and delivered."""
    rig, fake = hooked.rig, hooked.rig.fake
    n, payload = _labelled(fake)
    assert hooked.deliver("issues", payload) == 202
    wait_for(lambda: rig.task(n).state is TaskState.SUCCEEDED, "the first round")
    task = rig.task(n)
    pr = fake.add_issue(REPO, "adw: Fix the login", user="adw-bot", pull_request=True)
    rig.store.update_source_state(task.id, {"pr_number": pr}, rig.source.clock())
    text = "@adw-bot handle the empty case too"
    if kind == "review":
        item = fake.add_review(REPO, pr, text, user="maintainer", state="CHANGES_REQUESTED")
        event, delivered = "pull_request_review", fake.review_payload(REPO, pr, item)
        reacted_on = f"issues/{pr}"
    else:
        item = fake.add_review_comment(REPO, pr, text, user="maintainer", path="app.py", line=3)
        event, delivered = "pull_request_review_comment", fake.review_comment_payload(REPO, pr, item)
        reacted_on = f"pulls/comments/{item}"
    assert hooked.deliver(event, delivered) == 202
    state = rig.store.source_state(task.id)
    assert state["instruction"] == "handle the empty case too" and state["instruction_id"] == item
    wait_for(lambda: len(rig.store.attempts_for(task.id)) == 2, "the next round")
    assert any(r.method == "POST" and r.path == f"/repos/{REPO}/{reacted_on}/reactions" for r in fake.requests)
    fake.assert_valid()  # the payloads too: ``deliver`` validates each against its webhook schema


def test_a_command_on_a_mention_started_task_is_found_by_polling_too(hooked: Hooked) -> None:
    rig, fake = hooked.rig, hooked.rig.fake
    n = fake.add_issue(REPO, "Footer", user="someone", body="the footer is off")
    cid = fake.add_comment(REPO, n, "@adw-bot fix the footer", user="maintainer")
    assert hooked.deliver("issue_comment", fake.comment_payload(REPO, cid)) == 202
    wait_for(lambda: rig.task(n).state is TaskState.SUCCEEDED, "the mention's run")
    assert rig.source.poll()  # the issue is not labelled: its comments are read for commands anyway
    fake.add_comment(REPO, n, "/adw and the header", user="maintainer")  # no delivery: a lost one
    assert rig.source.poll()
    state = rig.store.source_state(rig.task(n).id)
    assert state["instruction"] == "and the header" and rig.task(n).state is not TaskState.SUCCEEDED
