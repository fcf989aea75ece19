# The host's files, read-only, on the emulated board (frozen into its image): mount(point) makes
# open(point + "/abs/host/path") read that host file through QEMU's semihosting, 512 bytes per
# call. `microagent replay --runtime qemu-cortex-m3` reads its trace and its replay modules so:
# the CMSDK UART model carries about 18 KB/s, semihosting megabytes. A real board has no such
# channel; the agent never uses it.
import errno
import vfs

import mps2board


class HostFS:
    def mount(self, readonly, mkfs):
        pass

    def umount(self):
        pass

    def open(self, path, mode="r"):
        return mps2board.host_open(path, mode)

    def stat(self, path):
        size = mps2board.host_size(path)
        if size < 0:
            raise OSError(errno.ENOENT)
        return (0x8000, 0, 0, 0, 0, 0, size, 0, 0, 0)

    def ilistdir(self, path):
        raise OSError(errno.EPERM)


def mount(point="/host"):
    vfs.mount(HostFS(), point)
