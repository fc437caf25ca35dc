"""Commit events from Python: subscribe to a store, claim, and print each event
as the library delivers it; then read the same state through a read-only handle,
as a backup or analytics tool beside the running writer would.

    CTI_CORE_LIB=target/release/deps/libcti_core.so python3 python/examples/subscribe.py /tmp/game.db

Prints one `event {...}` line per event (JSON), `reader {...}` (block 10 as the
reader sees it), the two refusals and `ok`, as examples/subscribe.c does.
"""

import json
import os
import queue
import sys

# The module next door when run from the source tree; an installed one otherwise.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import cti_core  # noqa: E402


def main(path):
    events = queue.Queue()
    with cti_core.Store(path) as store:
        # The callback runs on a library thread: hand the event over and return.
        with store.subscribe(events.put):
            claims = [("10.0.0.1", "alice"), ("10.0.0.2", "alice"), ("10.0.0.3", "bob"), ("10.0.0.1", "bob")]
            for ip, nick in claims:
                store.claim(ip, nick)
            seen = 0
            while seen < len(claims):
                event = events.get(timeout=10)
                print("event", json.dumps(event, sort_keys=True), flush=True)
                seen += len(event.get("claims", []))
        # Any number of read-only handles may sit beside the one writer.
        with cti_core.Store(path, readonly=True) as reader:
            print("reader", json.dumps(reader.blocks("all")["blocks"][10]), flush=True)
            try:
                reader.claim("10.0.0.4", "carol")
            except cti_core.ReadOnlyError as e:
                print("read-only:", e)
        # A second writer is refused, naming the holder.
        try:
            cti_core.Store(path)
        except cti_core.LockedError as e:
            print("locked:", e)
    print("ok")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} DATABASE")
    main(sys.argv[1])
