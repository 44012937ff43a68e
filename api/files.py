"""Dataset files as HTTP answers: from the file the server opened and checked, and with a header that never
carries a raw file name (a newline in a name would end the header; a byte that is not UTF-8 cannot be sent)."""
from __future__ import annotations

import mimetypes
import os
from typing import BinaryIO
from urllib.parse import quote

from flask import Response, request, send_file
from werkzeug.exceptions import RequestedRangeNotSatisfiable

from lib.store.catalog import ImageRecord

MAX_AGE = 3600


def content_disposition(name: str) -> str:
    """`inline` with the name as RFC 6266 says: an ASCII `filename` (what is not printable ASCII, or is a double
    quote, a backslash or '%', as '_') and, where that is not the name, `filename*` in UTF-8, percent-encoded (a
    byte that is not UTF-8 as U+FFFD)."""
    text = os.fsencode(name).decode("utf-8", "replace")
    fallback = "".join(c if " " <= c <= "~" and c not in '"\\%' else "_" for c in text)
    if fallback == text:
        return f'inline; filename="{text}"'
    return f"inline; filename=\"{fallback}\"; filename*=UTF-8''{quote(text, safe='')}"


def file_answer(file: BinaryIO, record: ImageRecord) -> Response:
    """The open file of an indexed image or video, streamed, its type guessed from its name (send_file is given
    the file, not its path, so that what is sent is what was checked), with HTTP range requests (a browser's
    <video> asks for the part it seeks to): 206 with the part, 416 for a range outside the file."""
    name = record.path.rsplit("/", 1)[-1]
    found = os.fstat(file.fileno())
    response = send_file(file, mimetype=mimetypes.guess_type(name)[0] or "application/octet-stream",
                         etag=f"{record.id}-{found.st_size}-{found.st_mtime_ns}", last_modified=found.st_mtime,
                         max_age=MAX_AGE, conditional=False)
    response.headers["Content-Disposition"] = content_disposition(name)
    response.content_length = found.st_size
    try:  # send_file cannot answer ranges of a file object: it does not know its size
        response.make_conditional(request.environ, accept_ranges=True, complete_length=found.st_size)
    except RequestedRangeNotSatisfiable:
        file.close()
        raise
    return response
