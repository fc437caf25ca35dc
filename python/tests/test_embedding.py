"""Embedding without surprises (issue 18) through the Python binding: one
writer per store across processes, read-only handles beside a writer, foreign
files left untouched, fork, what a callback may call, close() racing a call,
subscriptions, and the small things (capped errors, retry_after)."""

import hashlib
import json
import os
import queue
import select
import signal
import sqlite3
import stat
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
import cti_core  # noqa: E402

CHILD = os.path.join(HERE, "_child.py")
HEADER = os.path.join(HERE, "..", "..", "include", "cti_core.h")
# Every wait in these tests is bounded by this, so a hang fails instead of hanging CI.
DEADLINE = 20


def unlimited(store):
    store.set_limits()
    store.set_nick_limits()
    return store


def total(store):
    return sum(b["total"] for b in store.blocks()["blocks"])


def wait_for(what, predicate, timeout=DEADLINE):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


class Child:
    """_child.py in another process, its stdout read line by line on a thread."""

    def __init__(self, role, path):
        self.proc = subprocess.Popen(
            [sys.executable, CHILD, role, path],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"),
        )
        self.lines = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.pid = int(self.expect("ready"))
        assert self.pid == self.proc.pid

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line.strip())
        self.lines.put(None)

    def expect(self, word):
        line = self.lines.get(timeout=DEADLINE)
        if line is None or not line.startswith(word + " "):
            raise AssertionError(f"child said {line!r}, expected {word}")
        return line.split(" ", 1)[1]

    def send(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def finish(self):
        self.proc.stdin.close()
        self.proc.wait(DEADLINE)
        self.proc.stdout.close()

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(DEADLINE)
        self.proc.stdin.close()
        self.proc.stdout.close()


class Tmp(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = self.tmp.name
        self.path = os.path.join(self.dir, "game.db")

    def tearDown(self):
        self.tmp.cleanup()


class OneWriterTest(Tmp):
    def test_a_second_writer_in_another_process_is_refused_and_a_reader_follows_its_claims(self):
        writer = Child("writer", self.path)
        try:
            with self.assertRaises(cti_core.LockedError) as e:
                cti_core.Store(self.path)
            self.assertEqual(e.exception.code, 13)
            self.assertIn(f"process {writer.pid}", str(e.exception))
            with cti_core.Store(self.path, readonly=True) as reader:
                self.assertEqual(total(reader), 0)
                # Each batch is committed by the writer, which stays open and
                # keeps claiming; the reader sees it without reopening.
                for seen in (25, 50, 300):
                    writer.send(f"claim {seen - total(reader)}")
                    committed = int(writer.expect("claimed"))
                    self.assertEqual(committed, seen)
                    wait_for(f"the reader to see {seen} claims", lambda: total(reader) == seen)
                self.assertEqual(reader.recent(1)["claims"][0]["ip"], "77.0.1.43")
                with self.assertRaises(cti_core.ReadOnlyError):
                    reader.claim("1.2.3.4", "reader")
                with self.assertRaises(cti_core.ReadOnlyError):
                    reader.claim_async("1.2.3.4", "reader", lambda outcome: None)
                with self.assertRaises(cti_core.ReadOnlyError):
                    reader.subscribe(lambda event: None)
                with self.assertRaises(cti_core.ReadOnlyError):
                    reader.check()
                reader.health()
                # The writer is still the only writer.
                with self.assertRaises(cti_core.LockedError):
                    cti_core.Store(self.path)
            writer.finish()
        finally:
            writer.kill()
        with unlimited(cti_core.Store(self.path)) as after:
            self.assertEqual(total(after), 300)
            after.check()

    def test_a_second_writer_in_this_process_is_refused(self):
        with cti_core.Store(self.path) as first:
            with self.assertRaises(cti_core.LockedError) as e:
                cti_core.Store(self.path)
            self.assertIn(f"this process ({os.getpid()})", str(e.exception))
            first.claim("1.2.3.4", "alice")
            first.check()
        with cti_core.Store(self.path) as second:
            self.assertEqual(total(second), 1)

    def test_kill_9_of_the_writer_frees_the_store(self):
        holder = Child("hold", self.path)
        try:
            with self.assertRaises(cti_core.LockedError) as e:
                cti_core.Store(self.path)
            self.assertIn(str(holder.pid), str(e.exception))
            os.kill(holder.pid, signal.SIGKILL)
            holder.proc.wait(DEADLINE)
            self.assertEqual(holder.proc.returncode, -signal.SIGKILL)
        finally:
            holder.kill()
        with cti_core.Store(self.path) as store:
            store.claim("1.2.3.4", "alice")
            store.check()

    def test_a_read_only_open_needs_an_existing_store(self):
        with self.assertRaises(cti_core.OpenFailedError):
            cti_core.Store(self.path, readonly=True)
        self.assertFalse(os.path.exists(self.path))


class ForeignFileTest(Tmp):
    def foreign(self, name, wal, ddl):
        path = os.path.join(self.dir, name)
        conn = sqlite3.connect(path)
        if wal:
            conn.execute("PRAGMA journal_mode = WAL")
        conn.executescript(ddl)
        conn.commit()
        conn.close()
        return path

    def test_another_programs_database_is_refused_and_left_byte_for_byte(self):
        cases = [
            ("app.db", False, "CREATE TABLE people (name TEXT); INSERT INTO people VALUES ('ann');"),
            ("players.db", True, "CREATE TABLE players (id INTEGER, score REAL); INSERT INTO players VALUES (1, 2.5);"),
        ]
        for name, wal, ddl in cases:
            path = self.foreign(name, wal, ddl)
            before = sha256(path)
            for readonly in (False, True):
                with self.assertRaises(cti_core.OpenFailedError, msg=name) as e:
                    cti_core.Store(path, readonly=readonly)
                self.assertIn("not a cti store", str(e.exception))
                self.assertEqual(sha256(path), before, f"{name} changed (readonly={readonly})")
            conn = sqlite3.connect(path)
            self.assertEqual(conn.execute("PRAGMA journal_mode").fetchone()[0], "wal" if wal else "delete")
            conn.close()
        self.assertFalse(os.path.exists(os.path.join(self.dir, "app.db-wal")), "no WAL made for it")

    def test_dev_null_and_a_fifo_are_refused_and_nothing_is_made_beside_them(self):
        for readonly in (False, True):
            with self.assertRaises(cti_core.OpenFailedError) as e:
                cti_core.Store("/dev/null", readonly=readonly)
            self.assertIn("not a regular file", str(e.exception))
        self.assertTrue(stat.S_ISCHR(os.stat("/dev/null").st_mode))
        fifo = os.path.join(self.dir, "fifo")
        os.mkfifo(fifo)
        with self.assertRaises(cti_core.OpenFailedError):
            cti_core.Store(fifo)
        self.assertEqual(os.listdir(self.dir), ["fifo"])

    def test_an_empty_file_becomes_a_store(self):
        open(self.path, "wb").close()
        with cti_core.Store(self.path) as store:
            store.claim("1.2.3.4", "alice")
        with cti_core.Store(self.path, readonly=True) as reader:
            self.assertEqual(total(reader), 1)
        conn = sqlite3.connect(self.path)
        self.assertEqual(conn.execute("PRAGMA application_id").fetchone()[0], 0x43544950)
        self.assertEqual(conn.execute("PRAGMA user_version").fetchone()[0], cti_core.schema_version())
        conn.close()


class ForkTest(Tmp):
    def test_calls_in_a_fork_child_raise_forked_and_the_parent_carries_on(self):
        store = unlimited(cti_core.Store(self.path))
        events = queue.Queue()
        sub = store.subscribe(events.put)
        store.claim("1.2.3.4", "parent")
        events.get(timeout=DEADLINE)
        read_end, write_end = os.pipe()
        child_stderr = os.path.join(self.dir, "child.stderr")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads running
            pid = os.fork()
        if pid == 0:  # the child: report, never return into unittest
            code = 1
            try:
                os.close(read_end)
                signal.alarm(DEADLINE)  # a hang kills the child with SIGALRM
                # What the library says there (a caught panic prints) is checked below.
                os.dup2(os.open(child_stderr, os.O_WRONLY | os.O_CREAT, 0o600), 2)
                report = {}
                calls = {
                    "claim": lambda: store.claim("1.2.3.5", "child"),
                    "claim_async": lambda: store.claim_async("1.2.3.6", "child", lambda o: None),
                    "health": store.health,
                    "check": store.check,
                    "blocks": store.blocks,
                    "ranks": store.ranks,
                    "recent": store.recent,
                    "user": lambda: store.user("parent"),
                    "stats": store.stats,
                    "set_limits": store.set_limits,
                    "set_nick_limits": store.set_nick_limits,
                    "subscribe": lambda: store.subscribe(lambda e: None),
                }
                for name, call in calls.items():
                    try:
                        call()
                        report[name] = "ok"
                    except cti_core.CtiError as e:
                        report[name] = type(e).__name__
                        report["message"] = str(e)
                sub.close()  # only forgotten in the child
                store.close()
                # The child opens a store of its own.
                with cti_core.Store(os.path.join(self.dir, "child.db")) as own:
                    report["own"] = own.claim("1.2.3.7", "child")["ip"]
                os.write(write_end, json.dumps(report).encode())
                code = 0
            finally:
                os._exit(code)
        os.close(write_end)
        try:
            ready, _, _ = select.select([read_end], [], [], DEADLINE)
            data = os.read(read_end, 65536) if ready else b""
        finally:
            os.close(read_end)
            status = self.reap(pid)
        with open(child_stderr) as f:
            said = f.read()
        self.assertEqual(status, 0, f"child exit status {status:#x}: {data!r} {said[:2000]}")
        self.assertFalse("panicked" in said, said[:2000])
        report = json.loads(data)
        message = report.pop("message")
        own = report.pop("own")
        self.assertEqual(set(report.values()), {"ForkedError"}, report)
        self.assertIn(f"process {os.getpid()}", message)
        self.assertEqual(own, "1.2.3.7")
        # The parent's store and subscription are untouched.
        store.claim("1.2.3.8", "parent")
        self.assertEqual(events.get(timeout=DEADLINE)["claims"][0]["ip"], "1.2.3.8")
        store.check()
        self.assertEqual(total(store), 2)
        sub.close()
        store.close()

    def reap(self, pid):
        end = time.monotonic() + DEADLINE
        while time.monotonic() < end:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return status
            time.sleep(0.02)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise AssertionError("the fork child hung")


class CallbackThreadTest(Tmp):
    def test_blocking_calls_in_a_claim_callback_raise_wrong_thread(self):
        store = unlimited(cti_core.Store(self.path))
        seen = {}
        done = threading.Event()

        def on_claimed(outcome):
            seen["outcome"] = outcome
            for name, call in {
                "claim": lambda: store.claim("9.9.9.9", "inner"),
                "health": store.health,
                "check": store.check,
                "close": store.close,
                "blocks": lambda: store.blocks()["blocks"][8]["holder"],
                "claim_async": lambda: store.claim_async("9.9.9.10", "inner", chained.put),
            }.items():
                try:
                    seen[name] = call()
                except cti_core.CtiError as e:
                    seen[name] = type(e).__name__
            done.set()

        chained = queue.Queue()
        store.claim_async("8.8.8.8", "outer", on_claimed)
        self.assertTrue(done.wait(DEADLINE), "the callback did not run")
        self.assertEqual(seen["outcome"]["ip"], "8.8.8.8")
        for name in ("claim", "health", "check", "close"):
            self.assertEqual(seen[name], "WrongThreadError", name)
        self.assertEqual(seen["blocks"], "outer", "reads are allowed")
        self.assertIsNone(seen["claim_async"])
        self.assertEqual(chained.get(timeout=DEADLINE)["ip"], "9.9.9.10")
        # Outside the callback everything works, and close() did not happen.
        store.health()
        store.check()
        self.assertEqual(total(store), 2)
        store.close()

    def test_an_exception_in_a_callback_does_not_cross_into_the_library(self):
        store = cti_core.Store(self.path)
        hooked = queue.Queue()
        old, sys.excepthook = sys.excepthook, lambda *info: hooked.put(info[1])
        try:
            store.claim_async("8.8.4.4", "a", lambda outcome: 1 / 0)
            self.assertIsInstance(hooked.get(timeout=DEADLINE), ZeroDivisionError)
        finally:
            sys.excepthook = old
        store.claim("8.8.4.5", "a")
        store.close()


class CloseTest(Tmp):
    def test_close_waits_for_a_call_in_progress_and_later_calls_raise_closed(self):
        store = cti_core.Store(self.path)
        store.claim("1.2.3.4", "alice")
        inside, go_on = threading.Event(), threading.Event()
        real = cti_core._blocks

        def slow_blocks(*args):
            # A long call into the library, as a big rendering would be.
            inside.set()
            go_on.wait(DEADLINE)
            return real(*args)

        cti_core._blocks = slow_blocks
        result, closing = {}, threading.Event()
        try:
            reader = threading.Thread(target=lambda: result.update(blocks=store.blocks()))
            reader.start()
            self.assertTrue(inside.wait(DEADLINE))
            closer = threading.Thread(target=lambda: (closing.set(), store.close()))
            closer.start()
            self.assertTrue(closing.wait(DEADLINE))
            closer.join(0.3)
            self.assertTrue(closer.is_alive(), "close() returned while a call was in progress")
            with self.assertRaises(cti_core.ClosedError) as e:
                store.claim("1.2.3.5", "bob")
            self.assertEqual(e.exception.code, 9)
        finally:
            go_on.set()
            cti_core._blocks = real
        reader.join(DEADLINE)
        closer.join(DEADLINE)
        self.assertFalse(closer.is_alive())
        self.assertEqual(result["blocks"]["blocks"][1]["holder"], "alice")
        with self.assertRaises(cti_core.ClosedError):
            store.blocks()
        store.close()  # twice is fine

    def test_many_threads_calling_while_the_store_closes(self):
        store = unlimited(cti_core.Store(self.path))
        outcomes = queue.Queue()

        def worker(t):
            i = 0
            try:
                while True:
                    store.claim(f"{t + 1}.0.{i // 256 % 256}.{i % 256}", f"t{t}")
                    store.ranks()
                    i += 1
            except Exception as e:
                outcomes.put((i, e))

        threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
        for t in threads:
            t.start()
        wait_for("some claims", lambda: total(store) >= 20)
        store.close()
        for t in threads:
            t.join(DEADLINE)
        errors = [outcomes.get(timeout=DEADLINE) for _ in threads]
        self.assertTrue(all(isinstance(e, cti_core.ClosedError) for _, e in errors), errors)
        with cti_core.Store(self.path) as again:
            again.check()
            self.assertGreaterEqual(total(again), sum(i for i, _ in errors))


class SubscriptionTest(Tmp):
    def test_commit_events_arrive_once_in_order_until_closed(self):
        store = unlimited(cti_core.Store(self.path))
        events = queue.Queue()
        with store.subscribe(events.put) as sub:
            ips = [f"5.{i // 256}.{i % 256}.1" for i in range(120)]
            for n, ip in enumerate(ips):
                store.claim(ip, f"p{n % 4}")
            claims, numbers = [], []
            while len(claims) < len(ips):
                event = events.get(timeout=DEADLINE)
                self.assertEqual(event["kind"], "commit", event)
                numbers.append(event["event"])
                claims.extend(c["ip"] for c in event["claims"])
            self.assertEqual(claims, ips, "every claim once, in commit order")
            self.assertEqual(numbers, list(range(numbers[0], numbers[0] + len(numbers))))
        self.assertEqual(sub._handle, None)
        store.claim("6.0.0.1", "late")
        time.sleep(0.3)
        self.assertTrue(events.empty(), "an event after close()")
        store.close()

    def test_closing_the_store_ends_its_subscriptions(self):
        store = cti_core.Store(self.path)
        events = queue.Queue()
        sub = store.subscribe(events.put)
        store.claim("1.1.1.1", "a")
        event = events.get(timeout=DEADLINE)
        self.assertEqual([h["window"] for h in event["holders"]], ["hour", "day", "week", "month", "year", "all"])
        store.close()
        sub.close()  # already ended: harmless
        with self.assertRaises(cti_core.ClosedError):
            store.subscribe(events.put)


class SmallThingsTest(Tmp):
    def test_a_huge_path_gives_a_capped_error(self):
        with open(HEADER) as h:
            cap = int(next(l.split()[2] for l in h if l.startswith("#define CTI_LAST_ERROR_MAX ")))
        self.assertEqual(cti_core.LAST_ERROR_MAX, cap)
        huge = os.path.join(self.dir, "x" * (1 << 20))
        for readonly in (False, True):
            with self.assertRaises(cti_core.OpenFailedError) as e:
                cti_core.Store(huge, readonly=readonly)
            size = len(str(e.exception).encode())
            self.assertLessEqual(size, cap)
            self.assertGreater(size, cap // 2, "cut, not dropped")

    def test_retry_after_is_zero_after_any_other_result(self):
        with cti_core.Store(self.path) as store:
            store.set_limits(per_address_per_minute=60, per_address_burst=1)
            store.claim("8.8.8.8", "a")
            with self.assertRaises(cti_core.RateLimitedError) as e:
                store.claim("8.8.8.8", "b")
            self.assertGreater(e.exception.retry_after, 0)
            self.assertEqual(cti_core.last_retry_after(), e.exception.retry_after)
            store.claim("9.9.9.9", "a")
            self.assertEqual(cti_core.last_retry_after(), 0)
            with self.assertRaises(cti_core.RateLimitedError):
                store.claim("8.8.8.8", "b")
            with self.assertRaises(cti_core.InvalidNickError):
                store.claim("1.1.1.1", "no spaces")
            self.assertEqual(cti_core.last_retry_after(), 0)

    def test_limits_defaults_and_a_burst_of_zero_is_refused(self):
        self.assertEqual(
            cti_core.limits_default(),
            {"per_address_per_minute": 60, "per_address_burst": 10, "per_net24_per_minute": 1200, "per_net24_burst": 512},
        )
        self.assertEqual(
            cti_core.nick_limits_default(),
            {"per_address_per_hour": 30, "per_address_burst": 10, "per_net24_per_hour": 240, "per_net24_burst": 60},
        )
        with cti_core.Store(self.path) as store:
            with self.assertRaises(cti_core.InvalidArgumentError):
                store.set_limits(per_address_per_minute=60, per_address_burst=0)
            with self.assertRaises(cti_core.InvalidArgumentError):
                store.set_nick_limits(per_net24_per_hour=10)
            store.set_limits(**cti_core.limits_default())
            store.set_nick_limits(**cti_core.nick_limits_default())

    def test_new_names_are_limited_per_address_until_turned_off(self):
        with cti_core.Store(self.path) as store:
            store.set_limits()
            burst = cti_core.nick_limits_default()["per_address_burst"]
            for i in range(burst):
                store.claim("7.7.7.7", f"new{i}")
            with self.assertRaises(cti_core.RateLimitedError) as e:
                store.claim("7.7.7.7", "onemore")
            self.assertIn("new names", str(e.exception))
            store.set_nick_limits()
            store.claim("7.7.7.7", "onemore")

    def test_error_classes_cover_every_code_in_the_header(self):
        with open(HEADER) as h:
            codes = {}
            for line in h:
                line = line.strip().rstrip(",")
                if line.startswith("CTI_RESULT_") and " = " in line:
                    name, value = line[len("CTI_RESULT_") :].split(" = ")
                    codes[int(value)] = name
        codes.pop(0)
        self.assertEqual(cti_core.CODES, codes)
        for code, name in codes.items():
            cls = cti_core._CLASSES[code]
            self.assertTrue(issubclass(cls, cti_core.CtiError))
            self.assertEqual(cls.CODE, code)
            self.assertIs(getattr(cti_core, cls.__name__), cls)
        self.assertEqual(cti_core.LockedError.__name__, "LockedError")
        self.assertEqual(cti_core.WrongThreadError.CODE, 15)


if __name__ == "__main__":
    unittest.main()
