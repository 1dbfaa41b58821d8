"""Revocation: a reply token works only while its address is current in the configuration.

An approver (or an escalation address a request was escalated to) removed from the config
gets no more mail, and its replies are refused and recorded, never answered; added back, its
tokens work again. Everything goes through the real command line and the maildir transport;
the config is rewritten between commands as an operator would.
"""

from __future__ import annotations

import json
from pathlib import Path

from helpers import Outbox, age_request as age, audit, build_reply, db_rows, drop_reply, plain_body, report_json, write_site
from helpers import poll_site as poll, run_site as run

CONTROLLER = "controller@example.com"
CFO = "cfo@example.com"
AUDITOR = "auditor@example.com"  # an escalation address


def configure(site: Path, approvers: list[str], **reminders) -> Path:
    """Write (or rewrite) the site's config: these approvers, these [reminders] settings."""
    return write_site(site, approvers, **({"reminders": reminders} if reminders else {}))


def statuses(site: Path) -> dict[str, str]:
    return {r["transaction_id"]: r["status"] for r in report_json(site)}


def last_inbound(site: Path) -> tuple:
    return db_rows(site, "SELECT sender, status, detail, request_id FROM messages WHERE direction = 'in' ORDER BY id DESC LIMIT 1")[0]


def last_message_event(site: Path) -> tuple[str, dict]:
    actor, detail = db_rows(site, "SELECT actor, detail FROM events WHERE kind = 'message' ORDER BY id DESC LIMIT 1")[0]
    return actor, json.loads(detail)


REVOKED = f"{CFO} is no longer an approver in the configuration; its reply tokens are revoked"


def test_a_removed_approver_is_refused_unanswered_while_the_others_decide_and_back_again_it_decides(tmp_path: Path) -> None:
    site = configure(tmp_path / "site", [CONTROLLER, CFO])
    request_id = run(site)
    outbox = Outbox(site)
    copies = {m["To"]: m for m in outbox.new()}
    assert sorted(copies) == [CFO, CONTROLLER]
    configure(site, [CONTROLLER])  # cfo leaves

    # (a) cfo's genuine reply to its own copy: refused with the reason, recorded, decides nothing, no answer
    drop_reply(site / "var/mail", build_reply(copies[CFO], "approve all", sender=CFO))
    result = poll(site)
    assert "1 refused" in result.stdout and "0 decision(s) recorded" in result.stdout
    assert outbox.new() == []
    assert last_inbound(site) == (CFO, "refused", REVOKED, request_id)
    actor, detail = last_message_event(site)
    assert actor == CFO and detail["status"] == "refused" and detail["detail"] == REVOKED and detail["decisions"] == 0
    assert "approved" not in statuses(site).values()
    assert db_rows(site, "SELECT COUNT(*) FROM decisions WHERE approver = ?", CFO) == [(0,)]
    verify = audit("verify", cwd=site)
    assert verify.returncode == 0, verify.stdout + verify.stderr

    # ... and again: still refused, still no answer (not a matter of the refusal rate limit)
    drop_reply(site / "var/mail", build_reply(copies[CFO], "approve 1", sender=CFO))
    assert "1 refused" in poll(site).stdout
    assert outbox.new() == []
    assert last_inbound(site)[1:3] == ("refused", REVOKED)

    # nor does mail without a token, or with the controller's token, get cfo an answer
    drop_reply(site / "var/mail", build_reply(copies[CONTROLLER], "approve 1", sender=CFO))
    assert "1 refused" in poll(site).stdout
    assert outbox.new() == [] and last_inbound(site)[1:3] == ("refused", REVOKED)

    # (b) the controller's reply still decides
    drop_reply(site / "var/mail", build_reply(copies[CONTROLLER], "approve 1", sender=CONTROLLER))
    result = poll(site)
    assert "1 decision(s) recorded" in result.stdout
    [confirmation] = outbox.new()
    assert confirmation["To"] == CONTROLLER and confirmation["Subject"].startswith("Recorded: ")
    assert statuses(site)["TX-1008"] == "approved"

    # (e) cfo added back: its original token works again
    configure(site, [CONTROLLER, CFO])
    drop_reply(site / "var/mail", build_reply(copies[CFO], "reject 2: no purchase order", sender=CFO))
    result = poll(site)
    assert "1 decision(s) recorded" in result.stdout
    [confirmation] = outbox.new()
    assert confirmation["To"] == CFO and confirmation["Subject"].startswith("Recorded: ")
    assert statuses(site)["TX-1002"] == "rejected"
    assert {r["transaction_id"]: r["decided_by"] for r in report_json(site)}["TX-1002"] == CFO
    assert audit("verify", cwd=site).returncode == 0


def test_reminders_and_expiry_notices_go_only_to_current_approvers(tmp_path: Path) -> None:
    site = configure(tmp_path / "site", [CONTROLLER, CFO], remind_after="1h", expire_after="3h")
    request_id = run(site)
    outbox = Outbox(site)
    copies = {m["To"]: m for m in outbox.new()}
    configure(site, [CONTROLLER], remind_after="1h", expire_after="3h")

    # (c) the reminder that falls due goes to the controller only
    age(site, request_id, 65)
    result = poll(site)
    assert f"request {request_id}: reminder sent" in result.stdout
    [reminder] = outbox.new()
    assert reminder["To"] == CONTROLLER and reminder["Subject"].startswith("Reminder: ")
    assert reminder["In-Reply-To"] == copies[CONTROLLER]["Message-ID"]
    assert "no current approver" not in result.stderr

    # the expiry notice too
    age(site, request_id, 185)
    result = poll(site)
    assert f"request {request_id} closed: pending items expired" in result.stdout
    [notice] = outbox.new()
    assert notice["To"] == CONTROLLER and notice["Subject"].startswith("Expired: ")
    assert set(statuses(site).values()) == {"auto_approved", "expired"}


def test_a_request_with_no_current_approver_is_warned_about_and_nobody_removed_is_mailed(tmp_path: Path) -> None:
    site = configure(tmp_path / "site", [CONTROLLER, CFO], remind_after="1h", expire_after="3h")
    request_id = run(site)
    outbox = Outbox(site)
    copies = {m["To"]: m for m in outbox.new()}
    configure(site, ["newcomer@example.com"], remind_after="1h", expire_after="3h")  # both leave

    # every poll says so, even before anything falls due
    result = poll(site)
    warning = (f"audit: warning: request {request_id} has no current approver: {CONTROLLER}, {CFO} are no longer"
               " in the configuration (reply tokens revoked); nobody can decide it and no reminder is sent")
    assert warning in result.stderr
    age(site, request_id, 65)
    result = poll(site)
    assert warning in result.stderr and "reminder sent" not in result.stdout
    assert outbox.new() == []

    # the newcomer never held a token for this request: a forwarded copy is another approver's
    drop_reply(site / "var/mail", build_reply(copies[CONTROLLER], "approve all", sender="newcomer@example.com"))
    assert "1 refused" in poll(site).stdout
    assert last_inbound(site)[1:3] == ("refused", "the reply token was issued to another approver, not to newcomer@example.com")
    [refusal] = outbox.new()  # the newcomer is an approver, so it is answered
    assert refusal["To"] == "newcomer@example.com" and refusal["Subject"].startswith("Not recorded: ")

    # it still expires (fail closed), and nobody removed is told; the poll says nobody was
    age(site, request_id, 185)
    result = poll(site)
    assert f"request {request_id} closed: pending items expired" in result.stdout
    assert f"request {request_id} has no current approver" in result.stderr and "it expired and nobody was told" in result.stderr
    assert outbox.new() == []
    assert "approved" not in statuses(site).values()


def test_an_escalation_address_removed_after_escalation_can_no_longer_decide(tmp_path: Path) -> None:
    settings = {"remind_after": "1h", "escalate_after": "2h", "escalation_addresses": [AUDITOR], "expire_after": "3h"}
    site = configure(tmp_path / "site", [CONTROLLER], **settings)
    request_id = run(site)
    outbox = Outbox(site)
    outbox.new()
    age(site, request_id, 125)
    result = poll(site)
    assert f"request {request_id}: escalated to {AUDITOR}" in result.stdout
    [escalation] = outbox.new()
    assert escalation["To"] == AUDITOR

    # while it is an escalation address, the escalation's token decides
    drop_reply(site / "var/mail", build_reply(escalation, "approve 1", sender=AUDITOR))
    assert "1 decision(s) recorded" in poll(site).stdout
    assert [m["To"] for m in outbox.new()] == [AUDITOR]

    # (d) removed from the escalation addresses: refused, unanswered, nothing decided
    configure(site, [CONTROLLER], **{**settings, "escalation_addresses": []})
    drop_reply(site / "var/mail", build_reply(escalation, "approve all", sender=AUDITOR))
    result = poll(site)
    assert "1 refused" in result.stdout and "0 decision(s) recorded" in result.stdout
    revoked = f"{AUDITOR} is no longer an approver in the configuration; its reply tokens are revoked"
    assert last_inbound(site) == (AUDITOR, "refused", revoked, request_id)
    assert outbox.new() == []
    assert list(statuses(site).values()).count("pending") == 3

    # and the expiry notice goes to the controller only
    age(site, request_id, 185)
    poll(site)
    assert [m["To"] for m in outbox.new()] == [CONTROLLER]
    assert audit("verify", cwd=site).returncode == 0


def test_an_approver_moved_to_the_escalation_addresses_decides_only_what_is_escalated_to_it(tmp_path: Path) -> None:
    site = configure(tmp_path / "site", [CONTROLLER, CFO])
    request_id = run(site)
    outbox = Outbox(site)
    copies = {m["To"]: m for m in outbox.new()}
    # cfo is no longer an approver, only an escalation address; this request was never escalated
    configure(site, [CONTROLLER], escalate_after="2h", escalation_addresses=[CFO])
    drop_reply(site / "var/mail", build_reply(copies[CFO], "approve all", sender=CFO))
    result = poll(site)
    assert "1 refused" in result.stdout
    assert last_inbound(site)[1:3] == (
        "refused", f"{CFO} is no longer an approver of this request in the configuration; its reply tokens for it are revoked")
    assert outbox.new() == []
    assert "approved" not in statuses(site).values()

    # once the request is escalated to it, it is an approver of this request again: the escalation's token decides
    age(site, request_id, 125)
    assert f"request {request_id}: escalated to {CFO}" in poll(site).stdout
    [escalation] = outbox.new()
    drop_reply(site / "var/mail", build_reply(escalation, "approve 1", sender=CFO))
    assert "1 decision(s) recorded" in poll(site).stdout
    assert [m["To"] for m in outbox.new()] == [CFO]
    assert "TX-1008" in plain_body(escalation) and statuses(site)["TX-1008"] == "approved"
