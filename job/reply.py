"""Turn the new text of an approver's reply email into commands.

Quoted text, above all our own request quoted back (with or without ">" markers), must
never become a command. So `extract_new_text` removes, in this order:

* everything from the first quote header on ("On ... wrote:" in several languages, also
  wrapped over up to three lines; "----- Original Message -----" style separators;
  forward markers; an Outlook "From:/Sent:/To:" block without markers);
* a signature after "-- " and everything after a mobile footer ("Sent from my iPhone");
* every line that starts with ">";
* every line equal, after normalising, to a line of a message we sent in the thread.

HTML is used only when there is no plain part; quoted elements (blockquote, Gmail, Yahoo,
Thunderbird and Outlook quote containers) are dropped while converting it to text.

`parse_commands` reads one command per line: a verb, then "all" or rows, ranges and
transaction ids, then an optional reason after ":", " - " or " because ". Lines that do
not start with a verb are prose and ignored. A line that starts like a command but cannot
be read in full is a problem and yields no command, so half a line never approves anything.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from difflib import SequenceMatcher
from html.parser import HTMLParser
from typing import Literal

__all__ = [
    "Action",
    "Command",
    "ParsedReply",
    "collect_sent_lines",
    "extract_new_text",
    "parse_commands",
    "parse_reply",
]

Action = Literal["approve", "reject", "hold"]

MAX_RANGE = 10_000  # a longer range than this (or than the request has rows) is a typo
MAX_QUOTED_LINE = 80  # longer lines are shortened when quoted in a problem
MAX_BODY = 1_000_000  # characters read from each part; new text is at the top anyway
MAX_HEADER_LINE = 500  # longer lines are not quote headers or separators

# Strong words are commands on their own; weak words ("ok", "no") are also prose, so they
# count only when followed by targets or "all".
_STRONG: dict[str, Action] = {
    **dict.fromkeys("approve approved accept accepted signoff".split() + ["sign off"], "approve"),
    **dict.fromkeys(["reject", "rejected", "deny", "denied", "decline", "declined"], "reject"),
    **dict.fromkeys(["hold", "held", "defer", "deferred", "on hold"], "hold"),
}
_WEAK: dict[str, Action] = {
    **dict.fromkeys(["ok", "okay", "yes", "lgtm"], "approve"),
    **dict.fromkeys(["no"], "reject"),
    **dict.fromkeys(["wait", "pending"], "hold"),
}
_LIKELY_TYPOS = ("approve", "approved", "reject", "rejected", "hold")
_FILLERS = frozenset(
    "item items row rows number numbers nr nos and of the them please pls thanks thank you thx"
    .split()
)
_ALL = frozenset({"all", "everything"})

_NOISE_START = re.compile(r"^[\s*•·◦▪‣+\-–—]+")
_NOISE_END = frozenset(".,!*")
_PHRASE_VERB = re.compile(r"(sign[\s-]*off|on\s+hold)(?![^\W\d_])", re.IGNORECASE)
_WORD = re.compile(r"[^\W\d_]+")
_SPACED_RANGE = re.compile(r"([0-9])\s*(?:[-–—]|\bto\b|\bthrough\b|\bthru\b)\s*([0-9])", re.I)
_REASON_START = re.compile(r":|\s-+\s|\s-+$|[–—]|\bbecause\b", re.IGNORECASE)
_TOKEN_SPLIT = re.compile(r"[\s,;&]+")
_DIGITS = re.compile(r"[0-9]+")
_RANGE = re.compile(r"([0-9]+)-([0-9]+)")

_ATTRIBUTION = re.compile(
    r"(?:\bwrote|\bwrites|\ba [ée]crit|\bescribi[óo]|\bha scritto|\bescreveu|\bpisze"
    r"|\bnapisał(?:\(a\))?|\bнаписал(?:\(а\))?"
    r"|\b(?:schrieb|schreef|skrev|kirjoitti)\b.{0,150}?)\s*:\s*$",
    re.IGNORECASE,
)
_DASHED_START = re.compile(r"-{2,}\s*[^\W\d_]")  # "-----Original Message-----"
_FORWARD_MARKER = re.compile(
    r"(?:begin forwarded message|-*\s*forwarded message\s*-*|début du message réexpédié"
    r"|anfang der weitergeleiteten nachricht)\s*:?$",
    re.IGNORECASE,
)
_FROM_FIELD = re.compile(
    r"^\*?\s*(?:from|de|von|fra|från|van|da|od|lähettäjä|от)\s*\*?\s*:", re.IGNORECASE
)
_HEADER_FIELD = re.compile(
    r"^\*?\s*(?:sent|date|to|cc|subject|gesendet|datum|an|betreff|envoyé|envoye|à|objet"
    r"|sendt|dato|til|emne|skickat|till|ämne|verzonden|aan|onderwerp|inviato|data|a|oggetto"
    r"|enviado|fecha|para|asunto|assunto|wysłano|do|temat|lähetetty|päivämäärä"
    r"|vastaanottaja|aihe|отправлено|кому|тема|дата)\s*\*?\s*:",
    re.IGNORECASE,
)
_BORDER_TOP = re.compile(r"border-top\s*:", re.IGNORECASE)
_FOOTER = re.compile(
    r"^(?:sent from my\b|sent from (?:outlook|yahoo mail|mail for windows|gmail)\b|sent via\b"
    r"|get outlook for\b|envoyé de mon\b|envoyé depuis mon\b|von meinem\b.*\bgesendet"
    r"|sendt fra min\b|skickat från min\b|enviado desde mi\b|enviado do meu\b|inviato da\b"
    r"|verzonden (?:met|vanaf) mijn\b|verstuurd vanaf mijn\b|wysłane z\b)",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class Command:
    action: Action
    targets: tuple[str, ...] | None  # None means every item; else row numbers and ids
    reason: str  # "" when none was given
    text: str  # the source line, stripped


@dataclass(frozen=True, slots=True)
class ParsedReply:
    commands: tuple[Command, ...]
    problems: tuple[str, ...]  # one sentence per line that could not be understood


def parse_reply(
    plain: str | None, html: str | None, *,
    sent_texts: Sequence[str], row_count: int, known_ids: Collection[str],
) -> ParsedReply:
    """Read the commands in the new text of a reply."""
    text = extract_new_text(plain, html, sent_texts)
    return parse_commands(text, row_count=row_count, known_ids=known_ids)


# --- finding the new text ------------------------------------------------------------


def extract_new_text(
    plain: str | None,
    html: str | None,
    sent_texts: Sequence[str],
    *,
    sent_lines: Collection[str] | None = None,
) -> str:
    """Return the lines of a reply that the approver wrote, without anything quoted.

    `sent_lines` (from `collect_sent_lines`) may stand in for `sent_texts` when the caller
    checks many replies against the same sent messages.
    """
    if plain and plain.strip():
        text = plain[:MAX_BODY]
    else:
        text = convert_html_to_text((html or "")[:MAX_BODY])
    lines = text.splitlines()
    lines = lines[: find_quote_start(lines)]
    lines = lines[: find_signature_start(lines)]
    sent = sent_lines if sent_lines is not None else collect_sent_lines(sent_texts)
    lines = [line for line in lines if not line.lstrip().startswith(">")]
    return "\n".join(line for line in lines if normalize_line(line) not in sent)


def normalize_line(line: str) -> str:
    """Fold a line for comparing it with the lines of a message we sent."""
    return " ".join(line.split()).casefold().lstrip("> ").strip()


def collect_sent_lines(sent_texts: Sequence[str]) -> frozenset[str]:
    """The normalised non-empty lines of the messages we sent, for dropping them from replies."""
    lines = (normalize_line(line) for text in sent_texts for line in text.splitlines())
    return frozenset(line for line in lines if line)


def find_quote_start(lines: Sequence[str]) -> int:
    """Index of the first line of quoted or forwarded text, or len(lines)."""
    for i, line in enumerate(lines):
        if is_separator(line) or is_outlook_header(lines, i) or is_attribution(lines, i):
            return i
    return len(lines)


def is_separator(line: str) -> bool:
    """A "-----Original Message-----" style separator or a forward marker."""
    stripped = line.strip()
    if _DASHED_START.match(stripped) and stripped.endswith("--"):
        return True
    return len(stripped) <= MAX_HEADER_LINE and bool(_FORWARD_MARKER.match(stripped))


def is_outlook_header(lines: Sequence[str], i: int) -> bool:
    """A "From:" line followed within a few lines by "Sent:", "To:" or the like."""
    if not _FROM_FIELD.match(lines[i].strip()):
        return False
    return any(_HEADER_FIELD.match(line.strip()) for line in lines[i + 1 : i + 6])


def is_attribution(lines: Sequence[str], i: int) -> bool:
    """An "On <date>, <someone> wrote:" line, possibly wrapped over up to three lines."""
    for span in (1, 2, 3):
        window = lines[i : i + span]
        if len(window) < span or not window[-1].strip():
            return False
        joined = " ".join(line.strip() for line in window)
        if len(joined) > MAX_HEADER_LINE or not re.search(r"[0-9@]", joined):
            continue
        if _ATTRIBUTION.search(joined):
            # a wrapped header never contains a line that starts like a command
            return span == 1 or all(parse_line(line, 0, {}) is None for line in window)
    return False


def find_signature_start(lines: Sequence[str]) -> int:
    """Index of a "-- " signature marker or a mobile footer, or len(lines)."""
    for i, line in enumerate(lines):
        stripped = line.strip()
        if stripped == "--" or _FOOTER.match(stripped):
            return i
    return len(lines)


class _HtmlText(HTMLParser):
    """Collects the visible text of an HTML body, leaving out quoted parts."""

    SKIP_TAGS = frozenset({"blockquote", "style", "script", "head", "title", "template"})
    SKIP_CLASSES = ("gmail_quote", "gmail_attr", "yahoo_quoted", "moz-cite-prefix")
    STOP_IDS = frozenset({"divrplyfwdmsg", "appendonsend"})
    BREAK_TAGS = frozenset("br p div tr li ul ol table hr pre h1 h2 h3 h4 h5 h6".split())
    VOID_TAGS = frozenset("br hr img meta link input wbr area base col embed source".split())

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skip_tag: str | None = None  # inside a dropped element with this tag
        self.skip_depth = self.pre_depth = 0
        self.stopped = False  # past the start of the quoted message

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.stopped:
            return
        if self.skip_tag is not None:
            if tag == self.skip_tag:
                self.skip_depth += 1
            elif self.skip_tag == "head" and tag == "body":  # an unclosed <head>
                self.skip_tag, self.skip_depth = None, 0
            return
        values = {name: value or "" for name, value in attrs}
        style = values.get("style", "") if tag == "div" else ""
        if values.get("id", "").casefold() in self.STOP_IDS or _BORDER_TOP.search(style):
            self.stopped = True  # Outlook's reply header: the rest is the quote
            return
        classes = values.get("class", "").casefold()
        if tag not in self.VOID_TAGS and (
            tag in self.SKIP_TAGS or any(name in classes for name in self.SKIP_CLASSES)
        ):
            self.skip_tag, self.skip_depth = tag, 1
            return
        self.parts.append("\n" if tag in self.BREAK_TAGS else " " if tag in ("td", "th") else "")
        if tag == "pre":
            self.pre_depth += 1

    def handle_endtag(self, tag: str) -> None:
        if self.stopped:
            return
        if self.skip_tag is not None:
            if tag == self.skip_tag:
                self.skip_depth -= 1
                if self.skip_depth == 0:
                    self.skip_tag = None
            return
        if tag in self.BREAK_TAGS:
            self.parts.append("\n")
        if tag == "pre" and self.pre_depth:
            self.pre_depth -= 1

    def handle_data(self, data: str) -> None:
        if self.stopped or self.skip_tag is not None:
            return
        self.parts.append(data if self.pre_depth else re.sub(r"[ \t\r\n\f]+", " ", data))


def convert_html_to_text(html: str) -> str:
    """Visible text of an HTML body, one line per block, quoted parts left out."""
    parser = _HtmlText()
    try:
        parser.feed(html)
        parser.close()
    except (AssertionError, ValueError):
        pass  # malformed markup: keep the text read before it, which is the newest part
    return "".join(parser.parts).replace("\xa0", " ")


# --- reading commands ----------------------------------------------------------------


def parse_commands(text: str, *, row_count: int, known_ids: Collection[str]) -> ParsedReply:
    """Read one command per line of new text; report lines that look wrong."""
    ids = {known.casefold(): known for known in reversed(list(known_ids))}  # first one wins
    commands: list[Command] = []
    problems: list[str] = []
    for line in text.splitlines():
        result = parse_line(line, row_count, ids)
        if isinstance(result, Command):
            commands.append(result)
        elif result is not None:
            problems.append(f"line '{shorten(line.strip())}': {result}")
    if not commands and not problems:
        problems.append("no command found")
    return ParsedReply(tuple(commands), tuple(problems))


def shorten(text: str, limit: int = MAX_QUOTED_LINE) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse_line(
    line: str, row_count: int, ids: dict[str, str], *, weak: bool = True
) -> Command | str | None:
    """A Command, a problem (str) for a line that starts like a command, or None for prose.

    With weak=False the prose-like words ("ok", "no") are not read as verbs at all.
    """
    text = line.strip()
    body = strip_noise(text)
    match = _PHRASE_VERB.match(body) or _WORD.match(body)
    if match is None:
        return None
    word = re.sub(r"[\s-]+", " ", match.group(0)).casefold()
    rest = body[match.end() :]
    if word in _WEAK:
        return read_weak_command(_WEAK[word], rest, text, row_count, ids) if weak else None
    if word not in _STRONG:
        return diagnose_typo(word, rest, row_count, ids)
    action = _STRONG[word]
    if word == "hold" and re.match(r"\s+on\b", rest, re.IGNORECASE):
        return None  # "Hold on, let me check"
    part, reason = split_reason(rest.lstrip().removeprefix(":"))
    targets, error, _ = read_targets(part, row_count, ids)
    if error:
        return error
    if targets == ():
        return f"say '{action} all' or list the items"
    return Command(action, targets, reason, text)


def strip_noise(text: str) -> str:
    """Drop bullets before a line and trailing punctuation after it (in linear time)."""
    body = _NOISE_START.sub("", text)
    end = len(body)
    while end and (body[end - 1].isspace() or body[end - 1] in _NOISE_END):
        end -= 1
    return body[:end]


def read_weak_command(
    action: Action, rest: str, text: str, row_count: int, ids: dict[str, str]
) -> Command | str | None:
    """"ok 1" or "no 2: reason" is a command; "OK thanks" and "No problem" are prose."""
    inner = parse_line(rest.lstrip(" ,;:!-–—"), row_count, ids, weak=False)
    if isinstance(inner, Command):
        return replace(inner, text=text)  # "Yes, approve all"
    if inner is not None:
        return inner
    part, reason = split_reason(rest)
    targets, error, target_shaped = read_targets(part, row_count, ids)
    if not target_shaped or (targets == () and not error):
        return None
    return error or Command(action, targets, reason, text)


def diagnose_typo(word: str, rest: str, row_count: int, ids: dict[str, str]) -> str | None:
    """A problem for "aprove 1", "rejct 2" or a lone "approv"; None for ordinary prose."""
    if len(word) < 3 or word[0] not in "arh":
        return None
    targets, _, target_shaped = read_targets(split_reason(rest)[0], row_count, ids)
    alone = not rest.strip(" ,;:-–—")
    if not target_shaped or (targets == () and not alone):
        return None  # "Approval attached", "Regards, Ann"
    for verb in _LIKELY_TYPOS:
        if word[0] != verb[0]:
            continue
        near = abs(len(word) - len(verb)) <= 2 and SequenceMatcher(None, word, verb).ratio()
        long_verb = len(verb) > 4
        if targets != () and (near >= 0.75 or (long_verb and word.startswith(verb[:5]))):
            return f"'{word}' is not a command word; did you mean '{verb}'?"
        if alone and long_verb and (near >= 0.85 or word.startswith(verb[:6])):
            return f"'{word}' is not a command word; did you mean '{verb}'?"
    return None


def split_reason(rest: str) -> tuple[str, str]:
    """Split "1, 3 - 4: no PO on file" into ("1, 3-4", "no PO on file")."""
    rest = _SPACED_RANGE.sub(r"\1-\2", rest)
    match = _REASON_START.search(rest)
    if match is None:
        return rest.strip(), ""
    return rest[: match.start()].strip(), rest[match.end() :].strip(" :-–—\t")


def read_targets(
    part: str, row_count: int, ids: dict[str, str]
) -> tuple[tuple[str, ...] | None, str, bool]:
    """Read "all" or rows, ranges and ids into (targets, error, target_shaped).

    targets is None for "all" and () for none; error is "" or the first thing wrong;
    target_shaped is False when a word that is neither number nor id was met (prose).
    """
    targets: list[str] = []
    error, saw_all, target_shaped = "", False, True
    for token in _TOKEN_SPLIT.split(part):
        token = token.strip("()[]\"'.!?").lstrip("#")
        folded = token.casefold()
        if not token or folded in _FILLERS:
            continue
        if folded in _ALL:
            saw_all = True
            continue
        rows, problem = read_rows(token, row_count)
        if rows:
            targets.extend(rows)
        elif folded in ids:
            targets.append(ids[folded])
        elif problem:
            error = error or problem
        elif re.search(r"[0-9]", token):
            error = error or f"there is no transaction {shorten(token, 40)}"
        else:
            target_shaped = False
            error = error or f"'{shorten(token, 40)}' is not an item number or transaction id"
    if saw_all and (targets or error):
        error = error or "write either 'all' or a list of items, not both"
    if saw_all and not error:
        return None, "", target_shaped
    return tuple(dict.fromkeys(targets)), error, target_shaped


def read_rows(token: str, row_count: int) -> tuple[list[str], str]:
    """Rows named by "3" or "3-5"; ([], problem) if wrong; ([], "") if not a number."""
    if _DIGITS.fullmatch(token):
        start = end = read_number(token)
    elif match := _RANGE.fullmatch(token):
        start, end = read_number(match.group(1)), read_number(match.group(2))
        if start > end:
            return [], f"the range {shorten(token, 40)} runs backwards"
        if end - start >= max(MAX_RANGE, row_count):  # a range inside the request is never too large
            return [], f"the range {shorten(token, 40)} is too large"
    else:
        return [], ""
    for row in (start, end):
        if not 1 <= row <= row_count:
            return [], f"there is no item {row if row <= 10**9 else shorten(token, 24)}"
    return [str(row) for row in range(start, end + 1)], ""


def read_number(digits: str) -> int:
    """int() of ASCII digits, without tripping on absurdly long ones."""
    digits = digits.lstrip("0") or "0"
    return int(digits) if len(digits) <= 12 else 10**12
