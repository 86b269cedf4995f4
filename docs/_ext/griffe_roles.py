"""A griffe extension for the API reference (mkdocs.yml loads it).

acidic's docstrings are written the Sphinx way: roles (``:class:`App```), ``::``
literal blocks, definition lists, and ``#:`` comments documenting attributes. This
turns them into what mkdocstrings renders as Markdown: a role becomes a link to the
object (plain code when the object is not in the reference), a literal block a fenced
Python block, a definition list a bulleted one, and a ``#:`` comment the attribute's
docstring. The source files stay as they are.
"""

from __future__ import annotations

import re
import textwrap
from typing import Any

import griffe

_TERM = re.compile(r"^``[^`]+``$")
_ROLE = re.compile(r":(?:class|meth|func|attr|exc|data|mod|obj):`(~?)([\w.]+)`")


def _target(obj: griffe.Object, name: str) -> str:
    """The full path of ``name`` as seen from ``obj``; ``name`` itself when unknown."""
    head, _, rest = name.partition(".")
    try:
        found = obj.resolve(head)
    except (griffe.NameResolutionError, AttributeError):
        return name
    return f"{found}.{rest}" if rest else found


def _role(obj: griffe.Object, match: re.Match[str]) -> str:
    short, name = match.group(1) == "~", match.group(2)
    shown = name.rsplit(".", 1)[-1] if short else name
    # "optional": autorefs links the name when the object is rendered somewhere in the
    # site, and leaves it as code (no warning) when it is not, e.g. a private helper.
    return f'<autoref identifier="{_target(obj, name)}" optional><code>{shown}</code></autoref>'


def _definition_lists(text: str) -> str:
    """reST definition lists (a line ````term```` then indented lines) -> Markdown bullets."""
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if _TERM.match(line) and i + 1 < len(lines) and lines[i + 1].startswith("    "):
            j = i + 1
            body: list[str] = []
            while j < len(lines) and lines[j].startswith("    "):
                body.append(lines[j].strip())
                j += 1
            if out and out[-1].strip() and not out[-1].startswith("- "):
                out.append("")
            out.append(f"- {line}: " + " ".join(body))
            i = j
            continue
        out.append(line)
        i += 1
    return "\n".join(out)


def _comment_docstring(obj: griffe.Object) -> str | None:
    """The ``#:`` comment lines right above an attribute, as its docstring."""
    if obj.lineno is None or not obj.filepath or isinstance(obj.filepath, list):
        return None
    try:
        lines = obj.lines_collection[obj.filepath]
    except KeyError:
        return None
    found: list[str] = []
    n = obj.lineno - 2  # the line above, 0-based
    while n >= 0 and lines[n].strip().startswith("#:"):
        found.insert(0, lines[n].strip()[2:].strip())
        n -= 1
    return " ".join(found) or None


def _literal_blocks(text: str) -> str:
    """reST ``::`` paragraphs followed by an indented block -> a fenced code block."""
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.rstrip().endswith("::"):
            stripped = line.rstrip()[:-2].rstrip()
            if stripped:
                out.append(stripped + ":")
            j = i + 1
            while j < len(lines) and not lines[j].strip():
                j += 1
            block: list[str] = []
            while j < len(lines) and (not lines[j].strip() or lines[j].startswith((" ", "\t"))):
                block.append(lines[j])
                j += 1
            while block and not block[-1].strip():
                block.pop()
            if block:
                if out and out[-1].strip():
                    out.append("")
                out += ["```python", *textwrap.dedent("\n".join(block)).split("\n"), "```", ""]
                i = j
                continue
        out.append(line)
        i += 1
    return "\n".join(out)


class SphinxRoles(griffe.Extension):
    """Rewrite every docstring of the loaded package once it is fully loaded."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        self._walk(pkg, set())

    def _walk(self, obj: griffe.Object, seen: set[str]) -> None:
        if obj.path in seen:
            return
        seen.add(obj.path)
        if obj.docstring is None and obj.is_attribute:
            comment = _comment_docstring(obj)
            if comment:
                obj.docstring = griffe.Docstring(comment, parent=obj)
        if obj.docstring is not None:
            text = _definition_lists(_literal_blocks(obj.docstring.value))
            obj.docstring.value = _ROLE.sub(lambda m: _role(obj, m), text)
        for member in obj.members.values():
            if not member.is_alias:
                self._walk(member, seen)  # type: ignore[arg-type]
