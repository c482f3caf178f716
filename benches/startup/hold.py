#!/usr/bin/env python3
"""Keeps each FILE mapped, every page touched once, until the shell that started it exits
(see page-cache.sh).

Usage: benches/startup/hold.py FILE...   (renames itself `held` once all are mapped)
"""
import ctypes
import mmap
import signal
import sys

libc = ctypes.CDLL(None)
# PR_SET_PDEATHSIG: SIGTERM when the benchmark's shell exits, however it exits.
libc.prctl(1, signal.SIGTERM, 0, 0, 0)
maps = []
for path in sys.argv[1:]:
    with open(path, "rb") as f:
        m = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
    sum(m[i] for i in range(0, len(m), mmap.PAGESIZE))
    maps.append(m)
# PR_SET_NAME: tells the shell that waits for it that every file is mapped.
libc.prctl(15, b"held", 0, 0, 0)
signal.pause()
