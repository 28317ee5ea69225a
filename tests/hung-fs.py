#!/usr/bin/python3
"""A hung network mount for Docket's tests: a real FUSE file system (fusepy, libfuse) whose
directory lists and stats one capture file, `stuck.pcap`, whose open never returns — what a
dead NFS or SMB server does to its clients. Only the kernel can show this fault, so it is a
real mount, not a mock.

Usage: hung-fs.py MOUNTPOINT   (runs in the foreground until killed; unmount with
`fusermount -u -z MOUNTPOINT`). Prints "MOUNTED" once the mount answers.
"""

import errno
import os
import stat
import sys
import threading
import time

from fusepy import FUSE, FuseOSError, Operations


class Hung(Operations):
    def __init__(self):
        self.now = time.time()

    def getattr(self, path, fh=None):
        if path == "/":
            return {"st_mode": stat.S_IFDIR | 0o755, "st_nlink": 2,
                    "st_mtime": self.now, "st_ctime": self.now, "st_atime": self.now}
        if path == "/stuck.pcap":
            return {"st_mode": stat.S_IFREG | 0o644, "st_nlink": 1, "st_size": 4096,
                    "st_mtime": self.now, "st_ctime": self.now, "st_atime": self.now}
        raise FuseOSError(errno.ENOENT)

    def readdir(self, path, fh):
        return [".", "..", "stuck.pcap"]

    def open(self, path, flags):
        # A server that never answers: the caller waits in the kernel until the mount goes.
        while True:
            time.sleep(3600)


def main():
    mountpoint = sys.argv[1]

    def announce():
        for _ in range(100):
            if os.path.ismount(mountpoint):
                print("MOUNTED", flush=True)
                return
            time.sleep(0.05)

    threading.Thread(target=announce, daemon=True).start()
    FUSE(Hung(), mountpoint, foreground=True, nothreads=False, allow_other=False)


if __name__ == "__main__":
    main()
