"""Capture The IP from Python: a ctypes binding of libcti_core (standard library only).

    import cti_core
    with cti_core.Store("/tmp/game.db") as store:
        store.claim("1.2.3.4", "alice")
        print(store.ranks("all"))

The library is found through CTI_CORE_LIB (a path to the .so), then beside
this module or in an installed prefix's lib/, then the system's loader path,
then a build tree (target/{debug,release}/deps) above this file.
"""

import ctypes
import ctypes.util
import json
import os
from ctypes import POINTER, c_char_p, c_int, c_uint32, c_void_p

__all__ = ["Store", "CtiError", "abi_version", "version", "validate_nick", "Limits"]

# Result codes, as in include/cti_core.h.
OK = 0
CODES = {
    1: "INVALID_ARGUMENT",
    2: "INVALID_NICK",
    3: "INVALID_ADDRESS",
    4: "NOT_IPV4",
    5: "UNKNOWN_WINDOW",
    6: "NOT_FOUND",
    7: "UNAVAILABLE",
    8: "OPEN_FAILED",
    9: "CLOSED",
    10: "INCONSISTENT",
    11: "PANIC",
    12: "RATE_LIMITED",
}


class CtiError(Exception):
    """A failure reported by the library: `code` (int), `name`, the message,
    and `retry_after` (seconds) for RATE_LIMITED."""

    def __init__(self, code, message, retry_after=None):
        super().__init__(message)
        self.code = code
        self.name = CODES.get(code, str(code))
        self.retry_after = retry_after


class Limits(ctypes.Structure):
    """CtiLimits: claims per minute and bursts, per address and per /24 (0: off)."""

    _fields_ = [
        ("per_address_per_minute", c_uint32),
        ("per_address_burst", c_uint32),
        ("per_net24_per_minute", c_uint32),
        ("per_net24_burst", c_uint32),
    ]


def _candidates():
    env = os.environ.get("CTI_CORE_LIB")
    if env:
        yield env
        return
    here = os.path.dirname(os.path.abspath(__file__))
    for name in ("libcti_core.so", "libcti_core.so.1"):
        yield os.path.join(here, name)
        # <prefix>/lib/python3/dist-packages/cti_core.py -> <prefix>/lib
        yield os.path.join(here, "..", "..", name)
    found = ctypes.util.find_library("cti_core")
    if found:
        yield found
    root = here
    for _ in range(4):
        for profile in ("debug", "release"):
            yield os.path.join(root, "target", profile, "deps", "libcti_core.so")
        root = os.path.dirname(root)


def _load():
    tried = []
    for path in _candidates():
        if os.sep in path and not os.path.exists(path):
            tried.append(path)
            continue
        try:
            return ctypes.CDLL(path)
        except OSError as e:
            tried.append(f"{path} ({e})")
    raise OSError("libcti_core not found; set CTI_CORE_LIB. Tried: " + ", ".join(tried))


_lib = _load()


def _declare(name, restype, *argtypes):
    f = getattr(_lib, name)
    f.restype = restype
    f.argtypes = list(argtypes)
    return f


# Strings the library returns are freed with cti_string_free, so they are
# declared c_void_p: c_char_p would copy them and lose the pointer.
_OUT = POINTER(c_void_p)
_abi_version = _declare("cti_abi_version", c_uint32)
_version = _declare("cti_version", c_char_p)
_last_error = _declare("cti_last_error", c_char_p)
_last_retry_after = _declare("cti_last_retry_after", c_uint32)
_string_free = _declare("cti_string_free", None, c_void_p)
_open = _declare("cti_store_open", c_int, c_char_p, POINTER(c_void_p))
_close = _declare("cti_store_close", None, c_void_p)
_claim = _declare("cti_claim", c_int, c_void_p, c_char_p, c_char_p, _OUT)
_blocks = _declare("cti_blocks_json", c_int, c_void_p, c_char_p, _OUT)
_ranks = _declare("cti_ranks_json", c_int, c_void_p, c_char_p, _OUT)
_recent = _declare("cti_recent_json", c_int, c_void_p, c_uint32, _OUT)
_user = _declare("cti_user_json", c_int, c_void_p, c_char_p, c_char_p, _OUT)
_stats = _declare("cti_stats_json", c_int, c_void_p, _OUT)
_validate = _declare("cti_validate_nick", c_int, c_char_p)
_health = _declare("cti_health", c_int, c_void_p)
_check = _declare("cti_check", c_int, c_void_p)
_set_limits = _declare("cti_store_set_limits", c_int, c_void_p, POINTER(Limits))


def _text(value, what):
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"{what} must be str, not {type(value).__name__}")
    return value.encode("utf-8")


def _raise_for(rc):
    if rc != OK:
        message = (_last_error() or b"").decode("utf-8", "replace")
        retry = _last_retry_after() if CODES.get(rc) == "RATE_LIMITED" else None
        raise CtiError(rc, message, retry)


def _json_call(fn, *args):
    out = c_void_p()
    rc = fn(*args, ctypes.byref(out))
    try:
        _raise_for(rc)
        return json.loads(ctypes.string_at(out.value).decode("utf-8"))
    finally:
        _string_free(out)


def abi_version():
    """(major, minor) of the loaded library."""
    v = _abi_version()
    return (v >> 16, v & 0xFFFF)


def version():
    return _version().decode()


def validate_nick(nick):
    """Raises CtiError(INVALID_NICK) with the reason if `nick` breaks the rules."""
    _raise_for(_validate(_text(nick, "nick")))


class Store:
    """An open game store (a SQLite file). Thread-safe; close() or use `with`."""

    def __init__(self, path):
        handle = c_void_p()
        _raise_for(_open(_text(os.fspath(path), "path"), ctypes.byref(handle)))
        self._handle = handle

    def _h(self):
        if not self._handle:
            raise CtiError(9, "the store is closed")
        return self._handle

    def close(self):
        if self._handle:
            _close(self._handle)
            self._handle = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def claim(self, ip, nick):
        """Claims `ip` for `nick`; returns once it is on disk, as a dict."""
        return _json_call(_claim, self._h(), _text(ip, "ip"), _text(nick, "nick"))

    def blocks(self, window=None):
        return _json_call(_blocks, self._h(), _text(window, "window"))

    def ranks(self, window=None):
        return _json_call(_ranks, self._h(), _text(window, "window"))

    def recent(self, limit=50):
        return _json_call(_recent, self._h(), limit)

    def user(self, nick, window=None):
        return _json_call(_user, self._h(), _text(nick, "nick"), _text(window, "window"))

    def stats(self):
        return _json_call(_stats, self._h())

    def set_limits(self, per_address_per_minute=0, per_address_burst=0, per_net24_per_minute=0, per_net24_burst=0):
        limits = Limits(per_address_per_minute, per_address_burst, per_net24_per_minute, per_net24_burst)
        _raise_for(_set_limits(self._h(), ctypes.byref(limits)))

    def health(self):
        _raise_for(_health(self._h()))

    def check(self):
        """Raises CtiError(INCONSISTENT) if the aggregates disagree with a recount."""
        _raise_for(_check(self._h()))
