"""How well the new text of real-looking replies is cut from their quotes, per extractor.

    python bench/reply_corpus.py [--show-failures] [--only ours|mail-parser-reply|email-reply-parser]

Reads every `tests/fixtures/replies/*.eml` with its `.expected` new text and reports, per
extractor, the share trimmed exactly (whitespace collapsed, blank lines dropped) and how
many planted commands in the quoted part it let through as commands. Our extractor gets
the request we sent (`request.eml`) as the thread, as `audit poll` does. The two libraries
are optional (`pip install mail-parser-reply email-reply-parser`); they get the same
decoded body (plain part, else our HTML-to-text), since they read text only.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from job.mail.htmltext import convert_html_to_text  # noqa: E402
from job.mail.message import read_inbound  # noqa: E402
from job.mail.newtext import extract_new_text  # noqa: E402
from job.approval.reply import IdIndex, parse_commands, parse_line  # noqa: E402

CORPUS = ROOT / "tests" / "fixtures" / "replies"
IDS = ["TX-1008", "TX-1002", "TX-1007", "TX-1003"]


def normalize(text: str) -> list[str]:
    """Lines with whitespace collapsed, blank lines dropped: what 'exact' compares."""
    lines = (" ".join(line.replace("\ufeff", "").split()) for line in text.splitlines())
    return [line for line in lines if line]


def load_cases() -> list[tuple[str, bytes, str]]:
    return [(eml.stem, eml.read_bytes(), eml.with_suffix(".expected").read_text("utf-8"))
            for eml in sorted(CORPUS.glob("*.eml")) if eml.with_suffix(".expected").exists()]


def request_text() -> str:
    return read_inbound((CORPUS / "request.eml").read_bytes()).plain or ""


def ours(raw: bytes, sent: str) -> str:
    inbound = read_inbound(raw)
    index = IdIndex(IDS)
    return extract_new_text(inbound.plain, inbound.html, [sent],
                            is_command=lambda line: parse_line(line, len(IDS), index) is not None)


def body_text(raw: bytes) -> str:
    inbound = read_inbound(raw)
    return inbound.plain if inbound.plain and inbound.plain.strip() else convert_html_to_text(inbound.html or "")


def mail_parser_reply(raw: bytes, sent: str) -> str:
    from mailparser_reply import EmailReplyParser

    languages = ["en", "de", "fr", "es", "it", "nl", "pl", "sv", "da", "fi", "cs", "ru", "ja", "zh", "ko", "tr", "pt", "no"]
    try:
        parser = EmailReplyParser(languages=languages)
    except Exception:
        parser = EmailReplyParser(languages=["en", "de"])
    return parser.parse_reply(text=body_text(raw)) or ""


def email_reply_parser(raw: bytes, sent: str) -> str:
    from email_reply_parser import EmailReplyParser

    return EmailReplyParser.parse_reply(body_text(raw)) or ""


EXTRACTORS: dict[str, Callable[[bytes, str], str]] = {
    "ours": ours, "mail-parser-reply": mail_parser_reply, "email-reply-parser": email_reply_parser,
}


def commands_of(text: str) -> set[tuple]:
    parsed = parse_commands(text, row_count=len(IDS), known_ids=IDS)
    return {(c.action, c.targets, c.excluded) for c in parsed.commands}


def measure(name: str, extract: Callable[[bytes, str], str], cases, sent: str, show: bool) -> tuple[int, int, int]:
    exact = planted = 0
    for stem, raw, expected in cases:
        try:
            got = extract(raw, sent)
        except Exception as exc:  # a library that fails on a message counts as a miss
            got = f"<{type(exc).__name__}>"
        if normalize(got) == normalize(expected):
            exact += 1
        elif show:
            print(f"--- {name} {stem}\n    expected: {normalize(expected)}\n    got:      {normalize(got)}")
        if commands_of(got) - commands_of(expected):
            planted += 1
            if show:
                print(f"!!! {name} {stem}: a quoted command was read: {commands_of(got) - commands_of(expected)}")
    return exact, planted, len(cases)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--show-failures", action="store_true")
    parser.add_argument("--only", choices=list(EXTRACTORS))
    args = parser.parse_args()
    cases, sent = load_cases(), request_text()
    print(f"{len(cases)} replies in {CORPUS.relative_to(ROOT)}")
    for name, extract in EXTRACTORS.items():
        if args.only and name != args.only:
            continue
        try:
            exact, planted, total = measure(name, extract, cases, sent, args.show_failures)
        except ImportError:
            print(f"{name:>20}: not installed")
            continue
        print(f"{name:>20}: {exact}/{total} trimmed exactly ({100 * exact / total:.1f}%), "
              f"{planted} with a quoted command read as a command")


if __name__ == "__main__":
    main()
