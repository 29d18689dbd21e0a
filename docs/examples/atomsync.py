#!/usr/bin/env python3
"""Publishes files with libatomsync from Python, through ctypes.

    python3 atomsync.py TARGET NAME=TEXT...

makes each NAME (a relative path) hold TEXT in TARGET, all at once; a
second run with the same arguments writes nothing.  The library is found
as ATOMSYNC_LIB names it, else as the system finds libatomsync.so.0.
"""
import ctypes
import ctypes.util
import os
import sys


class Options(ctypes.Structure):
    """struct atomsync_options; filled by atomsync_options_init."""
    _fields_ = [
        ("size", ctypes.c_size_t),
        ("fsync", ctypes.c_int),
        ("grace_ms", ctypes.c_uint),
        ("file_mode", ctypes.c_int),
        ("dir_mode", ctypes.c_int),
        ("uid", ctypes.c_uint32),
        ("gid", ctypes.c_uint32),
        ("max_files", ctypes.c_size_t),
        ("allow_empty", ctypes.c_int),
        ("log", ctypes.c_void_p),
        ("log_ctx", ctypes.c_void_p),
    ]


class File(ctypes.Structure):
    """struct atomsync_file."""
    _fields_ = [
        ("path", ctypes.c_char_p),
        ("data", ctypes.c_char_p),
        ("size", ctypes.c_size_t),
        ("mode", ctypes.c_uint32),
    ]


def load():
    name = os.environ.get("ATOMSYNC_LIB") or ctypes.util.find_library("atomsync")
    lib = ctypes.CDLL(name or "libatomsync.so.0", use_errno=True)
    lib.atomsync_options_init.argtypes = [ctypes.POINTER(Options)]
    lib.atomsync_options_init.restype = None
    lib.atomsync_writer_open.argtypes = [
        ctypes.c_char_p, ctypes.POINTER(Options), ctypes.POINTER(ctypes.c_void_p)]
    lib.atomsync_write.argtypes = [
        ctypes.c_void_p, ctypes.POINTER(File), ctypes.c_size_t]
    lib.atomsync_writer_generation.argtypes = [ctypes.c_void_p]
    lib.atomsync_writer_generation.restype = ctypes.c_char_p
    lib.atomsync_writer_error.argtypes = [ctypes.c_void_p]
    lib.atomsync_writer_error.restype = ctypes.c_char_p
    lib.atomsync_writer_close.argtypes = [ctypes.c_void_p]
    lib.atomsync_writer_close.restype = None
    return lib


class Writer:
    """One target, locked while the writer is open."""

    def __init__(self, lib, target, file_mode=-1):
        self.lib = lib
        opts = Options()
        lib.atomsync_options_init(ctypes.byref(opts))
        opts.file_mode = file_mode
        self.w = ctypes.c_void_p()
        rc = lib.atomsync_writer_open(target.encode(), ctypes.byref(opts),
                                      ctypes.byref(self.w))
        if rc < 0:
            self._fail(rc)

    def _fail(self, rc):
        msg = self.lib.atomsync_writer_error(self.w) if self.w else None
        err = OSError(-rc, (msg or b"").decode(errors="replace") or os.strerror(-rc))
        self.close()
        raise err

    def write(self, payload):
        """payload: {relative path: bytes}; returns the live generation."""
        files = (File * len(payload))()
        for f, (path, data) in zip(files, payload.items()):
            f.path, f.data, f.size, f.mode = path.encode(), data, len(data), 0o644
        rc = self.lib.atomsync_write(self.w, files, len(payload))
        if rc < 0:
            self._fail(rc)
        return self.lib.atomsync_writer_generation(self.w).decode()

    def close(self):
        if self.w:
            self.lib.atomsync_writer_close(self.w)
            self.w = None


def main(argv):
    if len(argv) < 2:
        print("usage: atomsync.py TARGET NAME=TEXT...", file=sys.stderr)
        return 2
    payload = {}
    for arg in argv[2:]:
        name, _, text = arg.partition("=")
        payload[name] = text.encode()
    w = Writer(load(), argv[1])
    try:
        print(w.write(payload))
    except OSError as e:
        print("atomsync.py: %s" % e.strerror, file=sys.stderr)
        return 1
    finally:
        w.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
