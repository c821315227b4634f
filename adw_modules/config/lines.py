"""Where in config.toml a table or key is written, so a semantic error can name the line.

tomlkit reports positions only for syntax errors; validation works on the parsed data and
names a table path (``routing.rules[1] "docs-haiku".conditions``).  ``LineIndex`` scans the
text once for table headers and ``key =`` lines and maps such a path back to a line: the key
the message is about when it names one, else the nearest enclosing table or key.
"""

from __future__ import annotations

import re

_HEADER = re.compile(r"^\s*(\[\[?)\s*(.+?)\s*\]\]?\s*(#.*)?$")
_BARE_KEY = r"[A-Za-z0-9_-]+"
_KEY_PART = rf'(?:{_BARE_KEY}|"(?:[^"\\]|\\.)*"|\'[^\']*\')'
_ASSIGNMENT = re.compile(rf"^\s*({_KEY_PART}(?:\s*\.\s*{_KEY_PART})*)\s*=")
# A part ends at a dot, the end, or a space before a qualifier (`model_select candidates[0]`).
_WHERE_PART = re.compile(rf'\s*({_BARE_KEY}|"(?:[^"\\]|\\.)*")(\[\d+\])?(?:\s+"(?:[^"\\]|\\.)*")?\s*(?:\.|$|(?<=\s))')
_LEADING_KEY = re.compile(r"^([A-Za-z_][A-Za-z0-9_-]*)\b")
# 'unknown key "timout" (did you mean …)': the key is the quoted word, not the leading one.
_UNKNOWN_KEY = re.compile(r'^unknown [\w -]+? "((?:[^"\\]|\\.)+)"')

Path = tuple[str, ...]


def _split_dotted(text: str) -> Path:
    parts = re.findall(_KEY_PART, text)
    return tuple(p[1:-1] if p[:1] in "\"'" else p for p in parts)


def parse_where(where: str) -> Path:
    """``routing.rules[1] "docs-haiku".conditions`` -> ("routing", "rules", "1", "conditions")."""
    parts: list[str] = []
    pos = 0
    while pos < len(where):
        m = _WHERE_PART.match(where, pos)
        if m is None or m.end() == pos:
            break
        key = m.group(1)
        parts.append(key[1:-1] if key.startswith('"') else key)
        if m.group(2):
            parts.append(m.group(2)[1:-1])
        pos = m.end()
    return tuple(parts)


class LineIndex:
    """Line numbers (1-based) of every table header and ``key =`` line of a TOML text."""

    def __init__(self, text: str) -> None:
        self.lines: dict[Path, int] = {}
        arrays: dict[Path, int] = {}
        table: Path = ()
        depth = 0  # open brackets/braces of a value spanning lines
        in_string = False  # inside a multi-line string
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.strip()
            if in_string:
                in_string = line.count('"""') % 2 == 0 and line.count("'''") % 2 == 0
                continue
            if depth > 0:
                depth = max(0, depth + _balance(line))
                continue
            header = _HEADER.match(line)
            if header is not None:
                path = _split_dotted(header.group(2))
                if header.group(1) == "[[":
                    index = arrays.get(path, -1) + 1
                    arrays[path] = index
                    path = (*path, str(index))
                table = path
                self.lines.setdefault(table, number)
                continue
            assignment = _ASSIGNMENT.match(line)
            if assignment is None:
                continue
            self.lines.setdefault((*table, *_split_dotted(assignment.group(1))), number)
            value = line[assignment.end() :]
            if value.count('"""') % 2 == 1 or value.count("'''") % 2 == 1:
                in_string = True
            depth = max(0, _balance(value))

    def line_of(self, where: str, message: str = "") -> int | None:
        """The line a problem at ``where`` (a table path) described by ``message`` is on."""
        path = parse_where(where)
        for found in (_UNKNOWN_KEY.match(message), _LEADING_KEY.match(message)):
            if found is not None and (*path, found.group(1)) in self.lines:
                return self.lines[(*path, found.group(1))]
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return None


def _balance(text: str) -> int:
    """Opened minus closed brackets and braces outside strings and comments (roughly)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'[^\']*\'', "", text).split("#", 1)[0]
    return text.count("[") + text.count("{") - text.count("]") - text.count("}")
