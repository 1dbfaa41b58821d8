"""Turn the new text of an approver's reply into commands, or say why it is not clear.

`parse_commands` reads one command per line: a verb, then "all" (optionally "all except
2, 5") or rows, ranges and transaction ids, then an optional reason after ":", " - ", a
dash, "(", "because", "since", "until" or "due to". Synonyms ("ok", "yes", "deny",
"defer", ...) count; the weak ones ("ok", "no") only when followed by items or "all".

It fails closed on meaning: a line that looks like an instruction (a verb, a near-miss of
one, a transaction id of the request, an item reference such as "item 3" or "#3", or only
item numbers) but cannot be read in full, and any question, is a *problem*. Callers record
nothing from a reply with a problem (see `decide.plan_decisions`). Other lines are prose.

Ids are resolved by one function, `IdIndex.resolve`, used here and by the decision step:
an exact match wins; ids that only match under case folding and Unicode compatibility
normalisation (NFKC) resolve when exactly one id of the request matches, and are refused
as ambiguous when several do.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from job.mail.newtext import collect_sent_lines, extract_new_text

__all__ = [
    "Action",
    "Command",
    "IdIndex",
    "ParsedReply",
    "collect_sent_lines",
    "extract_new_text",
    "parse_commands",
    "parse_reply",
    "read_reply",
    "fold_id",
]

Action = Literal["approve", "reject", "hold"]

MAX_RANGE = 10_000  # a longer range than this (or than the request has rows) is a typo
MAX_QUOTED_LINE = 80  # longer lines are shortened when quoted in a problem
MAX_NEW_TEXT = 200_000  # characters of new text read; a longer reply is refused as unclear
NO_COMMAND = "no command found"

# Strong words are commands on their own; weak words ("ok", "no") are also prose, so they
# count only when followed by targets or "all".
_STRONG: dict[str, Action] = {
    **dict.fromkeys("approve approved accept accepted signoff signedoff".split() + ["sign off", "signed off"], "approve"),
    **dict.fromkeys(["reject", "rejected", "deny", "denied", "decline", "declined"], "reject"),
    **dict.fromkeys(["hold", "held", "defer", "deferred", "on hold"], "hold"),
}
_WEAK: dict[str, Action] = {
    **dict.fromkeys(["ok", "okay", "yes", "lgtm"], "approve"),
    **dict.fromkeys(["no"], "reject"),
    **dict.fromkeys(["wait", "pending"], "hold"),
}
# every form of a decision verb: anywhere in a line that is not a command, it makes the line unclear
_VERB_FORMS = frozenset(
    "approve approves approved approving accept accepts accepted accepting reject rejects rejected rejecting"
    " deny denies denied denying decline declines declined declining hold holds held holding defer defers"
    " deferred deferring signoff sign-off signedoff unapprove disapprove disapproved".split()
)
_TYPO_TARGETS = ("approve", "approved", "reject", "rejected", "decline", "declined", "accept", "accepted", "signoff")
_LIKELY_TYPOS = ("approve", "approved", "reject", "rejected", "hold")
_FILLERS = frozenset("item items row rows number numbers nr nos no. and of the them these those please pls thanks thank you thx".split())
_ALL = frozenset({"all", "everything"})
_CONTINUATIONS = frozenset(
    "not to and or should would will can cannot can't don't do does shall must never also but then that if"
    " we i you they it could may might won't wont shouldn't mustn't couldn't wouldn't isn't nor neither".split()
)
_NEGATIONS = frozenset("not no never nor neither cannot can't don't won't wont shouldn't mustn't circumstances".split())
# words that take back, condition or except a decision: a line with one is never prose
_DOUBT = frozenset(
    "except excluding exclude oops meant instead cancel undo retract unless duplicate duplicated fraud fraudulent withdraw revoke".split()
)
# words that do so when the line also names an item, an id or "all"
_WEAK_DOUBT = frozenset("not don't dont never pay paid check verify first only if wait but sorry actually yet later".split())
_ITEMISH = frozenset("all everything it them that this these those one ones first second third fourth fifth last rest others".split())
# an approval that comes with one of these is conditional, and a condition is not an approval
_CONDITIONS = frozenset(
    "if unless only pending until till not no wait provided providing once after when assuming assume subject"
    " contingent conditional conditionally provisional provisionally tentative tentatively maybe perhaps probably"
    " yet don't dont hold".split()
)
_TAKE_BACK = frozenset("except excluding instead oops meant actually cancel undo retract scratch ignore jk kidding joking".split())
_POLITE = re.compile(r"^(?:please|pls|kindly)\s+(?=[^\W\d_])", re.IGNORECASE)

_NOISE_START = re.compile(r"^[\s*•·◦▪‣+\-–—]+")
_NOISE_END = frozenset(".,!*")
_PHRASE_VERB = re.compile(r"(sign(?:ed)?[\s-]*off|on\s+hold)(?![^\W\d_])", re.IGNORECASE)
_WORD = re.compile(r"[^\W\d_]+")
_SPACED_RANGE = re.compile(r"([0-9])\s*(?:[-–—]|\bto\b|\bthrough\b|\bthru\b)\s*([0-9])", re.I)
_REASON_START = re.compile(r":|\s-+\s|\s-+$|[–—]|\(|\bbecause\b|\bsince\b|\buntil\b|\btill\b|\bdue to\b|\bpending\b", re.IGNORECASE)
_EXCEPT = re.compile(r"\b(?:except(?:\s+for)?|but\s+not|but|excluding|other\s+than|apart\s+from|besides)\b", re.I)
_TOKEN_SPLIT = re.compile(r"[\s,;&，、；]+")
_FREE_TOKEN = re.compile(r"[^\s,;&，、；]+")
_DIGITS = re.compile(r"[0-9]+")
_RANGE = re.compile(r"([0-9]+)-([0-9]+)")
_QUESTION = re.compile(r"[?？؟¿](?:$|[\s\"'’”)\]*_.!]|[?？])")
_ITEM_REFERENCE = re.compile(
    r"(?:#|\[|\b(?:item|items|row|rows|no|nr|nos|number|numbers|line|pos|position|entry|invoice)\.?\s*)\s?([0-9]+)",
    re.IGNORECASE,
)
# a line that starts with an item number: not "12:30", "3.5", "2026-11-24" or a phone number "1 555 0100"
_LEADING_NUMBER = re.compile(r"([0-9]+)(?![0-9]|[.,:/][0-9]|-[0-9]{3}|\s+[0-9]{3})")
_CONFUSABLES = str.maketrans(
    "аеорсухіјѕԁԛԝАВЕКМНОРСТХІЈЅΑΒΕΖΗΙΚΜΝΟΡΤΥΧαονρτ",
    "aeopcyxijsdqwABEKMHOPCTXIJSABEZHIKMNOPTYXaovpt",
)
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")
_NUMBER_THEN_VERB = re.compile(r"\.?[ \t]*#?[0-9]{1,9}[ \t.:)\-–—]{0,9}(?:approv|reject|hold|ok\b|yes\b|den|decl)", re.IGNORECASE)
_NOT_ITEMS = frozenset(  # words beside a number that make it a date, a time, a quantity or an address
    "jan feb mar apr may jun jul aug sep sept oct nov dec january february march april june july august september"
    " october november december mon tue wed thu fri sat sun monday tuesday wednesday thursday friday saturday sunday"
    " day days hour hours hrs h week weeks month months year years minute minutes min mins am pm o'clock percent %"
    " room suite floor building apt unit tel phone fax ext mobile box po street st road rd avenue ave"
    " invoices invoice pages page attachments attachments people times".split()
)
_ADDRESS_AFTER = re.compile(r"\s+[A-Z][a-z]|[A-Za-z]")  # "1 Main Street", "3rd floor": an address, not an item
_STANDALONE_NUMBER = re.compile(r"(?<![\w.,:/-])([0-9]{1,6})(?![\w.,:/-]*[0-9])")
_WORDS = re.compile(r"[^\W_]+(?:[-'][^\W_]+)*")
_ID_TOKEN_SPLIT = re.compile(r"[\s,;()\[\]\"'<>“”‘’«»]+")


@dataclass(frozen=True, slots=True)
class Command:
    action: Action
    targets: tuple[str, ...] | None  # None means every item; else row numbers and ids
    reason: str  # "" when none was given
    text: str  # the source line, stripped
    excluded: tuple[str, ...] = ()  # with targets None: "all except these"


@dataclass(frozen=True, slots=True)
class ParsedReply:
    commands: tuple[Command, ...]
    problems: tuple[str, ...]  # one sentence per line that is not clear; NO_COMMAND when empty

    @property
    def unclear(self) -> tuple[str, ...]:
        """The problems that make the whole reply unclear (all but 'no command found')."""
        return tuple(p for p in self.problems if p != NO_COMMAND)


def fold_id(text: str) -> str:
    """An id as compared when it is not written exactly: NFKC, case-folded, NFKC again."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())


class IdIndex:
    """The transaction ids of one request, for resolving what an approver wrote."""

    __slots__ = ("exact", "folded", "row_of")

    def __init__(self, ids: Collection[str]) -> None:
        """`ids` in item order: the first is item 1."""
        self.exact = frozenset(ids)
        self.row_of = {known: n for n, known in reversed(list(enumerate(ids, 1)))}
        folded: dict[str, list[str]] = {}
        for known in dict.fromkeys(ids):
            folded.setdefault(fold_id(known), []).append(known)
        self.folded = folded

    def resolve(self, token: str) -> tuple[str | None, str]:
        """(the id meant, "") or (None, problem) or (None, "") when the token is no id of the request."""
        if token in self.exact:
            return token, ""
        matches = self.folded.get(fold_id(token), ())
        if len(matches) == 1:
            return matches[0], ""
        if matches:
            names = ", ".join(ascii(m) if not m.isascii() else m for m in matches[:4])
            return None, f"{shorten(token, 40)} could mean any of {names}; write the id exactly as listed"
        return None, ""

    def mentions(self, token: str) -> bool:
        """Whether a word of prose names one of these ids, however written."""
        return token in self.exact or fold_id(token) in self.folded


def parse_reply(
    plain: str | None,
    html: str | None,
    *,
    sent_texts: Sequence[str],
    row_count: int,
    known_ids: Collection[str],
) -> ParsedReply:
    """Read the commands in the new text of a reply."""
    return read_reply(plain, html, sent_lines=collect_sent_lines(sent_texts), row_count=row_count, known_ids=known_ids)[1]


def read_reply(
    plain: str | None,
    html: str | None,
    *,
    sent_lines: Collection[str],
    row_count: int,
    known_ids: Collection[str] | IdIndex,
) -> tuple[str, ParsedReply]:
    """(new text, commands) of a reply. The plain part is read; when there is an HTML part too,
    it is read as well and must say the same: a reader sees one or the other, so a reply whose
    two versions differ (a struck-out item, a line only one of them has) is unclear."""
    index = known_ids if isinstance(known_ids, IdIndex) else IdIndex(known_ids)

    def is_command(line: str) -> bool:
        return parse_line(line, row_count, index) is not None

    text = extract_new_text(plain, html, (), sent_lines=sent_lines, is_command=is_command)
    parsed = parse_commands(text, row_count=row_count, known_ids=index)
    if not (plain and plain.strip() and html and html.strip()) or not parsed.commands:
        return text, parsed
    other = parse_commands(
        extract_new_text(None, html, (), sent_lines=sent_lines, is_command=is_command), row_count=row_count, known_ids=index
    )
    if meaning(other) != meaning(parsed):
        differs = (
            "the plain-text and HTML versions of your reply say different things"
            f" (plain: {describe(parsed)}; HTML: {describe(other)}); write the instructions again"
        )
        return text, ParsedReply(parsed.commands, (*parsed.problems, differs))
    return text, parsed


def meaning(parsed: ParsedReply) -> tuple:
    """What a parsed reply would decide, as comparable data: its commands, and whether it is unclear."""
    return tuple(sorted((c.action, c.targets or (), c.targets is None, c.excluded) for c in parsed.commands)), bool(parsed.unclear)


def describe(parsed: ParsedReply) -> str:
    commands = "; ".join(c.text for c in parsed.commands[:3]) or "no instruction"
    return shorten(commands + (", with lines not understood" if parsed.unclear else ""), 120)


# --- reading commands ----------------------------------------------------------------


def parse_commands(text: str, *, row_count: int, known_ids: Collection[str] | IdIndex) -> ParsedReply:
    """Read one command per line of new text; report every line that is not clear."""
    index = known_ids if isinstance(known_ids, IdIndex) else IdIndex(known_ids)
    if len(text) > MAX_NEW_TEXT:
        return ParsedReply((), (f"the new text is longer than {MAX_NEW_TEXT:,} characters; write one instruction per line",))
    commands: list[Command] = []
    problems: list[str] = []
    above = ""
    for line in text.splitlines():
        line = strip_invisible(line)
        result = parse_line(line, row_count, index)
        if isinstance(result, Command):
            if is_question(line):
                problems.append(f"line '{shorten(line.strip())}': this is a question, not an instruction")
            elif continues_sentence(above):
                problems.append(
                    f"line '{shorten(line.strip())}': continues the sentence '{shorten(above.strip(), 40)}' above it;"
                    " write each instruction on a line of its own"
                )
            else:
                commands.append(result)
        elif result is not None:
            problems.append(f"line '{shorten(line.strip())}': {result}")
        elif is_question(line):
            problems.append(
                f"line '{shorten(line.strip())}': questions are not read as instructions; ask them in a separate"
                " email, and reply here with instructions only"
            )
        elif looks_like_instruction(line, row_count, index):
            problems.append(
                f"line '{shorten(line.strip())}': reads like an instruction but is not one; write one per line,"
                " starting with approve, reject or hold"
            )
        above = line if result is None else ""  # only prose runs on into the line below
    if not commands:
        problems.insert(0, NO_COMMAND)
    return ParsedReply(tuple(commands), tuple(problems))


def strip_invisible(line: str) -> str:
    """A line without zero-width and direction marks (Unicode format characters), which change
    nothing a reader sees but would hide a word from us ("ex\u200bcept")."""
    if line.isascii():
        return line
    return "".join(ch for ch in line if unicodedata.category(ch) != "Cf")


def unconfuse(word: str) -> str:
    """A word with Cyrillic and Greek letters that look Latin read as Latin ("exсept" -> "except")."""
    return word.translate(_CONFUSABLES) if not word.isascii() else word


def shorten(text: str, limit: int = MAX_QUOTED_LINE) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def continues_sentence(above: str) -> bool:
    """Whether the line above stops mid-sentence ("we should not", "under no circumstances"),
    so the next line, even if it reads as a command ("approve all of them."), ends that sentence."""
    if above.rstrip().endswith((".", "!", ":", ",", ";", "?")):
        return False
    words = _WORDS.findall(above.casefold().replace("\u2019", "'")[-300:])
    return bool(words) and (words[-1] in _CONTINUATIONS or any(w in _NEGATIONS for w in words))


def is_question(line: str) -> bool:
    """A line that asks something ("OK, all of them?"); a '?' inside a link does not count."""
    return bool(_QUESTION.search(line.strip()))


def looks_like_instruction(line: str, row_count: int, index: IdIndex) -> bool:
    """A line that is not a command but names a decision verb (or a near miss), an exception
    or a correction ("except", "oops"), an item of the request (`names_an_item`), or "all",
    "it" or an ordinal together with a doubt ("don't", "not", "only", "check")."""
    text = line.strip().replace("\u2019", "'")
    if not text:
        return False
    original = [unconfuse(w) for w in _WORDS.findall(text)]
    # a verb counts in lower case, in capitals or first on the line; "Acme Holding AG" is a name
    words = [w.casefold() for n, w in enumerate(original) if n == 0 or w.islower() or w.isupper()]
    if any(w in _VERB_FORMS or near_verb(w) for w in words) or "sign off" in " ".join(words):
        return True
    folded = [w.casefold() for w in original]
    if any(w in _DOUBT for w in folded) or "not yet" in " ".join(folded) or "scratch that" in " ".join(folded):
        return True
    return names_an_item(text, row_count, index) or (any(w in _ITEMISH for w in folded) and any(w in _WEAK_DOUBT for w in folded))


def names_an_item(text: str, row_count: int, index: IdIndex) -> bool:
    """Whether prose names an item of the request: an id, "item 3", "#3", "[3]", or any number
    of an item ("P.S. 4 is a dupe", "außer 4", "❌ 4"), but not a date, a time, a duration or
    an address ("Dec 3", "2 days", "1 Main Street", "Room 3", "3rd floor")."""
    for token in _ID_TOKEN_SPLIT.split(text):
        token = token.strip(".,:;!?*_")
        if token and not token.isdigit() and index.mentions(token):
            return True
    for match in _ITEM_REFERENCE.finditer(text):
        if 1 <= read_number(match.group(1)) <= max(row_count, 0) and not _ADDRESS_AFTER.match(text, match.end()):
            return True
    for match in _STANDALONE_NUMBER.finditer(text):
        if not 1 <= read_number(match.group(1)) <= row_count or _ADDRESS_AFTER.match(text, match.end()):
            continue
        before = text[: match.start()].split()[-1:]
        after = text[match.end() :].split()[:1]
        neighbours = {w.strip(",.;:()[]'\"").casefold() for w in before + after}
        if text[: match.start()].endswith("+") or any(w.isdigit() and len(w) >= 3 for w in neighbours):
            continue  # a phone number: "+1 555 0100"
        if not neighbours & _NOT_ITEMS:
            return True
    return False


def near_verb(word: str) -> bool:
    """A word one edit (or one swap) away from a long decision verb: "aprove", "rejcet"."""
    if len(word) < 5:
        return False
    return any(abs(len(word) - len(verb)) <= 1 and word[0] == verb[0] and within_one_edit(word, verb) for verb in _TYPO_TARGETS)


def within_one_edit(a: str, b: str) -> bool:
    """Damerau-Levenshtein distance at most 1 (linear time)."""
    if a == b:
        return True
    if len(a) == len(b):
        diffs = [i for i in range(len(a)) if a[i] != b[i]]
        if len(diffs) == 1:
            return True
        return len(diffs) == 2 and diffs[1] == diffs[0] + 1 and a[diffs[0]] == b[diffs[1]] and a[diffs[1]] == b[diffs[0]]
    if len(a) > len(b):
        a, b = b, a
    if len(b) - len(a) != 1:
        return False
    i = 0
    while i < len(a) and a[i] == b[i]:
        i += 1
    return a[i:] == b[i + 1 :]


def parse_line(line: str, row_count: int, index: IdIndex, *, weak: bool = True, nested: bool = False) -> Command | str | None:
    """A Command, a problem (str) for a line that starts like a command, or None for prose.

    With weak=False the prose-like words ("ok", "no") are not read as verbs at all.
    """
    text = line.strip()
    body = _POLITE.sub("", strip_noise(text))  # "Please approve all"
    match = _PHRASE_VERB.match(body) or _WORD.match(body)
    if match is None:
        return None
    word = re.sub(r"[\s-]+", " ", match.group(0)).casefold()
    rest = body[match.end() :]
    if word == "no" and _NUMBER_THEN_VERB.match(rest):
        return "'No.' here reads as 'number'; write 'reject' and the items, or 'approve' and the items"
    if word in _WEAK:
        return read_weak_command(_WEAK[word], rest, text, row_count, index, nested=nested) if weak else None
    if word not in _STRONG:
        return diagnose_typo(word, rest, row_count, index)
    action = _STRONG[word]
    if word == "hold" and re.match(r"\s+on\b", rest, re.IGNORECASE):
        return "'hold on' is not an instruction; write 'hold' and the items"
    return read_command(action, rest.lstrip().removeprefix(":"), text, row_count, index, nested=nested)


def read_command(action: Action, rest: str, text: str, row_count: int, index: IdIndex, *, nested: bool = False) -> Command | str:
    """The targets, exceptions and reason after a verb; `nested` when reading a reason."""
    part, reason = split_reason(rest)
    if reason and not nested:
        problem = check_reason(action, reason, row_count, index)
        if problem:
            return problem
    excepted = _EXCEPT.search(part)
    if excepted:
        head, tail = part[: excepted.start()], part[excepted.end() :]
        targets, error, _ = read_targets(head, row_count, index)
        if error or targets == ():
            return f"write '{action} all except' and the items, or list the items to {action}"
        excluded, error, _ = read_targets(tail, row_count, index)
        if error:
            return error
        if not excluded:
            return f"name the items after '{excepted.group(0).strip()}'"
        if targets is None:
            return Command(action, None, reason, text, excluded)
        if not set(excluded) <= set(targets):  # "approve 1-5 except 3": the exceptions as the items were written
            return f"the items after '{excepted.group(0).strip()}' are not among those listed before it"
        return Command(action, tuple(t for t in targets if t not in excluded), reason, text)
    if action != "approve" and not _EXCEPT.search(part):
        # "hold 4 until the PO arrives" in any language ("hold 4 пока …", "hold 4，等…",
        # "reject 2, duplicate"): after the items, the first word that is none starts the reason.
        # Never for an approval, whose reason must follow a mark and is checked for conditions.
        part, free = split_free_reason(part, row_count, index)
        problem = check_reason(action, free, row_count, index) if free and not nested else ""
        if problem:
            return problem
        reason = (free + (" " + reason if reason else "")).strip() if free else reason
    targets, error, _ = read_targets(part, row_count, index)
    if error:
        return error
    if targets == () and action == "approve" and row_count == 0:
        return Command(action, None, reason, text)  # "signed off", "approve": a run with nothing to list
    if targets == ():
        return f"say '{action} all' or list the items"
    return Command(action, targets, reason, text)


def check_reason(action: Action, reason: str, row_count: int, index: IdIndex) -> str:
    """Why a reason is not just a reason: it holds another instruction ("reject 2: dup; approve 3"),
    goes on with the items ("approve TX-1001 - TX-1003"), takes the decision back ("approve 3 -
    actually no, reject 3"), or makes an approval conditional ("approve 3 (only if the PO arrives)")."""
    words = [unconfuse(w) for w in _WORDS.findall(strip_invisible(reason).casefold().replace("\u2019", "'"))]
    first = _TOKEN_SPLIT.split(reason.strip(), maxsplit=1)[0].strip("()[]\"'.!?:;")
    if first and (read_rows(first.lstrip("#"), row_count)[0] or index.resolve(first)[0] is not None):
        return "the items go on after the reason mark; list them first, then the reason after ':'"
    for n, word in enumerate(words):
        if word in _VERB_FORMS and (
            n + 1 == len(words)
            or words[n + 1] in _ITEMISH
            or words[n + 1].isdigit()
            or index.mentions(words[n + 1])
            or words[n + 1] in ("item", "items", "row", "no")
        ):
            return "the reason holds another instruction; write one instruction per line"
        if word in _TAKE_BACK:
            return f"the reason says '{word}'; write exactly what to decide, one instruction per line"
    if action == "approve" and any(w in _CONDITIONS for w in words):
        return "an approval with a condition is not an approval; approve when the condition is met, or hold the item"
    if isinstance(parse_line(reason, row_count, index, nested=True), Command):
        return "write one instruction per line"
    return ""


def strip_noise(text: str) -> str:
    """Drop bullets before a line and trailing punctuation after it (in linear time)."""
    body = _NOISE_START.sub("", text)
    end = len(body)
    while end and (
        body[end - 1].isspace() or body[end - 1] in _NOISE_END or unicodedata.category(body[end - 1]) in ("So", "Sk", "Mn", "Cf")
    ):
        end -= 1  # also a trailing emoji: "approve all 👍"
    return body[:end]


def read_weak_command(
    action: Action, rest: str, text: str, row_count: int, index: IdIndex, *, nested: bool = False
) -> Command | str | None:
    """ "ok 1" or "no 2: reason" is a command; "OK thanks" and "No problem" are prose. What
    follows is read as any command is, its reason checked too ("Yes, approve 1 - reject 2")."""
    inner = parse_line(rest.lstrip(" ,;:!-–—"), row_count, index, weak=False, nested=nested)
    if isinstance(inner, Command):
        return replace(inner, text=text)  # "Yes, approve all"
    if inner is not None:
        return inner
    part, reason = split_reason(rest)
    targets, error, target_shaped = read_targets(part, row_count, index)
    if not target_shaped or (targets == () and not error):
        return None
    return error or Command(action, targets, reason, text)


def diagnose_typo(word: str, rest: str, row_count: int, index: IdIndex) -> str | None:
    """A problem for "aprove 1", "rejct 2" or a lone "approv"; None for ordinary prose."""
    from difflib import SequenceMatcher

    if len(word) < 3 or word[0] not in "arh" or len(word) > 20:
        return None
    targets, _, target_shaped = read_targets(split_reason(rest)[0], row_count, index)
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


def split_free_reason(part: str, row_count: int, index: IdIndex) -> tuple[str, str]:
    """("4", "пока Contoso …") for "4 пока Contoso …": items first, then words that are not
    items; ("4 пока", "") unchanged when no item comes first."""
    seen_target = False
    for token in _FREE_TOKEN.finditer(part):
        word = token.group(0).strip("()[]\"'.!?").lstrip("#")
        folded = word.casefold()
        if not word or folded in _FILLERS or folded in _ALL:
            continue
        cjk = _CJK.search(word)
        if cjk and cjk.start() > 0 and read_rows(word[: cjk.start()], row_count)[0]:
            return part[: token.start() + cjk.start()].strip(), part[token.start() + cjk.start() :].strip()  # "4等…"
        is_target = bool(read_rows(unicodedata.normalize("NFKC", word), row_count)[0]) or index.resolve(word)[0] is not None
        if is_target:
            seen_target = True
        elif seen_target:
            return part[: token.start()].strip(), part[token.start() :].strip(" ,;，、")
        else:
            break
    return part, ""


def split_reason(rest: str) -> tuple[str, str]:
    """Split "1, 3 - 4: no PO on file" into ("1, 3-4", "no PO on file")."""
    rest = _SPACED_RANGE.sub(r"\1-\2", rest)
    match = _REASON_START.search(rest)
    if match is None:
        return rest.strip(), ""
    reason = rest[match.end() :].strip(" :-–—\t")
    if match.group(0) == "(":
        reason = reason[:-1].rstrip() if reason.endswith(")") else reason
    elif match.group(0).isalpha() and match.group(0).lower() not in ("because", "since", "due to"):
        reason = match.group(0) + " " + reason  # "until the PO arrives" keeps its "until"
    return rest[: match.start()].strip(), reason


def read_targets(part: str, row_count: int, index: IdIndex) -> tuple[tuple[str, ...] | None, str, bool]:
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
        rows, problem = read_rows(unicodedata.normalize("NFKC", token) if not token.isascii() else token, row_count)
        if rows and token in index.exact and index.row_of.get(token) != int(rows[0]):
            error = error or f"{token} is item {token} and also the id of item {index.row_of[token]}; write the other item's number"
            continue
        if rows:
            targets.extend(rows)
            continue
        known, ambiguous = index.resolve(token)
        if known is not None:
            targets.append(known)
        elif ambiguous:
            error = error or ambiguous
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
