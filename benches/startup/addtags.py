#!/usr/bin/env python3
"""Records ld-cas's loader and store tags in a program (bench/test-only stand-in for the
converter): `patchelf --add-needed` puts each string in .dynstr as a DT_NEEDED, then that
entry is retagged DT_LDCAS_LOADER (0x6c646301) / DT_LDCAS_STORE (0x6c646302).

usage: addtags.py PROGRAM LOADER_URI STORE_DIR"""
import struct
import subprocess
import sys

path, loader, store = sys.argv[1:4]
tags = [(0x6C646301, loader), (0x6C646302, store)]
for _, value in tags:
    subprocess.run(["patchelf", "--add-needed", value, path], check=True)
data = bytearray(open(path, "rb").read())
phoff, = struct.unpack_from("<Q", data, 32)
phnum, = struct.unpack_from("<H", data, 56)
phdrs = [struct.unpack_from("<IIQQQQQQ", data, phoff + i * 56) for i in range(phnum)]
dyn = next(p for p in phdrs if p[0] == 2)


def to_off(vaddr):
    p = next(p for p in phdrs if p[0] == 1 and p[3] <= vaddr < p[3] + p[5])
    return vaddr - p[3] + p[2]


entries = [(dyn[2] + i * 16,) + struct.unpack_from("<qQ", data, dyn[2] + i * 16) for i in range(dyn[5] // 16)]
strtab = to_off(next(e[2] for e in entries if e[1] == 5))
for tag, value in tags:
    for off, t, val in entries:
        s = data[strtab + val:data.index(0, strtab + val)]
        if t == 1 and s == value.encode():
            struct.pack_into("<q", data, off, tag)
            break
    else:
        sys.exit(f"patchelf did not add {value}")
open(path, "wb").write(data)
