"""Reading the operating system's files through a root path, so tests can use fixture trees.

Every collector takes `root` ("/" on a live system, a fixture directory in tests) and reads
`/proc`, `/sys`, `/etc`, `/var` only through these helpers.
"""
import os
import time


def path(root, absolute):
    """The file `absolute` (e.g. "/proc/1/cmdline") inside the tree at `root`."""
    return os.path.join(root, absolute.lstrip("/"))


def read_bytes(root, absolute):
    """Whole file; plain os.read (no file object), as /proc is read for every new process."""
    fd = os.open(path(root, absolute), os.O_RDONLY | os.O_CLOEXEC)
    try:
        data = os.read(fd, 65536)
        if len(data) < 65536:
            return data
        chunks = [data]
        while data:
            data = os.read(fd, 65536)
            chunks.append(data)
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_text(root, absolute):
    """File contents as str; invalid UTF-8 becomes replacement characters, never an exception."""
    return read_bytes(root, absolute).decode("utf-8", "replace")


def read_first_line(root, absolute, default=""):
    """First line without its newline, or `default` when the file is missing or unreadable."""
    try:
        return read_text(root, absolute).split("\n", 1)[0].strip()
    except OSError:
        return default


def read_key_values(root, absolute):
    """A KEY=value file (os-release, uevent) as a dict; quotes around values are removed."""
    values = {}
    for line in read_text(root, absolute).splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        values[key.strip()] = value
    return values


class UserNames:
    """uid -> user name from <root>/etc/passwd, re-read when the file changes."""

    def __init__(self, root="/"):
        self._file = path(root, "/etc/passwd")
        self._stamp = None
        self._names = {}
        self._next_check = 0.0

    def name(self, uid):
        now = time.monotonic()
        if now >= self._next_check:          # at most once a second, not once per process
            self._next_check = now + 1.0
            self._refresh()
        return self._names.get(uid, str(uid))

    def _refresh(self):
        try:
            st = os.stat(self._file)
        except OSError:
            self._names, self._stamp = {}, None
            return
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        if stamp == self._stamp:
            return
        names = {}
        with open(self._file, "rb") as f:
            for raw in f:
                fields = raw.decode("utf-8", "replace").rstrip("\n").split(":")
                if len(fields) >= 3 and fields[2].isdigit():
                    names.setdefault(int(fields[2]), fields[0])
        self._names, self._stamp = names, stamp
