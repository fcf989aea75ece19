# Checks for unusual trace lines (nesting, escaped surrogates, long lines), kept out of
# microagent.trace so a board loads their bytecode only when a trace has such a line.


def deeper_than(line, limit):
    """True when the JSON text LINE (bytes) nests objects and arrays deeper than LIMIT;
    brackets inside strings do not count."""
    depth = 0
    in_string = False
    escaped = False
    for byte in line:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte == 0x7B or byte == 0x5B:  # { [
            depth += 1
            if depth > limit:
                return True
        elif byte == 0x7D or byte == 0x5D:  # } ]
            depth -= 1
    return False


def _hex4(line, at):
    try:
        return int(line[at:at + 4], 16) if len(line[at:at + 4]) == 4 else -1
    except ValueError:
        return -1


def join_surrogates(line):
    """LINE with each escaped UTF-16 surrogate pair (\\ud83d\\ude00) written as UTF-8, as
    CPython decodes it and MicroPython does not (it keeps each half, which is not UTF-8).
    ValueError for a lone surrogate: it cannot become UTF-8 at all."""
    out = bytearray()
    start = 0
    at = line.find(b"\\u")
    while at >= 0:
        slashes = 0
        while at - slashes - 1 >= 0 and line[at - slashes - 1] == 0x5C:
            slashes += 1
        code = _hex4(line, at + 2) if slashes % 2 == 0 else -1
        if 0xD800 <= code <= 0xDFFF:
            low = _hex4(line, at + 8) if line[at + 6:at + 8] == b"\\u" else -1
            if code > 0xDBFF or not 0xDC00 <= low <= 0xDFFF:
                raise ValueError("lone UTF-16 surrogate \\u%04x in a string (not text)" % code)
            out += line[start:at]
            out += chr(0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)).encode()
            start = at + 12
            at = line.find(b"\\u", start)
        else:
            at = line.find(b"\\u", at + 2)
    out += line[start:]
    return bytes(out)


def rest_of_line(f, first, piece, limit):
    """(line, size) for FIRST (PIECE bytes without a newline) and the rest of its line from the
    binary file F, read PIECE bytes at a time. LINE is None when SIZE exceeds LIMIT or the heap
    cannot hold the line; the rest is then only measured, up to LIMIT + 1 bytes, so a full
    heap can still tell an overlong line from a long one. The measure may fall short by up to
    PIECE bytes: MicroPython's readline can run out of heap after taking bytes from the file."""
    pieces = [first]
    size = len(first)
    chunk = first
    try:
        while chunk[-1:] != b"\n" and size <= limit:
            chunk = f.readline(piece)
            if not chunk:
                break
            size += len(chunk)
            pieces.append(chunk)
        if size <= limit:
            return b"".join(pieces), size
    except MemoryError:  # in readline (its piece is lost) or after counting the chunk
        pieces = chunk = None
        if size <= limit:
            size = _measure(f, size, limit)
    return None, size


def _measure(f, size, limit):
    # One small buffer for the whole rest of the line: a full heap cannot give one per read.
    buffer = bytearray(64)
    while size <= limit:
        n = f.readinto(buffer)
        if not n:
            break
        end = buffer.find(b"\n", 0, n)
        if end >= 0:
            return size + end + 1
        size += n
    return size
