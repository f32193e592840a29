"""An incremental scanner for the first SSE event that carries data (WHATWG event-stream rules)."""

from __future__ import annotations

__all__ = ["FirstEventScanner"]


class FirstEventScanner:
    """Feed raw SSE bytes; learn the data of the first event whose data is not empty.

    Comments (``:`` lines) and events with empty data (priming events that only carry an
    ``id``/``retry``) are skipped. The caller keeps the bytes; the scanner only reads them.
    """

    __slots__ = ("_buf", "_data", "_scan")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._scan = 0
        self._data: list[bytes] = []

    def feed(self, chunk: bytes) -> str | None:
        """Scan ``chunk``; return the first non-empty event data once it is complete, else None."""
        buf = self._buf
        buf += chunk
        while True:
            start = self._scan
            lf = buf.find(b"\n", start)
            cr = buf.find(b"\r", start, lf if lf >= 0 else len(buf))
            if cr >= 0:
                if cr + 1 == len(buf):
                    return None  # a CR at the end may be the first half of CRLF
                end, nxt = cr, cr + 2 if buf[cr + 1] == 0x0A else cr + 1
            elif lf >= 0:
                end, nxt = lf, lf + 1
            else:
                return None
            line = bytes(buf[start:end])
            self._scan = nxt
            if not line:
                if self._data:
                    data = b"\n".join(self._data)
                    self._data = []
                    if data:
                        return data.decode("utf-8", errors="replace")
                continue
            if line.startswith(b":"):
                continue
            field, _, value = line.partition(b":")
            if field == b"data":
                self._data.append(value[1:] if value.startswith(b" ") else value)
