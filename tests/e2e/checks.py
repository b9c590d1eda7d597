"""The checks of the e2e scripts that import it: each failed check raises
Failure, each passed one is counted, and waits poll with a deadline."""

import time


class Failure(Exception):
    pass


class Checks:
    """Counts checks and logs under a script's name."""

    def __init__(self, name):
        self.name = name
        self.count = 0

    def log(self, msg):
        print(f"[{self.name} {time.strftime('%H:%M:%S')}] {msg}", flush=True)

    def check(self, cond, msg):
        self.count += 1
        if not cond:
            raise Failure(msg)

    def check_eq(self, actual, expected, what):
        self.check(actual == expected, f"{what}: expected {expected!r}, got {actual!r}")

    def wait_for(self, what, cond, timeout=30.0):
        """Polls cond() until it returns a truthy value or the deadline passes."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = cond()
            if last:
                return last
            time.sleep(0.1)
        raise Failure(f"timed out after {timeout}s waiting for {what} (last: {last!r})")
