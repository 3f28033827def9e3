"""XML text and attribute quoting for target.xml and qXfer:threads (``xml.sax.saxutils``'s
``escape``/``quoteattr``, the same output, without importing ``xml.sax``, which pulls in
``urllib.request``, ``http`` and ``ssl``: a tenth of the start-up time)."""

from __future__ import annotations


def escape(data: str) -> str:
    """``&``, ``<`` and ``>`` as entities (saxutils.escape)."""
    return data.replace("&", "&amp;").replace(">", "&gt;").replace("<", "&lt;")


def quoteattr(data: str) -> str:
    """An attribute value with its quotes (saxutils.quoteattr): newlines and tabs as character
    references; double quotes unless the value holds one and no single quote."""
    data = escape(data).replace("\n", "&#10;").replace("\r", "&#13;").replace("\t", "&#9;")
    if '"' in data:
        if "'" in data:
            return '"{}"'.format(data.replace('"', "&quot;"))
        return f"'{data}'"
    return f'"{data}"'
