"""Reading a PDF upload sent as ``application/pdf`` or as multipart field ``file``."""

from __future__ import annotations

from fastapi import Request

from license_core.errors import ValidationFailed

__all__ = ["read_pdf_upload"]


async def read_pdf_upload(request: Request) -> bytes:
    """The uploaded bytes (size is already bounded by the body-size middleware)."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        form = await request.form(max_files=1, max_fields=5)
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise ValidationFailed("send the PDF as multipart field 'file'", field="file")
        data = await upload.read()
    else:
        data = await request.body()
    if not data:
        raise ValidationFailed("the upload is empty", field="file")
    return data
