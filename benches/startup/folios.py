#!/usr/bin/env python3
"""How the page cache holds each file given: how many of its pages are in large folios.

The start-up benchmark's variants load different copies of libc and of the libraries
(the system's, the store's, runpath30's), and on this kernel a file written recently sits
in large folios while one read back after the page cache dropped it sits in 4 KiB pages.
A program whose libc is in 4 KiB pages took tens of µs longer to start here, so run.sh
prints this beside its table: a paired difference between variants whose files differ in
this way is not ld-cas's alone.

Usage: benches/startup/folios.py FILE...   (needs root: /proc/self/pagemap, /proc/kpageflags)
"""
import mmap
import struct
import sys

PAGE = mmap.PAGESIZE
KPF_COMPOUND_HEAD, KPF_COMPOUND_TAIL = 15, 16


def large_folio_pages(path):
    """(pages, pages in large folios) of `path`, its pages brought in by reading them."""
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ) as m:
        pages = (len(m) + PAGE - 1) // PAGE
        for i in range(pages):
            m[i * PAGE]
        # The mapping's address: the one in our maps whose file is `path` at offset 0.
        start = None
        with open("/proc/self/maps") as maps:
            for line in maps:
                fields = line.split()
                if len(fields) >= 6 and fields[5] == path and fields[2] == "00000000":
                    start = int(fields[0].split("-")[0], 16)
        if start is None:
            raise RuntimeError(f"{path}: not found in /proc/self/maps")
        large = 0
        with open("/proc/self/pagemap", "rb") as pm, open("/proc/kpageflags", "rb") as kf:
            for i in range(pages):
                pm.seek((start // PAGE + i) * 8)
                entry = struct.unpack("Q", pm.read(8))[0]
                if not entry >> 63:
                    continue
                kf.seek((entry & ((1 << 55) - 1)) * 8)
                flags = struct.unpack("Q", kf.read(8))[0]
                if flags >> KPF_COMPOUND_HEAD & 1 or flags >> KPF_COMPOUND_TAIL & 1:
                    large += 1
        return pages, large


def main():
    for path in sys.argv[1:]:
        try:
            pages, large = large_folio_pages(path)
            print(f"{path}: {large} of {pages} pages in large folios")
        except (OSError, RuntimeError, ValueError) as e:
            print(f"{path}: cannot tell ({e})")


if __name__ == "__main__":
    main()
