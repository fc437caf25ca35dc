"""Tests of the ctypes binding against the built library (CTI_CORE_LIB)."""

import os
import sys
import tempfile
import threading
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import cti_core  # noqa: E402


class StoreTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.path = os.path.join(self.dir.name, "game.db")
        self.store = cti_core.Store(self.path)

    def tearDown(self):
        self.store.close()
        self.dir.cleanup()

    def holder(self, block, window=None):
        b = self.store.blocks(window)["blocks"][block]
        return b["holder"], b["tied"], b["claims"], b["total"]

    def test_claim_returns_the_claim(self):
        c = self.store.claim("1.2.3.4", "alice")
        self.assertEqual((c["ip"], c["name"], c["block"]), ("1.2.3.4", "alice", 1))
        self.assertTrue(c["claimed_at"].endswith("Z"))

    def test_steal_and_tie(self):
        self.store.claim("10.0.0.1", "alice")
        self.store.claim("10.0.0.2", "alice")
        self.store.claim("10.0.0.3", "bob")
        self.assertEqual(self.holder(10), ("alice", False, 2, 3))
        self.store.claim("10.0.0.1", "bob")
        self.assertEqual(self.holder(10), ("bob", False, 2, 3))
        self.store.claim("20.0.0.1", "alice")
        self.store.claim("20.0.0.2", "carol")
        self.assertEqual(self.holder(20), (None, True, 1, 2))

    def test_ranking_order(self):
        for ip in ("1.0.0.1", "2.0.0.1"):
            self.store.claim(ip, "zed")
        for ip in ("3.0.0.1", "3.0.0.2"):
            self.store.claim(ip, "amy")
        for ip in ("4.0.0.1", "4.0.0.2"):
            self.store.claim(ip, "Bob")
        names = [r["name"] for r in self.store.ranks("all")["rankings"]]
        self.assertEqual(names, ["zed", "Bob", "amy"])
        self.assertEqual(self.store.ranks("hour")["window"], "hour")
        top = self.store.ranks("all", limit=2)
        self.assertEqual([r["name"] for r in top["rankings"]], ["zed", "Bob"])
        self.assertEqual(top["ranked"], 3)
        self.assertEqual(self.store.ranks("all", limit=0)["rankings"], [])
        self.assertEqual(len(self.store.ranks(limit=10)["rankings"]), 3)

    def test_recent_and_user(self):
        self.store.claim("7.0.0.1", "alice")
        self.store.claim("7.0.0.2", "bob")
        self.store.claim("7.0.0.3", "bob")
        recent = self.store.recent(2)["claims"]
        self.assertEqual([c["ip"] for c in recent], ["7.0.0.3", "7.0.0.2"])
        u = self.store.user("alice")
        self.assertEqual(u["standing"], [{"block": 7, "rank": 2, "of": 2, "tied": False, "claims": 1}])
        with self.assertRaises(cti_core.CtiError) as e:
            self.store.user("nobody")
        self.assertEqual(e.exception.name, "NOT_FOUND")

    def test_errors(self):
        cases = [
            (("1.2.3.4", "no spaces"), "INVALID_NICK"),
            (("1.2.3.4", ""), "INVALID_NICK"),
            (("1.2.3.4", "x" * 41), "INVALID_NICK"),
            (("2001:db8::1", "alice"), "NOT_IPV4"),
            (("not an ip", "alice"), "INVALID_ADDRESS"),
        ]
        for args, name in cases:
            with self.assertRaises(cti_core.CtiError) as e:
                self.store.claim(*args)
            self.assertEqual(e.exception.name, name, args)
            self.assertTrue(str(e.exception))
        with self.assertRaises(cti_core.CtiError) as e:
            self.store.ranks("fortnight")
        self.assertEqual(e.exception.name, "UNKNOWN_WINDOW")
        with self.assertRaises(TypeError):
            self.store.claim(b"1.2.3.4", "alice")
        self.assertEqual(self.store.recent()["claims"], [])
        self.assertEqual(self.store.claim("::ffff:5.6.7.8", "alice")["ip"], "5.6.7.8")

    def test_rate_limit(self):
        self.store.set_limits(per_address_per_minute=60, per_address_burst=1)
        self.store.claim("8.8.8.8", "a")
        with self.assertRaises(cti_core.CtiError) as e:
            self.store.claim("8.8.8.8", "b")
        self.assertEqual((e.exception.name, e.exception.retry_after), ("RATE_LIMITED", 1))
        self.assertEqual(self.store.stats()["claims_rate_limited"], 1)

    def test_many_threads(self):
        errors = []

        def worker(t):
            try:
                for i in range(100):
                    self.store.claim(f"{t + 1}.0.{i}.1", f"t{t % 3}")
            except Exception as e:  # pragma: no cover - reported below
                errors.append(e)

        threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        self.assertEqual(errors, [])
        total = sum(b["total"] for b in self.store.blocks()["blocks"])
        self.assertEqual(total, 800)
        self.assertEqual(self.holder(2)[0], "t1")
        self.store.check()
        self.store.health()

    def test_reopen_keeps_everything(self):
        self.store.claim("9.0.0.1", "alice")
        self.store.close()
        with self.assertRaises(cti_core.CtiError):
            self.store.claim("9.0.0.2", "alice")
        with cti_core.Store(self.path) as again:
            self.assertEqual(again.blocks()["blocks"][9]["holder"], "alice")
            again.check()


class ModuleTest(unittest.TestCase):
    def test_versions(self):
        self.assertEqual(cti_core.abi_version()[0], 1)
        self.assertTrue(cti_core.version())

    def test_validate_nick(self):
        cti_core.validate_nick("ok_nick")
        with self.assertRaises(cti_core.CtiError):
            cti_core.validate_nick("<script>")

    def test_open_failure(self):
        with self.assertRaises(cti_core.CtiError) as e:
            cti_core.Store("/nonexistent/dir/game.db")
        self.assertEqual(e.exception.name, "OPEN_FAILED")


if __name__ == "__main__":
    unittest.main()
