"""Multipart uploads read into memory, never onto disk, and refused as soon as they pass the size limit.

Starlette's own form parser spools files over 1 MB to a temporary file; an upload here lives only in
this process' memory for the length of its request. The body is fed to python-multipart's streaming
parser as it arrives, so an oversized upload is stopped at the limit, not read whole.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from python_multipart.multipart import MultipartParser, parse_options_header

FIELD_SLACK = 64 * 1024  # the form's other fields and the multipart framing, beyond the file's limit


class UploadError(ValueError):
    """A request that cannot be read as the form asked for; ``status`` is the HTTP status to answer."""

    def __init__(self, message: str, status: int = 400, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.param = param


@dataclass
class Part:
    name: str
    filename: str | None
    data: bytearray = field(default_factory=bytearray)


@dataclass
class Form:
    """The parts of a multipart form: every value of a field, in order (``timestamp_granularities[]`` repeats)."""

    parts: list[Part]

    def values(self, name: str) -> list[str]:
        return [bytes(part.data).decode("utf-8", "replace") for part in self.parts if part.name == name]

    def value(self, name: str) -> str | None:
        values = self.values(name)
        return values[-1] if values else None

    def file(self, name: str) -> Part | None:
        return next((part for part in self.parts if part.name == name), None)


async def read_form(content_type: str, body: AsyncIterator[bytes], limit: int, declared: int | None) -> Form:
    """Parse a ``multipart/form-data`` body of at most ``limit`` bytes of file (413 past it, before reading
    on when the declared length already says so)."""
    kind, parameters = parse_options_header(content_type)
    if kind != b"multipart/form-data" or b"boundary" not in parameters:
        raise UploadError("the request must be multipart/form-data with a 'file' part")
    too_large = UploadError(f"the upload is larger than this server's limit of {limit / 2**20:g} MB", status=413)
    if declared is not None and declared > limit + FIELD_SLACK:
        raise too_large
    parts: list[Part] = []
    header: dict[str, bytes] = {"field": b"", "value": b""}
    headers: dict[bytes, bytes] = {}

    def on_part_begin() -> None:
        headers.clear()

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header["field"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header["value"] += data[start:end]

    def on_header_end() -> None:
        headers[header["field"].lower()] = header["value"]
        header["field"] = header["value"] = b""

    def on_headers_finished() -> None:
        _, options = parse_options_header(headers.get(b"content-disposition", b""))
        filename = options.get(b"filename")
        parts.append(
            Part(options.get(b"name", b"").decode("utf-8", "replace"), None if filename is None else filename.decode())
        )

    def on_part_data(data: bytes, start: int, end: int) -> None:
        parts[-1].data += data[start:end]

    parser = MultipartParser(
        parameters[b"boundary"],
        {
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
            "on_part_data": on_part_data,
        },
    )
    received = 0
    try:
        async for chunk in body:
            received += len(chunk)
            if received > limit + FIELD_SLACK:
                raise too_large
            parser.write(chunk)
        parser.finalize()
    except UploadError:
        raise
    except Exception as error:  # python-multipart raises its own errors for malformed bodies
        raise UploadError(f"malformed multipart body: {error}") from error
    if any(len(part.data) > limit for part in parts):
        raise too_large
    return Form(parts)
