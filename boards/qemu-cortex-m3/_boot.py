# Frozen into the emulated Cortex-M3 image, run at every boot (before the REPL): mounts the board's
# RAM disk at /flash as a littlefs filesystem (formatted when blank: after power-on, as QEMU starts
# with zeroed RAM; a soft reset keeps it) and makes it the working directory, as on an stm32 board.
import os
import sys
import vfs

import mps2board


class RAMBlockDevice:
    # This module runs as __main__ and cleans up after itself: the methods use no globals.
    def __init__(self, data, block_size):
        self.view = memoryview(data)
        self.block_size = block_size
        self.blocks = len(data) // block_size

    def readblocks(self, block, buf, offset=0):
        start = block * self.block_size + offset
        buf[:] = self.view[start:start + len(buf)]

    def writeblocks(self, block, buf, offset=0):
        start = block * self.block_size + offset
        self.view[start:start + len(buf)] = buf

    def ioctl(self, op, arg):
        if op == 4:  # block count
            return self.blocks
        if op == 5:  # block size
            return self.block_size
        if op == 6:  # erase: RAM needs none
            return 0
        return None


def _mount():
    device = RAMBlockDevice(mps2board.ramdisk(), 512)
    try:
        fs = vfs.VfsLfs2(device)
    except OSError:
        vfs.VfsLfs2.mkfs(device)
        fs = vfs.VfsLfs2(device)
    vfs.mount(fs, "/flash")
    os.chdir("/flash")
    sys.path.append("/flash/lib")


_mount()
del _mount, RAMBlockDevice, os, sys, vfs, mps2board
