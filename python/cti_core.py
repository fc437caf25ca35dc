"""Capture The IP from Python: a ctypes binding of libcti_core (standard library only).

    import cti_core
    with cti_core.Store("/tmp/game.db") as store:
        store.claim("1.2.3.4", "alice")
        print(store.ranks("all"))

One writer per database: a second writable Store on the same file, in this
process or another, raises LockedError naming the holder. Tools that only
read open Store(path, readonly=True), beside a running writer. A Store belongs
to the process that opened it: after os.fork() the child's calls raise
ForkedError, and the child opens its own Store.

The library is found through CTI_CORE_LIB (a path to the .so), then beside
this module or in an installed prefix's lib/, then the system's loader path,
then a build tree (target/{debug,release}/deps) above this file.
"""

import ctypes
import ctypes.util
import itertools
import json
import os
import sys
import threading
import weakref
from ctypes import CFUNCTYPE, POINTER, c_char_p, c_int, c_uint32, c_void_p

__all__ = [
    "Store",
    "Subscription",
    "CtiError",
    "Limits",
    "NickLimits",
    "abi_version",
    "schema_version",
    "version",
    "validate_nick",
    "limits_default",
    "nick_limits_default",
    "last_retry_after",
    "LAST_ERROR_MAX",
]

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
    13: "LOCKED",
    14: "FORKED",
    15: "WRONG_THREAD",
    16: "READ_ONLY",
}
CLOSED = 9
WRONG_THREAD = 15

# Longest cti_last_error() message, in bytes (CTI_LAST_ERROR_MAX).
LAST_ERROR_MAX = 1024
# The ABI this module was written for: the major must match, the minor be at least this.
_ABI = (1, 1)


class CtiError(Exception):
    """A failure reported by the library: `code` (int), `name`, the message,
    and `retry_after` (seconds) for RATE_LIMITED. Raised as the subclass for
    its code (LockedError, ForkedError, ...), all of them CtiError."""

    def __init__(self, code, message, retry_after=None):
        super().__init__(message)
        self.code = code
        self.name = CODES.get(code, str(code))
        self.retry_after = retry_after


def _error_class(code, name):
    words = name.title().replace("_", "")
    doc = f"CtiError with code {code} (CTI_RESULT_{name})."
    return type(words + "Error", (CtiError,), {"__doc__": doc, "CODE": code})


# One subclass per result code: InvalidArgumentError, ..., LockedError,
# ForkedError, WrongThreadError, ReadOnlyError.
_CLASSES = {code: _error_class(code, name) for code, name in CODES.items()}
for _cls in _CLASSES.values():
    globals()[_cls.__name__] = _cls
    __all__.append(_cls.__name__)
del _cls


def _error(code, message, retry_after=None):
    return _CLASSES.get(code, CtiError)(code, message, retry_after)


class Limits(ctypes.Structure):
    """CtiLimits: claims per minute and bursts, per address and per /24 (0: off)."""

    _fields_ = [
        ("per_address_per_minute", c_uint32),
        ("per_address_burst", c_uint32),
        ("per_net24_per_minute", c_uint32),
        ("per_net24_burst", c_uint32),
    ]


class NickLimits(ctypes.Structure):
    """CtiNickLimits: claims by names that own nothing yet, per hour and bursts,
    per address and per /24 (0: off)."""

    _fields_ = [
        ("per_address_per_hour", c_uint32),
        ("per_address_burst", c_uint32),
        ("per_net24_per_hour", c_uint32),
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
            lib = ctypes.CDLL(path)
        except OSError as e:
            tried.append(f"{path} ({e})")
            continue
        lib.cti_abi_version.restype = c_uint32
        v = lib.cti_abi_version()
        if v >> 16 != _ABI[0] or (v & 0xFFFF) < _ABI[1]:
            raise OSError(f"{path} has ABI {v >> 16}.{v & 0xFFFF}; this module needs {_ABI[0]}.{_ABI[1]} or a newer 1.x")
        return lib
    raise OSError("libcti_core not found; set CTI_CORE_LIB. Tried: " + ", ".join(tried))


_lib = _load()


def _declare(name, restype, *argtypes):
    f = getattr(_lib, name)
    f.restype = restype
    f.argtypes = list(argtypes)
    return f


# Callbacks the library calls on its own threads (ctypes takes the GIL).
_CLAIM_CB = CFUNCTYPE(None, c_void_p, c_int, c_char_p)
_EVENT_CB = CFUNCTYPE(None, c_void_p, c_char_p)

# Strings the library returns are freed with cti_string_free, so they are
# declared c_void_p: c_char_p would copy them and lose the pointer.
_OUT = POINTER(c_void_p)
_abi_version = _declare("cti_abi_version", c_uint32)
_schema_version = _declare("cti_schema_version", c_uint32)
_version = _declare("cti_version", c_char_p)
_last_error = _declare("cti_last_error", c_char_p)
_last_retry_after = _declare("cti_last_retry_after", c_uint32)
_limits_default = _declare("cti_limits_default", c_int, POINTER(Limits))
_nick_limits_default = _declare("cti_nick_limits_default", c_int, POINTER(NickLimits))
_string_free = _declare("cti_string_free", None, c_void_p)
_open = _declare("cti_store_open", c_int, c_char_p, POINTER(c_void_p))
_open_readonly = _declare("cti_store_open_readonly", c_int, c_char_p, POINTER(c_void_p))
_close = _declare("cti_store_close", None, c_void_p)
_claim = _declare("cti_claim", c_int, c_void_p, c_char_p, c_char_p, _OUT)
_claim_async = _declare("cti_claim_async", c_int, c_void_p, c_char_p, c_char_p, _CLAIM_CB, c_void_p)
_subscribe = _declare("cti_subscribe", c_int, c_void_p, _EVENT_CB, c_void_p, POINTER(c_void_p))
_unsubscribe = _declare("cti_unsubscribe", None, c_void_p)
_blocks = _declare("cti_blocks_json", c_int, c_void_p, c_char_p, _OUT)
_ranks = _declare("cti_ranks_json", c_int, c_void_p, c_char_p, _OUT)
_ranks_top = _declare("cti_ranks_top_json", c_int, c_void_p, c_char_p, c_uint32, _OUT)
_recent = _declare("cti_recent_json", c_int, c_void_p, c_uint32, _OUT)
_user = _declare("cti_user_json", c_int, c_void_p, c_char_p, c_char_p, _OUT)
_stats = _declare("cti_stats_json", c_int, c_void_p, _OUT)
_validate = _declare("cti_validate_nick", c_int, c_char_p)
_health = _declare("cti_health", c_int, c_void_p)
_check = _declare("cti_check", c_int, c_void_p)
_set_limits = _declare("cti_store_set_limits", c_int, c_void_p, POINTER(Limits))
_set_nick_limits = _declare("cti_store_set_nick_limits", c_int, c_void_p, POINTER(NickLimits))


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
        raise _error(rc, message, retry)


def _json_call(fn, *args):
    out = c_void_p()
    rc = fn(*args, ctypes.byref(out))
    try:
        _raise_for(rc)
        return json.loads(ctypes.string_at(out.value).decode("utf-8"))
    finally:
        _string_free(out)


def _fields(struct):
    return {name: getattr(struct, name) for name, _ in struct._fields_}


def abi_version():
    """(major, minor) of the loaded library."""
    v = _abi_version()
    return (v >> 16, v & 0xFFFF)


def schema_version():
    """The newest database schema the loaded library reads and writes."""
    return _schema_version()


def version():
    return _version().decode()


def last_retry_after():
    """Seconds to wait after this thread's last library call, if it was
    rate limited; 0 after any other result."""
    return _last_retry_after()


def limits_default():
    """The claim limits a new store uses, as keyword arguments of Store.set_limits."""
    out = Limits()
    _raise_for(_limits_default(ctypes.byref(out)))
    return _fields(out)


def nick_limits_default():
    """The limits on new names a new store uses, as keyword arguments of Store.set_nick_limits."""
    out = NickLimits()
    _raise_for(_nick_limits_default(ctypes.byref(out)))
    return _fields(out)


def validate_nick(nick):
    """Raises InvalidNickError with the reason if `nick` breaks the rules."""
    _raise_for(_validate(_text(nick, "nick")))


# Python callables waiting for the library, by the key passed as user_data.
# The two trampolines below are module-level, so the ctypes callback objects
# live as long as the library can call them.
_pending = {}
_keys = itertools.count(1)
_callback_thread = threading.local()


def _register(fn):
    key = next(_keys)
    _pending[key] = fn
    return key


@_CLAIM_CB
def _on_claimed(user_data, result, text):
    fn = _pending.pop(user_data, None)
    if fn is None:
        return
    text = (text or b"").decode("utf-8", "replace")
    outcome = json.loads(text) if result == OK else _error(result, text)
    # The library's callback thread: Store.close() must not run here.
    _callback_thread.active = True
    try:
        fn(outcome)
    except Exception:  # an exception cannot cross into C; report it as Python would
        sys.excepthook(*sys.exc_info())
    finally:
        _callback_thread.active = False


@_EVENT_CB
def _on_event(user_data, text):
    fn = _pending.get(user_data)
    if fn is None:
        return
    try:
        fn(json.loads(text.decode("utf-8")))
    except Exception:
        sys.excepthook(*sys.exc_info())


# Every open Store, so that a fork child can reset their locks (another thread
# of the parent may have held one when it forked).
_stores = weakref.WeakSet()


def _after_fork_in_child():
    for store in list(_stores):
        store._reset_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


class Store:
    """An open game store (a SQLite file). Thread-safe, close() included: it
    waits for calls in progress on other threads, and later calls raise
    ClosedError. close() or use `with`.

    Store(path) opens for writing (one writer per file: LockedError names the
    holder); Store(path, readonly=True) opens an existing store for reading
    beside a writer in this or another process."""

    def __init__(self, path, readonly=False):
        self._state = threading.Condition()
        self._inflight = 0
        self._subscriptions = set()
        self._handle = None
        self.readonly = bool(readonly)
        handle = c_void_p()
        opener = _open_readonly if readonly else _open
        _raise_for(opener(_text(os.fspath(path), "path"), ctypes.byref(handle)))
        self._handle = handle
        _stores.add(self)

    def _reset_after_fork(self):
        self._state = threading.Condition()
        self._inflight = 0

    def _enter(self):
        """Counts a call in flight and returns the handle, or raises ClosedError."""
        with self._state:
            if not self._handle:
                raise _error(CLOSED, "the store is closed")
            self._inflight += 1
            return self._handle

    def _leave(self):
        with self._state:
            self._inflight -= 1
            if self._inflight == 0:
                self._state.notify_all()

    def _call(self, fn, *args):
        """fn(handle, *args) as one call in flight."""
        handle = self._enter()
        try:
            return fn(handle, *args)
        finally:
            self._leave()

    def _json(self, fn, *args):
        """fn(handle, *args, &out) as one call in flight; the answer decoded."""
        return self._call(lambda h: _json_call(fn, h, *args))

    def close(self):
        """Ends the subscriptions, waits for calls in progress, and closes the
        store. Idempotent. Not allowed inside a claim callback (WrongThreadError)."""
        if getattr(_callback_thread, "active", False):
            raise _error(WRONG_THREAD, "Store.close() is not allowed in a claim callback")
        with self._state:
            handle, self._handle = self._handle, None
            if not handle:
                return
            while self._inflight:
                self._state.wait()
            subscriptions, self._subscriptions = self._subscriptions, set()
        # The header asks for subscriptions to end before their store closes.
        for sub in subscriptions:
            sub.close()
        _close(handle)

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
        return self._json(_claim, _text(ip, "ip"), _text(nick, "nick"))

    def claim_async(self, ip, nick, callback):
        """Queues a claim and returns at once; `callback(outcome)` runs on a
        library thread after the commit, with the claim (a dict) or a CtiError.
        Keep it short: no other claim is answered while it runs. Inside it,
        claim(), health(), check() raise WrongThreadError and close() is refused."""
        key = _register(callback)
        try:
            self._call(lambda h: _raise_for(_claim_async(h, _text(ip, "ip"), _text(nick, "nick"), _on_claimed, key)))
        except BaseException:
            _pending.pop(key, None)
            raise

    def subscribe(self, callback):
        """Calls `callback(event)` on a library thread with each commit event
        (a dict; see cti_subscribe in the header), in order, until the returned
        Subscription is closed or the store closes."""
        return Subscription(self, callback)

    def blocks(self, window=None):
        return self._json(_blocks, _text(window, "window"))

    def ranks(self, window=None, limit=None):
        """The ranking of `window`; with `limit`, only its first rows
        (`ranked` still counts them all)."""
        if limit is None:
            return self._json(_ranks, _text(window, "window"))
        return self._json(_ranks_top, _text(window, "window"), limit)

    def recent(self, limit=50):
        return self._json(_recent, limit)

    def user(self, nick, window=None):
        return self._json(_user, _text(nick, "nick"), _text(window, "window"))

    def stats(self):
        return self._json(_stats)

    def set_limits(self, per_address_per_minute=0, per_address_burst=0, per_net24_per_minute=0, per_net24_burst=0):
        """Claim rate limits (all 0: off); see limits_default()."""
        limits = Limits(per_address_per_minute, per_address_burst, per_net24_per_minute, per_net24_burst)
        self._call(lambda h: _raise_for(_set_limits(h, ctypes.byref(limits))))

    def set_nick_limits(self, per_address_per_hour=0, per_address_burst=0, per_net24_per_hour=0, per_net24_burst=0):
        """Limits on claims by new names (all 0: off); see nick_limits_default()."""
        limits = NickLimits(per_address_per_hour, per_address_burst, per_net24_per_hour, per_net24_burst)
        self._call(lambda h: _raise_for(_set_nick_limits(h, ctypes.byref(limits))))

    def health(self):
        self._call(lambda h: _raise_for(_health(h)))

    def check(self):
        """Raises InconsistentError if the aggregates disagree with a recount."""
        self._call(lambda h: _raise_for(_check(h)))


class Subscription:
    """Commit events of a Store delivered to a callback; close() (or `with`)
    ends them: once it returns, the callback is not running and will not run
    (unless called from the callback itself: then no other call starts)."""

    def __init__(self, store, callback):
        self._lock = threading.Lock()
        self._key = _register(callback)
        self._store = weakref.ref(store)
        self._handle = c_void_p()

        def subscribe(h):
            _raise_for(_subscribe(h, _on_event, self._key, ctypes.byref(self._handle)))
            # Still in flight: Store.close() cannot have taken its list yet.
            with store._state:
                store._subscriptions.add(self)

        try:
            store._call(subscribe)
        except BaseException:
            _pending.pop(self._key, None)
            raise

    def close(self):
        with self._lock:
            handle, self._handle = self._handle, None
        if handle:
            _unsubscribe(handle)
            _pending.pop(self._key, None)
            store = self._store()
            if store is not None:
                with store._state:
                    store._subscriptions.discard(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
