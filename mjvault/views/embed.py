"""Carry a job's prompt inside the image file itself (``checkout --embed-metadata``).

The metadata is spliced into the file's container, never by re-encoding the image: pixels
stay bit-for-bit what Midjourney delivered, and a 4 MB PNG costs a copy, not a second of
compression (saving through Pillow's ``PngInfo`` would recompress every image).

* PNG: ``iTXt`` chunks (UTF-8) before ``IEND``: ``Description`` (the prompt, the keyword most
  viewers show), ``prompt``, ``full_command``, ``job_id``, ``parameters`` (JSON), ``Software``.
* JPEG: an XMP ``APP1`` segment after the ``APP0``/``APP1`` headers.
* WebP: an ``XMP `` chunk, with the ``VP8X`` header that announces it (added when missing).

XMP holds ``dc:description`` (the prompt) and the rest under the ``mjv:`` namespace. Other
formats (video) are returned unchanged.
"""

from __future__ import annotations

import io
import json
import re
import struct
import zlib
from xml.sax.saxutils import escape

from mjvault.model import Job
from mjvault.params import param_index_value

XMP_NAMESPACE = "urn:mjvault:ns:1.0/"
_XMP_APP1_HEADER = b"http://ns.adobe.com/xap/1.0/\x00"
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def metadata_fields(job: Job) -> dict[str, str]:
    return {
        "prompt": job.prompt,
        "full_command": job.full_command,
        "job_id": job.id,
        "parameters": json.dumps(
            {k: param_index_value(v) for k, v in sorted(job.params.items())}, ensure_ascii=False
        ),
    }


def embed_metadata(data: bytes, job: Job) -> bytes:
    """``data`` with the job's prompt and parameters in its own metadata, where possible."""
    try:
        if data.startswith(b"\x89PNG\r\n\x1a\n"):
            return _embed_png(data, job)
        if data.startswith(b"\xff\xd8"):
            return _embed_jpeg(data, job)
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            return _embed_webp(data, job)
    except (ValueError, struct.error):
        pass  # an odd container: better the image without metadata than no image
    return data


# -- PNG -------------------------------------------------------------------------------------


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def _itxt(keyword: str, text: str) -> bytes:
    # keyword, NUL, compression flag 0, method 0, empty language, NUL, empty translated, NUL
    payload = keyword.encode("latin-1") + b"\x00\x00\x00\x00\x00" + _xml_safe(text).encode()
    return _png_chunk(b"iTXt", payload)


def _embed_png(data: bytes, job: Job) -> bytes:
    fields = metadata_fields(job)
    chunks = [_itxt("Description", fields["prompt"])]
    chunks += [_itxt(k, v) for k, v in fields.items()]
    chunks.append(_itxt("Software", "mjvault"))
    position = 8
    while position + 8 <= len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        if data[position + 4 : position + 8] == b"IEND":
            return data[:position] + b"".join(chunks) + data[position:]
        position += 12 + length
    raise ValueError("PNG without IEND")


# -- XMP (JPEG, WebP) ------------------------------------------------------------------------


def _xml_safe(text: str) -> str:
    return _XML_INVALID.sub("\ufffd", text)


def xmp_packet(job: Job) -> bytes:
    fields = metadata_fields(job)

    def text(value: str) -> str:
        return escape(_xml_safe(value))

    body = (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/">\n'
        ' <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">\n'
        '  <rdf:Description rdf:about=""\n'
        '    xmlns:dc="http://purl.org/dc/elements/1.1/"\n'
        '    xmlns:xmp="http://ns.adobe.com/xap/1.0/"\n'
        f'    xmlns:mjv="{XMP_NAMESPACE}">\n'
        "   <dc:description><rdf:Alt>"
        f'<rdf:li xml:lang="x-default">{text(fields["prompt"])}</rdf:li>'
        "</rdf:Alt></dc:description>\n"
        "   <xmp:CreatorTool>Midjourney (archived by mjvault)</xmp:CreatorTool>\n"
        f"   <mjv:jobId>{text(fields['job_id'])}</mjv:jobId>\n"
        f"   <mjv:prompt>{text(fields['prompt'])}</mjv:prompt>\n"
        f"   <mjv:fullCommand>{text(fields['full_command'])}</mjv:fullCommand>\n"
        f"   <mjv:parameters>{text(fields['parameters'])}</mjv:parameters>\n"
        "  </rdf:Description>\n"
        " </rdf:RDF>\n"
        "</x:xmpmeta>\n"
        '<?xpacket end="w"?>'
    )
    return body.encode("utf-8")


def _embed_jpeg(data: bytes, job: Job) -> bytes:
    payload = _XMP_APP1_HEADER + xmp_packet(job)
    if len(payload) + 2 > 0xFFFF:
        raise ValueError("XMP too large for one JPEG segment")
    segment = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    position = 2
    # After JFIF (APP0) and EXIF (APP1) headers, where readers expect XMP.
    while (
        position + 4 <= len(data)
        and data[position] == 0xFF
        and data[position + 1]
        in (
            0xE0,
            0xE1,
        )
    ):
        (length,) = struct.unpack(">H", data[position + 2 : position + 4])
        position += 2 + length
    return data[:position] + segment + data[position:]


def _riff_chunk(kind: bytes, payload: bytes) -> bytes:
    pad = b"\x00" if len(payload) % 2 else b""
    return kind + struct.pack("<I", len(payload)) + payload + pad


def _embed_webp(data: bytes, job: Job) -> bytes:
    chunks: list[tuple[bytes, bytes]] = []
    position = 12
    while position + 8 <= len(data):
        kind = data[position : position + 4]
        (length,) = struct.unpack("<I", data[position + 4 : position + 8])
        chunks.append((kind, data[position + 8 : position + 8 + length]))
        position += 8 + length + (length % 2)
    if not chunks:
        raise ValueError("WebP without chunks")
    chunks = [(k, p) for k, p in chunks if k != b"XMP "]
    if chunks[0][0] == b"VP8X":
        header = bytearray(chunks[0][1])
        header[0] |= 0x04  # XMP present
        chunks[0] = (b"VP8X", bytes(header))
    else:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            alpha = 0x10 if "A" in image.mode else 0
        flags = 0x04 | alpha
        canvas = (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
        chunks.insert(0, (b"VP8X", bytes((flags, 0, 0, 0)) + canvas))
    chunks.append((b"XMP ", xmp_packet(job)))
    body = b"WEBP" + b"".join(_riff_chunk(k, p) for k, p in chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body
