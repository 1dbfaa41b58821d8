"""The text a reader of an HTML reply actually sees, without the quoted message.

Only what is rendered visibly counts: `<head>`, `<style>`, `<script>`, `<template>`, comments
and every element a mail client would not show (`display:none`, `visibility:hidden`,
`hidden`, zero font size, zero opacity, zero width or height with hidden overflow,
`mso-hide:all`, text pushed far off-screen, text coloured like its background) are left out,
also when a `<style>` block hides them by class, id or tag. Quote containers (blockquote,
Gmail, Yahoo, Thunderbird, Outlook) are dropped, and Outlook's reply header ends the text.

A pure function over a string; linear in its length (the CSS is read with `str` methods,
never with a backtracking expression).
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

__all__ = ["convert_html_to_text"]

_SPACES = re.compile(r"[ \t\r\n\f]+")
_BORDER_TOP = re.compile(r"border-top\s*:", re.IGNORECASE)
_BORDER_LEFT = re.compile(r"border-left\s*:\s*[^;]*(?:solid|[0-9]px)", re.IGNORECASE)
MAX_HTML = 150_000  # characters of HTML read: the new text is at the top, and the parser is slow on some markup

_NAMED_COLORS = {
    "white": "ffffff",
    "black": "000000",
    "red": "ff0000",
    "green": "008000",
    "blue": "0000ff",
    "yellow": "ffff00",
    "gray": "808080",
    "grey": "808080",
    "silver": "c0c0c0",
    "whitesmoke": "f5f5f5",
    "snow": "fffafa",
    "ivory": "fffff0",
    "ghostwhite": "f8f8ff",
    "transparent": "transparent",
}

SKIP_TAGS = frozenset(
    {
        "blockquote",
        "style",
        "script",
        "head",
        "title",
        "template",
        "noscript",
        "object",
        "iframe",
        "noframes",
        "svg",
        "math",
        "del",
        "s",
        "strike",
        "details",
        "select",
        "textarea",
        "button",
    }
)
# Gmail's quote is its <blockquote>; what its "gmail_quote" <div> holds besides that and the
# attribution is the approver's own inline answers
QUOTE_CLASSES = ("gmail_attr", "yahoo_quoted", "moz-cite-prefix", "protonmail_quote", "zmail_extra", "ms-outlook-mobile-reference-message")
STOP_IDS = frozenset({"divrplyfwdmsg", "appendonsend", "mail-editor-reference-message-container"})
BREAK_TAGS = frozenset("br p div tr li ul ol table hr pre h1 h2 h3 h4 h5 h6 dl dt dd section article header footer".split())
VOID_TAGS = frozenset("br hr img meta link input wbr area base col embed source param track keygen".split())


def parse_declarations(style: str) -> dict[str, str]:
    """`a: b; c: d` as {"a": "b", "c": "d"}, names lower-cased, `!important` dropped."""
    found: dict[str, str] = {}
    for declaration in style.split(";"):
        name, colon, value = declaration.partition(":")
        if colon:
            found[name.strip().lower()] = value.replace("!important", "").strip().lower()
    return found


def normalize_color(value: str) -> str | None:
    """A CSS colour as six hex digits ("transparent" kept), or None if not understood."""
    value = value.strip().lower()
    if value in _NAMED_COLORS:
        return _NAMED_COLORS[value]
    if value.startswith("#"):
        digits = value[1:]
        if not all(c in "0123456789abcdef" for c in digits) or len(digits) not in (3, 4, 6, 8):
            return None
        if len(digits) in (3, 4):
            digits = "".join(c * 2 for c in digits)
        if len(digits) == 8 and int(digits[6:], 16) < 52:  # alpha under 20%
            return "transparent"
        return digits[:6]
    if value.startswith(("rgb(", "rgba(", "hsl(", "hsla(")):
        inner = value[value.index("(") + 1 :].rstrip(")").replace("/", ",")
        parts = [p.strip() for p in inner.replace(" ", ",").split(",") if p.strip()]
        try:
            if len(parts) >= 4 and (float(parts[3].rstrip("%")) / (100 if parts[3].endswith("%") else 1)) < 0.2:
                return "transparent"
            if value.startswith("hsl"):
                lightness = float(parts[2].rstrip("%")) / 100
                gray = round(255 * lightness)  # hue and saturation matter little next to lightness here
                return f"{gray:02x}" * 3
            channels = [round(float(p[:-1]) * 2.55) if p.endswith("%") else int(float(p)) for p in parts[:3]]
        except (ValueError, IndexError):
            return None
        return "".join(f"{max(0, min(255, c)):02x}" for c in channels) if len(channels) == 3 else None
    return None


def looks_alike(color: str, background: str) -> bool:
    """Text in this colour cannot be read on this background (transparent, or nearly the same)."""
    if color == "transparent":
        return True
    if background == "transparent" or len(color) != 6 or len(background) != 6:
        return False
    return sum(abs(int(color[i : i + 2], 16) - int(background[i : i + 2], 16)) for i in (0, 2, 4)) < 48


def _is_zero(value: str) -> bool:
    """True for a CSS length or number that is zero ("0", "0px", ".0em", "0%")."""
    number = value.strip().lower()
    for unit in ("px", "pt", "em", "rem", "%", "ex", "ch", "vw", "vh", "cm", "mm", "in", "pc"):
        if number.endswith(unit):
            number = number[: -len(unit)]
            break
    try:
        return float(number) == 0
    except ValueError:
        return False


def _pixels(value: str) -> float | None:
    """A CSS length in pixels (em and rem as 16 px, pt as 4/3 px); None for % and the rest."""
    number = value.strip().lower()
    for unit, scale in (
        ("px", 1.0),
        ("pt", 4 / 3),
        ("rem", 16.0),
        ("em", 16.0),
        ("pc", 16.0),
        ("mm", 3.78),
        ("cm", 37.8),
        ("in", 96.0),
        ("vw", 12.0),
        ("vh", 8.0),
        ("", 1.0),
    ):
        if number.endswith(unit):
            try:
                return float(number[: len(number) - len(unit)]) * scale
            except ValueError:
                return None
    return None


def _float(text: str, default: float) -> float:
    try:
        return float(text.strip())
    except ValueError:
        return default


def _tiny(value: str, limit: float) -> bool:
    """A length under `limit` pixels (zero included)."""
    pixels = _pixels(value)
    return pixels is not None and pixels < limit


def hides(declarations: dict[str, str]) -> bool:
    """Whether these declarations make an element's text invisible or unreadable (colour aside)."""
    get = declarations.get
    if get("display", "").startswith("none") or get("visibility", "") in ("hidden", "collapse"):
        return True
    if get("mso-hide", "") == "all" or get("content-visibility", "") == "hidden":
        return True
    if "line-through" in get("text-decoration", "") + get("text-decoration-line", ""):
        return True  # struck out: the approver took it back
    size = get("font-size", "")
    if size and (_tiny(size, 4) or _is_zero(size) or (size.endswith("%") and _float(size[:-1], 100) < 40)):
        return True
    if (
        "opacity(" in get("filter", "").replace(" ", "")
        and _float(get("filter", "").split("opacity(")[1].split(")")[0].rstrip("%"), 1) < 0.2
    ):
        return True
    if get("clip-path", "none") not in ("none", "") or get("clip", "auto") not in ("auto", ""):
        return True  # clipped text is at best partly visible
    try:
        if "opacity" in declarations and float(get("opacity", "1").rstrip("%")) / (100 if get("opacity", "").endswith("%") else 1) < 0.2:
            return True
    except ValueError:
        pass
    clipped = any(get(n, "").startswith(("hidden", "clip")) for n in ("overflow", "overflow-x", "overflow-y"))
    if clipped and any(_tiny(get(n, "99"), 4) for n in ("height", "max-height", "width", "max-width", "line-height")):
        return True
    if (
        "rect(0" in get("clip", "").replace(" ", "")
        or "inset(50%" in get("clip-path", "").replace(" ", "")
        or "inset(100%" in get("clip-path", "").replace(" ", "")
    ):
        return True
    for name in ("text-indent", "left", "right", "top", "bottom", "margin-left", "margin-right", "margin-top"):
        value = get(name, "")
        if value.startswith("-") and (value.endswith(("%", "vw", "vh")) or (_pixels(value) or 0) <= -100):
            return True
    transform = get("transform", "").replace(" ", "")
    if any(f in transform for f in ("scale(0", "scalex(0", "scaley(0", "scale(0.0")):
        return True
    return "translate" in transform and "-" in transform and any(d in transform for d in ("999", "100%", "vw"))


def read_style_sheet(css: str) -> dict[str, dict[str, str]]:
    """Simple selectors (`.class`, `#id`, `tag`) of a `<style>` block and their declarations.

    Only the last compound of each selector counts; that errs on hiding more, which only
    removes text. `@media` blocks are read like the rest.
    """
    rules: dict[str, dict[str, str]] = {}
    kept, position = [], 0
    while (start := css.find("/*", position)) >= 0:  # comments out, in one pass
        kept.append(css[position:start])
        end = css.find("*/", start + 2)
        position = end + 2 if end >= 0 else len(css)
    kept.append(css[position:])
    for chunk in " ".join(kept).split("}"):
        selectors, brace, body = chunk.rpartition("{")
        if not brace:
            continue
        declarations = parse_declarations(body)
        for selector in selectors.split(","):
            last = selector.strip().split()[-1:] or [""]
            for simple in _simple_selectors(last[0]):
                rules.setdefault(simple, {}).update(declarations)
    return rules


def _simple_selectors(compound: str) -> list[str]:
    """ "p.a.b#c:hover" -> ["p", ".a", ".b", "#c"] (pseudo-classes dropped), lower-cased."""
    compound = compound.split(":", 1)[0].split("[", 1)[0].lower()
    out, current = [], ""
    for ch in compound:
        if ch in ".#" and current:
            out.append(current)
            current = ""
        current += ch
    if current and current not in ".#*>+~":
        out.append(current)
    return out


class _VisibleText(HTMLParser):
    """Collects visible, unquoted text; see the module docstring."""

    def __init__(self, rules: dict[str, dict[str, str]]) -> None:
        super().__init__(convert_charrefs=True)
        self.rules = rules
        self.parts: list[str] = []
        # one entry per open element: (tag, hidden, background, colour)
        self.stack: list[tuple[str, bool, str, str | None]] = []
        self.pre_depth = 0
        self.stopped = False

    def _state(self) -> tuple[bool, str, str | None]:
        if self.stack:
            _, hidden, background, color = self.stack[-1]
            return hidden, background, color
        return False, "ffffff", None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.stopped:
            return
        values = {name.lower(): (value or "") for name, value in attrs}
        if tag == "body" and self.stack and self.stack[-1][0] == "head":  # an unclosed <head>
            self.stack.pop()
        hidden, background, color = self._state()
        element_id = values.get("id", "").strip().lower()
        classes = values.get("class", "").lower().split()
        style = values.get("style", "")
        if element_id in STOP_IDS or (tag == "div" and _BORDER_TOP.search(style) and "solid" in style.lower()):
            self.stopped = True  # Outlook's reply header: the rest is the quote
            return
        if _BORDER_LEFT.search(style):
            hidden = True  # a bar down the left side: how web clients draw a quote without <blockquote>
        declarations: dict[str, str] = {}
        for key in [tag, *(f".{c}" for c in classes), *([f"#{element_id}"] if element_id else [])]:
            declarations.update(self.rules.get(key, {}))
        declarations.update(parse_declarations(style))
        if tag == "font":
            if values.get("color"):
                declarations.setdefault("color", values["color"])
            if values.get("size", "").strip() in ("0", "-7"):
                hidden = True
        if values.get("bgcolor"):
            declarations.setdefault("background-color", values["bgcolor"])
        new_background = normalize_color(declarations.get("background-color", ""))
        if new_background is None:
            for token in declarations.get("background", "").replace(",", " ").split():
                new_background = normalize_color(token)
                if new_background:
                    break
        if new_background and new_background != "transparent":
            background = new_background
        color_value = declarations.get("-webkit-text-fill-color") or declarations.get("color")
        new_color = normalize_color(color_value) if color_value else None
        if new_color:
            color = new_color
        hidden = (
            hidden
            or "hidden" in values
            or hides(declarations)
            or tag in SKIP_TAGS
            or any(name in c for c in classes for name in QUOTE_CLASSES)
        )
        if tag in VOID_TAGS:
            if tag in ("br", "hr") and not hidden:
                self.parts.append("\n")
            return
        self.stack.append((tag, hidden, background, color))
        if not hidden:
            self.parts.append("\n" if tag in BREAK_TAGS else " " if tag in ("td", "th") else "")
            if tag == "pre":
                self.pre_depth += 1

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)  # browsers ignore the '/' of '<div/>': it opens an element

    def handle_endtag(self, tag: str) -> None:
        if self.stopped:
            return
        for depth in range(len(self.stack) - 1, max(-1, len(self.stack) - 64), -1):
            if self.stack[depth][0] == tag:
                hidden = self.stack[depth][1]
                del self.stack[depth:]
                if not hidden and tag in BREAK_TAGS:
                    self.parts.append("\n")
                if tag == "pre" and self.pre_depth:
                    self.pre_depth -= 1
                return

    def handle_data(self, data: str) -> None:
        if self.stopped:
            return
        hidden, background, color = self._state()
        if hidden or (color is not None and looks_alike(color, background)):
            return
        self.parts.append(data if self.pre_depth else _SPACES.sub(" ", data))


def drop_comments(html: str) -> str:
    """The markup without comments, each ended where a browser ends it ("-->", "--!>"), in one pass."""
    kept, position = [], 0
    while (start := html.find("<!--", position)) >= 0:
        kept.append(html[position:start])
        ends = [e for e in (html.find("-->", start + 4), html.find("--!>", start + 4)) if e >= 0]
        if not ends:
            return "".join(kept)
        end = min(ends)
        position = end + (3 if html.startswith("-->", end) else 4)
    kept.append(html[position:])
    return "".join(kept)


def convert_html_to_text(html: str) -> str:
    """Visible text of an HTML body, one line per block, quoted and hidden parts left out."""
    html = html[:MAX_HTML]
    rules: dict[str, dict[str, str]] = {}
    lowered = html.lower()
    start = lowered.find("<style")
    while start >= 0:
        open_end = lowered.find(">", start)
        close = lowered.find("</style", open_end if open_end >= 0 else start)
        if open_end < 0 or close < 0:
            break
        for key, declarations in read_style_sheet(html[open_end + 1 : close]).items():
            rules.setdefault(key, {}).update(declarations)
        start = lowered.find("<style", close)
    rules = {key: d for key, d in rules.items() if hides(d) or "color" in d or "background-color" in d or "background" in d}
    parser = _VisibleText(rules)
    try:
        parser.feed(drop_comments(html))
        parser.close()
    except (AssertionError, ValueError):
        pass  # malformed markup: keep the text read before it, which is the newest part
    return "".join(parser.parts).replace("\xa0", " ")
