"""The new text of a reply: what the approver wrote, without anything quoted.

Quoted text, above all our own request quoted back (with or without markers), must never
become a command. `extract_new_text` keeps the approver's own lines, top-posted, bottom-posted
or written between quoted lines, and drops:

* every line quoted with `>` or `|`;
* a quote header (an attribution such as "On ... wrote:" in many languages, also wrapped over
  up to three lines, or date-first as "2026-11-24 9:12 GMT+01:00 Name <addr>:") together
  with the marked quote under it; when the quote under it is not marked, everything after it;
* everything after a separator ("-----Original Message-----", "-------- Original message
  --------", "原始邮件", a forward marker, a `____` rule before a header block) or after a
  header block ("From:/Sent:/To:" or "Date:/To:/Subject:" without From, in many languages,
  decorated with `*` or `_` or not, or any three "Label: value" lines naming an address and
  a date);
* a line squeezed between two quoted lines (a command there is kept, marked, so that the
  reply is unclear rather than decided);
* a signature after "-- " and everything after a mobile footer ("Sent from my iPhone");
* every line equal, after normalising, to a line of a message we sent in the thread.

HTML is read only when there is no plain part (`htmltext.convert_html_to_text`). Everything
here is pure and linear in the length of the text: patterns are anchored and applied to
lines of bounded length.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Collection, Sequence

from job.mail.htmltext import convert_html_to_text

__all__ = ["extract_new_text", "collect_sent_lines", "normalize_line", "MAX_BODY"]

MAX_BODY = 1_000_000  # characters read from each part; new text is at the top anyway
MAX_HEADER_LINE = 300
BETWEEN_QUOTES = "(between quoted lines, no blank line around it)"  # a command that may be part of the quote
INDENTED = "(indented like a quote)"  # longer lines are not quote headers or separators

_ATTRIBUTION_VERB = re.compile(
    r"(?:\bwrote|\bwrites|\bsaid|\ba [ée]crit|\bescribi[óo]|\bha scritto|\bescreveu|\bpisze|\bnapisa[łl](?:\(a\))?"
    r"|\bнаписал(?:\(а\)|а)?|\bпишет|\bпише|\bнаписа(?:в|ла)(?:\(ла\))?|\bnapsal(?:\(a\)|a)?|\bskrev|\bschrieb"
    r"|\bschreef|\bgeschreven|\bkirjoitti|\byazd[ıi]|\bírta|\bscrise|\bέγραψε|\bkirjutas|\brašė|\brakstīja"
    r"|\ba scris|\bva escriure|\bmenulis|\bnapísal(?:\(a\)|a)?|\bje napisao|\bje napisala|\bnapisao|\bnapisala"
    r"|\bnapisal(?:\(a\)|a)?|\bparašė|\bkirjoittaa|\bskrifaði|\bhat geschrieben|\bnapisa|\bнаписа|\bwrote on"
    r"|写道|寫道|のメール|님이\s*작성|작성|\bviết|เขียน|כתב|כתבה|كتب|نوشت|लिखा)"
    r"\s*[:：]?\s*$"
    r"|\b(?:schrieb|schreef|skrev|kirjoitti|írta|escribió|a écrit)\b.{0,200}[:：]\s*$",  # verb before the name
    re.IGNORECASE,
)
# an attribution that names no verb ends with ":" right after an address, a date or a time
_ADDRESS_END = re.compile(  # character classes that do not overlap, so a long line of '@' stays linear
    r"(?:<[^<>\s@]*@[^<>\s@]*>|\[mailto:[^\]\s]*\]|\([^()\s@]*@[^()\s@]*\)|[^\s<>@]+@[^\s<>@]+>?)\s*[:：]\s*$"
)
_DATE = re.compile(r"\d{1,4}\s*[./\-年]\s*\d{1,2}|\d{1,2}:\d{2}|\b(?:19|20)\d{2}\b")
_SEPARATOR = re.compile(
    r"^[\s*_>|]*(?:-{2,}|={2,}|_{2,}|\*{2,})\s*(?:original message|ursprüngliche nachricht|original-nachricht"
    r"|message d'origine|message original|mensaje original|mensagem original|messaggio originale|oorspronkelijk bericht"
    r"|oorspronkelijk|originalmeddelande|opprinnelig melding|oprindelig meddelelse|alkuperäinen viesti|wiadomość oryginalna"
    r"|původní zpráva|исходное сообщение|пересылаемое сообщение|оригинальное сообщение|вихідне повідомлення"
    r"|оригінальне повідомлення|原始邮件|原始郵件|原始信件|元のメッセージ|転送されたメッセージ|원본 메시지|orijinal mesaj"
    r"|özgün ileti|forwarded message|weitergeleitete nachricht|message transféré|mensaje reenviado|doorgestuurd bericht"
    r"|reply message|replied message|転送メッセージ|původní e-mail|původní zpráva|eredeti üzenet).*$",
    re.IGNORECASE,
)
_FORWARD_MARKER = re.compile(
    r"^(?:begin forwarded message|forwarded message|forwarded|fwd|début du message réexpédié|anfang der weitergeleiteten nachricht"
    r"|inicio del mensaje reenviado|início da mensagem reencaminhada|begin doorgestuurd bericht)\s*:?\s*$",
    re.IGNORECASE,
)
_OPENER = re.compile(r"^(?:on|am|le|el|op|il|em|den|w dniu|dne|в|у|在|при|na|the|po|el día|le jour)\b", re.IGNORECASE)
_BRACKETED_ADDRESS = re.compile(r"<[^<>\s@]+@[^<>\s@]+>|\([^()\s@]+@[^()\s@]+\)|\[mailto:[^\]\s]+\]")
_WRITING_VERB = re.compile(
    r"\b(?:wrote|writes|said|says|quoting|schrieb|a écrit|escribió|scrisse|schreef|skrev|napsal|пишет|написал)\b", re.IGNORECASE
)
_RULE = re.compile(r"^\s*(?:_{8,}|-{8,}|={8,}|—{4,})\s*$")
_FIELD_LABELS = (
    "from|sent|date|to|cc|bcc|subject|reply-to|von|gesendet|datum|an|betreff|cc|de|envoyé|envoye|à|a|objet|date|para"
    "|enviado|fecha|asunto|assunto|data|da|inviato|oggetto|van|verzonden|aan|onderwerp|datum|fra|sendt|til|emne|dato"
    "|från|skickat|till|ämne|od|wysłano|wysłany|do|temat|data|lähettäjä|lähetetty|päivämäärä|vastaanottaja|aihe|kopio"
    "|от|отправлено|дата|кому|копия|тема|від|надіслано|копія|kimden|gönderildi|gönderim|tarih|kime|bilgi|konu"
    "|odesláno|komu|předmět|kopie|feladó|küldve|címzett|tárgy|发件人|發件人|寄件者|发送时间|發送時間|寄件日期|收件人"
    "|de la|trimis|către|subiect|από|αποστολή|προς|θέμα|изпратено|до|относно|šalje|poslano|prima|predmet|từ|đã gửi"
    "|đến|chủ đề|dari|dikirim|kepada|perihal|nuo|išsiųsta|kam|מאת|נשלח|אל|נושא|از|ارسال|به|موضوع|odoslané"
    "|收件者|抄送|副本|主题|主題|主旨|日期|时间|差出人|送信日時|宛先|件名|日付|送信者|보낸 사람|보낸 날짜|받는 사람|참조|제목|날짜"
)
_HEADER_FIELD = re.compile(r"^[\s*_>]*(?:" + _FIELD_LABELS + r")[\s*_]*[:：]", re.IGNORECASE)
_FROM_FIELD = re.compile(
    r"^[\s*_]*(?:from|von|de|de la|fra|från|van|da|od|lähettäjä|от|від|kimden|feladó|发件人|發件人|寄件者|差出人|送信者|보낸 사람"
    r"|από|šalje|từ|dari|nuo|מאת|از)"
    r"[\s*_]*[:：]",
    re.IGNORECASE,
)
_APP_FOOTER = re.compile(
    r"(?:iphone|ipad|android|galaxy|스마트폰|아이폰)[^\n]{0,20}(?:에서 보냄|에서 보냈습니다|から送信)|发自网易邮箱|发自我的|來自我的|"
    r"^(?:sent from|envoyé de|enviado desde|von meinem|verzonden met)\b[^\n]{0,40}$"
)
_FOOTER = re.compile(
    r"^(?:sent from my\b|sent from (?:outlook|yahoo mail|mail for windows|gmail|proton mail|protonmail|samsung)\b|sent via\b"
    r"|sent with proton|get outlook for\b|envoyé de mon\b|envoyé depuis mon\b|envoyé à partir de\b|von meinem\b.*\bgesendet"
    r"|gesendet von meinem\b|gesendet mit\b|sendt fra min\b|sendt fra\b|skickat från min\b|enviado desde mi\b|enviado do meu\b"
    r"|enviado desde\b|inviato da\b|inviato dal mio\b|verzonden (?:met|vanaf) mijn\b|verstuurd vanaf mijn\b|wysłane z\b"
    r"|отправлено из\b|отправлено с\b|надіслано з\b|відправлено з\b|lähetetty\b.*\b(?:iphone|android|puhelimesta)"
    r"|odesláno z\b|iphone'umdan gönderildi|android'imden gönderildi|发自我的|發自我的|从我的|來自我的|iphoneから送信"
    r"|androidから送信|iphone에서 보냄|갤럭시에서 보냄|my phone)",
    re.IGNORECASE,
)


def extract_new_text(
    plain: str | None,
    html: str | None,
    sent_texts: Sequence[str],
    *,
    sent_lines: Collection[str] | None = None,
    is_command: Callable[[str], bool] | None = None,
) -> str:
    """Return the lines of a reply that the approver wrote, without anything quoted.

    `sent_lines` (from `collect_sent_lines`) may stand in for `sent_texts` when the caller
    checks many replies against the same sent messages. `is_command` tells lines that read
    as commands, which are never taken for a wrapped part of a quote header.
    """
    if plain and plain.strip():
        text = plain[:MAX_BODY]
    else:
        text = convert_html_to_text((html or "")[:MAX_BODY])
    lines = text.splitlines()
    lines = lines[: find_signature_start(lines)]
    kept = keep_own_lines(lines, is_command or (lambda line: False))
    sent = sent_lines if sent_lines is not None else collect_sent_lines(sent_texts)
    return "\n".join(line for line in kept if normalize_line(line) not in sent)


def normalize_line(line: str) -> str:
    """Fold a line for comparing it with the lines of a message we sent."""
    return " ".join(unicodedata.normalize("NFKC", line).split()).casefold().lstrip("> -*•·").strip()


def collect_sent_lines(sent_texts: Sequence[str]) -> frozenset[str]:
    """The normalised non-empty lines of the messages we sent, for dropping them from replies."""
    lines = (normalize_line(line) for text in sent_texts for line in text.splitlines())
    return frozenset(line for line in lines if line)


def is_marked(line: str) -> bool:
    """A line quoted with ">" or "|" markers."""
    stripped = line.lstrip()
    return stripped.startswith((">", "|", "＞"))


def keep_own_lines(lines: Sequence[str], is_command: Callable[[str], bool]) -> list[str]:
    """The lines that are neither quoted nor a quote header, in order."""
    kept: list[str] = []
    for i, line in enumerate(lines):
        if is_marked(line):
            continue
        if is_sandwiched(lines, i):
            if is_command(line):  # the approver's or the quote's? it cannot decide either way
                kept.append(f"{BETWEEN_QUOTES} {line.strip()}")
            continue
        if line.startswith(("\t", "    ")) and is_command(line):  # an indented quote, or not: never decides
            kept.append(f"{INDENTED} {line.strip()}")
            continue
        if starts_unmarked_quote(lines, i):
            break
        span = header_span(lines, i, is_command) or (1 if names_a_sender(line.strip()) else 0)
        if span:
            del kept[len(kept) - (span - 1) :]  # the wrapped start of the header
            follows = next_text_line(lines, i + 1)
            if follows is not None and is_marked(lines[follows]):
                continue  # a marked quote: what follows it is the approver's again
            break  # an unmarked quote follows: everything from here is quoted
        kept.append(line)
    return kept


def next_text_line(lines: Sequence[str], i: int) -> int | None:
    """Index of the next non-blank line at or after i, or None."""
    while i < len(lines):
        if lines[i].strip():
            return i
        i += 1
    return None


def starts_unmarked_quote(lines: Sequence[str], i: int) -> bool:
    """A separator, a forward marker or a header block: everything from here is quoted."""
    stripped = lines[i].strip()
    if not stripped or len(stripped) > MAX_HEADER_LINE:
        return False
    if _SEPARATOR.match(stripped) or _FORWARD_MARKER.match(stripped):
        return True
    if is_dashed_title(stripped):
        return True
    if _RULE.match(stripped):
        following = next_text_line(lines, i + 1)
        return following is not None and following - i <= 2 and bool(_HEADER_FIELD.match(lines[following].strip()))
    return is_header_block(lines, i)


def names_a_sender(stripped: str) -> bool:
    """A line that introduces someone's message, in any wording: it holds an address in angle
    brackets, parentheses or [mailto:], and ends with ':' or a dashed rule, names a verb of
    writing, or is a lone "From:" field ("Quoting Bob <bob@x.com>:", "---- On … Bob <bob@x.com>
    wrote ----", "Bob (bob@x.com) said on 12/3/2026:", "From: Bob <bob@x.com>")."""
    if "@" not in stripped or not _BRACKETED_ADDRESS.search(stripped):
        return False
    return stripped.endswith((":", "：", "--")) or bool(_FROM_FIELD.match(stripped)) or bool(_WRITING_VERB.search(stripped))


def is_dashed_title(stripped: str) -> bool:
    """ "---------- Původní e-mail ----------", "-----&nbsp;原始邮件&nbsp;-----": a few words
    between two runs of dashes, the way mail clients title a quoted or forwarded message."""
    text = stripped.replace("&nbsp;", " ")
    if not (text.startswith("---") and text.endswith("---")):
        return False
    inner = text.strip("- ")
    return 0 < len(inner) <= 60 and len(inner.split()) <= 6 and "-" not in inner.replace("e-mail", "")


def is_header_block(lines: Sequence[str], i: int) -> bool:
    """ "From:" followed within a few lines by another header field, or two header fields
    ("Date:", "To:", "Subject:", ...) one after the other without a "From:", or, in any
    language, three or more short "Label: value" lines naming an address and a date."""
    stripped = lines[i].strip()
    if len(stripped) > MAX_HEADER_LINE:
        return False
    if not _HEADER_FIELD.match(stripped):
        return is_foreign_header_block(lines, i)
    window = [line.strip() for line in lines[i + 1 : i + 6]]
    window = window[: next((n for n, line in enumerate(window) if is_marked(line)), len(window))]  # not into a quote below
    if _FROM_FIELD.match(stripped):
        return any(_HEADER_FIELD.match(line) for line in window if len(line) <= MAX_HEADER_LINE)
    following = [line for line in window[:3] if line][:2]
    return len(following) == 2 and all(len(line) <= MAX_HEADER_LINE and _HEADER_FIELD.match(line) for line in following)


def is_foreign_header_block(lines: Sequence[str], i: int) -> bool:
    """Three to six "Label: value" lines in a row (labels of at most three words of letters),
    one with an address and one with a date: a quoted message's header in a language we do
    not list."""
    block = []
    for line in lines[i : i + 6]:
        stripped = line.strip()
        label, colon, value = stripped.partition(":") if ":" in stripped[:40] else stripped.partition("：")
        words = label.replace("*", " ").replace("_", " ").split()
        if not colon or not value.strip() or not words or len(words) > 3 or len(stripped) > MAX_HEADER_LINE:
            break
        if not all(word.replace("-", "").replace(".", "").isalpha() for word in words):
            break
        block.append(value)
    return len(block) >= 3 and any("@" in v for v in block) and any(_DATE.search(v) for v in block)


def is_sandwiched(lines: Sequence[str], i: int) -> bool:
    """A line between two quoted lines, with no blank line around it: maybe a quoted line that
    lost its marker when the client wrapped it, maybe an inline answer. Prose there is dropped;
    a command is kept, marked, so that the reply is unclear rather than decided."""
    return 0 < i < len(lines) - 1 and is_marked(lines[i - 1]) and is_marked(lines[i + 1]) and bool(lines[i].strip())


def header_span(lines: Sequence[str], i: int, is_command: Callable[[str], bool]) -> int:
    """How many lines (1 to 3, ending at line i) form a quote header ending at i; 0 if none.

    A header ends with an attribution verb ("wrote:", "schrieb:", "пишет:", "写道：") or,
    when a marked quote follows, with ":" after an address or a date. A wrapped header takes
    the lines above it only while they carry a date or address, read as no command and do
    not end a sentence, so the approver's last line above a header stays theirs.
    """
    stripped = lines[i].strip()
    if not stripped or len(stripped) > MAX_HEADER_LINE:
        return 0
    if not stripped.endswith((":", "：")):
        # "On Mon, Nov 24, 2026 at 9:12 AM Audit <audit@x.com> wrote", its colon lost
        return 1 if _OPENER.match(stripped) and _DATE.search(stripped) and _ATTRIBUTION_VERB.search(stripped + ":") else 0
    verb = bool(_ATTRIBUTION_VERB.search(stripped))
    above_line = lines[i - 1].strip() if i else ""
    if len(above_line) > MAX_HEADER_LINE:
        above_line = ""
    split_verb = False  # the verb itself wrapped: "... a" / "écrit :"
    if not verb and above_line and len(stripped) <= 40 and not is_command(above_line):
        verb = split_verb = bool(_ATTRIBUTION_VERB.search(above_line + " " + stripped))
    follows = next_text_line(lines, i + 1)
    # a quote below, or none at all (an HTML quote already dropped)
    marked_next = follows is None or is_marked(lines[follows])
    if not verb and not (marked_next and (_ADDRESS_END.search(stripped) or _DATE.search(stripped))):
        return 0
    span = 1
    joined = stripped
    while span < 3 and i - span >= 0:
        above = lines[i - span].strip()
        if not above or is_marked(lines[i - span]) or above.endswith((".", "!", "?", ";", ":", "。", "！", "？")):
            break
        if len(above) + len(joined) > MAX_HEADER_LINE or is_command(above):
            break
        if not (_DATE.search(above) or "@" in above or above.endswith("<") or (split_verb and span == 1)):
            break
        joined = above + " " + joined
        span += 1
    if verb and not (_DATE.search(joined) or "@" in joined or marked_next or _OPENER.match(joined) or _OPENER.match(stripped)):
        return 0  # "As I wrote:" is prose
    return span


def find_signature_start(lines: Sequence[str]) -> int:
    """Index of a "-- " signature marker or a mobile footer, or len(lines)."""
    for i, line in enumerate(lines):
        stripped = line.strip()
        if stripped == "--" or (len(stripped) <= MAX_HEADER_LINE and (_FOOTER.match(stripped) or is_app_footer(stripped))):
            return i
    return len(lines)


def is_app_footer(stripped: str) -> bool:
    """A mail app's line under the new text in any language: "Outlook für iOS herunterladen",
    "나의 iPhone에서 보냄", "Galaxy 스마트폰에서 보냈습니다.", "发自网易邮箱大师"."""
    if len(stripped) > 120:
        return False
    folded = stripped.casefold()
    if "outlook" in folded and ("ios" in folded or "android" in folded) and len(folded.split()) <= 10:
        return True
    return bool(_APP_FOOTER.search(folded))
