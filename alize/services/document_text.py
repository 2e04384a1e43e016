"""The text of an uploaded document, and its chunks: plain text and Markdown as they are,
HTML without its markup (scripts and styles dropped, blocks on lines of their own), PDF
page by page (pypdf). Chunks are whole paragraphs packed up to a size in characters; a
paragraph longer than that is cut at sentence ends, then at spaces."""

import io
import re
from html.parser import HTMLParser
from pathlib import PurePath

from alize.errors import InvalidRequest

# extension -> media type, for what this server can read
FORMATS = {
    "txt": "text/plain", "text": "text/plain", "md": "text/markdown", "markdown": "text/markdown",
    "html": "text/html", "htm": "text/html", "csv": "text/csv", "json": "application/json",
    "pdf": "application/pdf",
}
TYPES = {media: ext for ext, media in reversed(FORMATS.items())} | {"text/x-markdown": "md",
                                                                     "application/xhtml+xml": "html"}
DEFAULT_CHUNK = 1000


class UnreadableDocument(Exception):
    """The bytes are not what the document's type says (bad UTF-8, a broken PDF)."""


def kind_of(filename: str, content_type: str | None) -> tuple[str, str]:
    """(extension, media type) of an upload, from its name or else its declared type; a 400
    naming what is readable for anything else."""
    extension = PurePath(filename).suffix.lower().lstrip(".")
    if extension in FORMATS:
        return extension, FORMATS[extension]
    media = (content_type or "").split(";")[0].strip().lower()
    if media in TYPES:
        return TYPES[media], media
    shown = f".{extension}" if extension else (media or "no type")
    raise InvalidRequest(f"Documents of type {shown} are not supported: upload text (.txt), Markdown (.md), "
                         "HTML (.html), CSV, JSON or PDF", param="file")


def extract(data: bytes, media: str) -> tuple[str, int | None]:
    """The document's text and, for a PDF, its number of pages."""
    if media == "application/pdf":
        return _pdf(data)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UnreadableDocument(f"the document is not valid UTF-8 text (byte {exc.start})") from None
    return (_html(text) if media == "text/html" else text.replace("\r\n", "\n")), None


def _pdf(data: bytes) -> tuple[str, int]:
    from pypdf import PdfReader  # imported when a PDF comes: it is not needed otherwise
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(io.BytesIO(data))
        pages = [page.extract_text() or "" for page in reader.pages]
    except (PyPdfError, ValueError, KeyError, TypeError) as exc:
        raise UnreadableDocument(f"the PDF could not be read: {exc}") from None
    return "\n\n".join(p.strip() for p in pages if p.strip()), len(pages)


class _Text(HTMLParser):
    BLOCKS = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "section", "article", "pre",
              "blockquote", "table", "ul", "ol", "header", "footer", "title"}
    SKIPPED = {"script", "style", "noscript", "template", "head"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.SKIPPED and tag != "head":
            self.skipping += 1
        elif tag in self.BLOCKS:
            self.parts.append("\n\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIPPED and tag != "head":
            self.skipping = max(0, self.skipping - 1)
        elif tag in self.BLOCKS:
            self.parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.parts.append(data)


def _html(markup: str) -> str:
    parser = _Text()
    parser.feed(markup)
    parser.close()
    paragraphs = (" ".join(p.split()) for p in "".join(parser.parts).split("\n\n"))
    return "\n\n".join(p for p in paragraphs if p)


def split(text: str, size: int = DEFAULT_CHUNK) -> list[str]:
    """Chunks of at most `size` characters: paragraphs packed together, long ones cut."""
    pieces: list[str] = []
    for paragraph in re.split(r"\n\s*\n", text):
        paragraph = paragraph.strip()
        if paragraph:
            pieces.extend(_cut(paragraph, size))
    chunks: list[str] = []
    for piece in pieces:
        if chunks and len(chunks[-1]) + 2 + len(piece) <= size:
            chunks[-1] += "\n\n" + piece
        else:
            chunks.append(piece)
    return chunks


def _cut(paragraph: str, size: int) -> list[str]:
    """A paragraph in pieces of at most `size` characters: at sentence ends where it can,
    else at spaces, else anywhere."""
    if len(paragraph) <= size:
        return [paragraph]
    for pattern in (r"(?<=[.!?])\s+", r"\s+"):
        parts = re.split(pattern, paragraph)
        if len(parts) > 1:
            out: list[str] = []
            for part in parts:
                if out and len(out[-1]) + 1 + len(part) <= size:
                    out[-1] += " " + part
                else:
                    out.extend(_cut(part, size) if len(part) > size else [part])
            return out
    return [paragraph[i:i + size] for i in range(0, len(paragraph), size)]
