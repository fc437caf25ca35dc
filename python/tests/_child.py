"""A second process for the tests (not a test module itself):

    _child.py hold PATH     opens PATH for writing, says "ready PID", waits for stdin to close
    _child.py writer PATH   the same, then for each line "claim N" on stdin claims N more
                            addresses and says "claimed TOTAL"
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import cti_core  # noqa: E402


def main():
    role, path = sys.argv[1], sys.argv[2]
    with cti_core.Store(path) as store:
        store.set_limits()
        store.set_nick_limits()
        print(f"ready {os.getpid()}", flush=True)
        total = 0
        for line in sys.stdin:
            if role != "writer":
                continue
            for _ in range(int(line.split()[1])):
                store.claim(f"77.{total // 65536}.{total // 256 % 256}.{total % 256}", f"w{total % 3}")
                total += 1
            print(f"claimed {total}", flush=True)


if __name__ == "__main__":
    main()
