"""Does an image or video end where its own structure says it ends?

A server that cuts a file short and sends a Content-Length that agrees with the cut leaves no
trace in the HTTP exchange: only the file's own structure shows it. :class:`StructureCheck` is
fed the bytes as they stream past and keeps only what it needs (the first and last bytes and,
for MP4, the top-level box headers): no second pass over the file, constant memory.

* PNG ends with its IEND chunk.
* JPEG ends with the EOI marker (``FF D9``); zero padding after it is tolerated.
* WebP's RIFF header gives the file's length.
* MP4's top-level boxes add up to the file's length, and ``moov`` and ``mdat`` are among them.

GIF and WebM have no such cheap check and pass as they are.
"""

from __future__ import annotations

import struct

CHECKED_KINDS = frozenset({"png", "jpg", "webp", "mp4"})

_HEAD = 16  # enough for WebP's RIFF header
_TAIL = 64  # the PNG IEND chunk (12 bytes) and room for a JPEG's zero padding
_PNG_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"
_JPEG_EOI = b"\xff\xd9"
_REQUIRED_BOXES = (b"moov", b"mdat")
# Far above any real file (a fragmented hour of video has a few thousand): a file of endless
# tiny boxes is refused instead of being walked eight bytes at a time.
MAX_MP4_BOXES = 100_000


class StructureCheck:
    """Streaming completeness check of one file of ``kind`` (``png``, ``jpg``, ``webp``, …)."""

    def __init__(self, kind: str | None) -> None:
        self.kind = kind
        self.size = 0
        self._head = b""
        self._tail = b""
        # MP4: where the next top-level box header starts, and the part of it seen so far.
        self._next_box = 0
        self._box_header = b""
        self._last_box_open = False  # a box of size 0 runs to the end of the file
        self._boxes: set[bytes] = set()
        self._box_count = 0
        self._mp4_problem: str | None = None

    def update(self, chunk: bytes) -> None:
        if not chunk:
            return
        start = self.size
        self.size += len(chunk)
        if len(self._head) < _HEAD:
            self._head += chunk[: _HEAD - len(self._head)]
        if len(chunk) >= _TAIL:
            self._tail = chunk[-_TAIL:]
        else:
            self._tail = (self._tail + chunk)[-_TAIL:]
        if self.kind == "mp4":
            self._walk_boxes(chunk, start)

    def problem(self) -> str | None:
        """What is wrong with the bytes fed so far as a whole file, or None if nothing shows."""
        if self.kind not in CHECKED_KINDS:
            return None
        if self.size == 0:
            return "the file is empty"
        if self.kind == "png":
            if not self._tail.endswith(_PNG_IEND):
                return f"the PNG ends without its IEND chunk after {self.size} bytes (cut short)"
        elif self.kind == "jpg":
            if not self._tail.rstrip(b"\x00").endswith(_JPEG_EOI):
                return f"the JPEG ends without its end marker after {self.size} bytes (cut short)"
        elif self.kind == "webp":
            if len(self._head) < 12 or self._head[:4] != b"RIFF":
                return "the WebP has no complete RIFF header"
            declared = struct.unpack("<I", self._head[4:8])[0] + 8
            if declared != self.size:
                return f"the WebP says it has {declared} bytes, {self.size} arrived"
        else:
            return self._mp4_verdict()
        return None

    # -- MP4 ---------------------------------------------------------------------------------
    def _walk_boxes(self, chunk: bytes, start: int) -> None:
        """Read each top-level box header as it streams past and jump to the next one."""
        position = 0
        while self._mp4_problem is None and not self._last_box_open:
            if not self._box_header:
                if self._next_box >= start + len(chunk):
                    return
                position = self._next_box - start
            for wanted in (8, 16):
                need = max(0, wanted - len(self._box_header))
                taken = chunk[position : position + need]
                self._box_header += taken
                position += len(taken)
                if len(self._box_header) < wanted:
                    return  # the rest of the header comes with the next chunk
                if self._box_header[:4] != b"\x00\x00\x00\x01":
                    break  # 1 means: a 64-bit size follows the type
            size = struct.unpack(">I", self._box_header[:4])[0]
            kind = self._box_header[4:8]
            header_size = len(self._box_header)
            if size == 1:
                size = struct.unpack(">Q", self._box_header[8:16])[0]
            if kind in _REQUIRED_BOXES:  # only these: a hostile file has endless box types
                self._boxes.add(kind)
            self._box_header = b""
            self._box_count += 1
            if self._box_count > MAX_MP4_BOXES:
                self._mp4_problem = f"the MP4 has more than {MAX_MP4_BOXES} top-level boxes"
            elif size == 0:
                self._last_box_open = True
            elif size < header_size:
                self._mp4_problem = f"an MP4 box at byte {self._next_box} claims {size} bytes"
            else:
                self._next_box += size

    def _mp4_verdict(self) -> str | None:
        if self._mp4_problem is not None:
            return self._mp4_problem
        if self._box_header:
            return f"the MP4 ends inside a box header after {self.size} bytes (cut short)"
        if not self._last_box_open and self._next_box != self.size:
            return f"the MP4's boxes add up to {self._next_box} bytes, {self.size} arrived"
        absent = [name for name in _REQUIRED_BOXES if name not in self._boxes]
        if absent:
            names = " and ".join(name.decode() for name in absent)
            return f"the MP4 has no {names} box after {self.size} bytes (cut short)"
        return None


def structure_problem(kind: str | None, data: bytes) -> str | None:
    """:meth:`StructureCheck.problem` for a whole file in memory."""
    check = StructureCheck(kind)
    check.update(data)
    return check.problem()
