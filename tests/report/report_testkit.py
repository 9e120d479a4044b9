"""Helpers for the report tests: read a page's tags and its embedded images."""
from __future__ import annotations

import base64
import io
from html.parser import HTMLParser

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags = []      # (tag, {attr: value})
        self.text = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def parse(page: str) -> _Tags:
    parser = _Tags()
    parser.feed(page)
    parser.close()
    return parser


def image_sources(page: str) -> list[str]:
    return [attrs.get("src", "") for tag, attrs in parse(page).tags if tag == "img"]


def decode_png(src: str) -> bytes:
    prefix = "data:image/png;base64,"
    assert src.startswith(prefix), src[:60]
    return base64.b64decode(src[len(prefix):], validate=True)


def open_png(data: bytes):
    """The image as Pillow reads it (fully decoded, so a truncated file fails here)."""
    from PIL import Image

    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def section_ids(page: str) -> list[str]:
    return [attrs.get("id") for tag, attrs in parse(page).tags if tag == "section"]
