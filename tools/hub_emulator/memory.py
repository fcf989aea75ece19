"""Giving freed memory back to the system (glibc), so a burst of connections does not leave
the emulator's RSS at its peak. Elsewhere (another libc) both calls do nothing."""
import ctypes

_M_MMAP_THRESHOLD = -3
# Each TLS connection holds a 256 KB read buffer; blocks this large are then mmap'ed and
# unmapped on free, instead of glibc raising its threshold and keeping them in the heap.
MMAP_THRESHOLD = 128 * 1024

try:
    _libc = ctypes.CDLL("libc.so.6")
    _mallopt, _malloc_trim = _libc.mallopt, _libc.malloc_trim
except (OSError, AttributeError):
    _mallopt = _malloc_trim = None


def map_large_blocks():
    if _mallopt is not None:
        _mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)


def return_free_memory():
    """Releases free heap pages to the system (glibc's malloc_trim)."""
    if _malloc_trim is not None:
        _malloc_trim(0)
