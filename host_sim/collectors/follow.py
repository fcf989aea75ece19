"""Incremental reading of a growing file that survives rotation and truncation (like tail -F).

The open file is kept: after a rotation (the path now names a new inode) the rest of the old
file is read first, then the new file from its start (an incomplete tail of the old file is
dropped: that file will not grow any more). A file that got shorter than our offset
was truncated and is read again from its start. Incomplete trailing data (a half-written
record or line) is kept until the rest arrives.
"""
import os


class FollowedFile:
    def __init__(self, filename, from_start=False):
        self.filename = filename
        self._file = None
        self._inode = None
        self._pending = b""
        self._open(seek_end=not from_start)

    def _open(self, seek_end=False):
        try:
            f = open(self.filename, "rb")
        except OSError:
            return False
        if self._file is not None:
            self._file.close()
        self._file = f
        self._inode = os.fstat(f.fileno()).st_ino
        self._pending = b""
        if seek_end:
            f.seek(0, os.SEEK_END)
        return True

    def read(self):
        """New data since the last call, as a list of segments, one per file read (two right
        after a rotation). Each segment starts at a record/line boundary of its file."""
        if self._file is None:
            if not self._open():
                return []
        elif os.fstat(self._file.fileno()).st_size < self._file.tell():
            self._file.seek(0)                      # truncated in place
            self._pending = b""
        segments = [self._pending + self._file.read()]
        self._pending = b""
        try:
            rotated = os.stat(self.filename).st_ino != self._inode
        except OSError:
            rotated = False                         # gone for now: keep the old file
        if rotated and self._open():
            segments.append(self._file.read())
        return segments

    def keep(self, tail):
        """Give back the incomplete tail of the last segment, to be completed by later data."""
        self._pending = tail

    def close(self):
        if self._file is not None:
            self._file.close()
            self._file = None
