# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl.html).
"""Brute-force damping for the API key: per remote address, per worker process.

Every refused authentication counts: a wrong key, and as well a request without a key,
for a database that is not served or has no key (the caller cannot tell them apart,
see controllers/main.py), so that probing costs the same as guessing.

The memory is the process's own: with ``--workers=N`` an address gets up to N times
the allowance before every worker refuses it. That is enough to make guessing a
256-bit key hopeless while keeping no shared state; a reverse proxy rate limit is the
tool for more. The address is werkzeug's ``remote_addr``: behind a reverse proxy,
Odoo must run with ``proxy_mode`` so that it is the caller's (from
``X-Forwarded-For``), not the proxy's. Without it every caller shares the proxy's
allowance, and anyone who sends ten bad requests locks the scheduler out for
``BLOCK_SECONDS``. Without a proxy, ``proxy_mode`` must stay off: the caller would
choose its address in ``X-Forwarded-For``.
"""

import threading
import time
from collections import OrderedDict, deque

# After FAILURE_LIMIT refused authentications within FAILURE_WINDOW seconds, an address
# is refused for BLOCK_SECONDS, whatever key it sends.
FAILURE_LIMIT = 10
FAILURE_WINDOW = 300
BLOCK_SECONDS = 300
# Addresses remembered at most (the least recently seen are forgotten first): a flood
# from many addresses must not grow the worker's memory without bound.
MAX_ADDRESSES = 10_000


class _Entry:
    __slots__ = ("blocked_until", "failures")

    def __init__(self):
        self.failures = deque()
        self.blocked_until = 0.0


class FailedKeyThrottle:
    def __init__(
        self,
        limit=FAILURE_LIMIT,
        window=FAILURE_WINDOW,
        block=BLOCK_SECONDS,
        max_addresses=MAX_ADDRESSES,
    ):
        self.limit = limit
        self.window = window
        self.block = block
        self.max_addresses = max_addresses
        self._entries = OrderedDict()
        self._lock = threading.Lock()

    def blocked_for(self, address):
        """Seconds ``address`` stays refused (0 when it may try)."""
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(address)
            if entry is None or entry.blocked_until <= now:
                return 0
            return int(entry.blocked_until - now) + 1

    def failed(self, address):
        """Count a refused authentication from ``address``; True when it is now
        blocked."""
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(address)
            if entry is None:
                entry = self._entries[address] = _Entry()
                while len(self._entries) > self.max_addresses:
                    self._entries.popitem(last=False)
            else:
                self._entries.move_to_end(address)
            failures = entry.failures
            failures.append(now)
            while failures and failures[0] <= now - self.window:
                failures.popleft()
            if len(failures) >= self.limit:
                entry.blocked_until = now + self.block
                failures.clear()
                return True
            return False

    def succeeded(self, address):
        """The right key: forget the address's earlier failures."""
        with self._lock:
            self._entries.pop(address, None)

    def reset(self):
        with self._lock:
            self._entries.clear()


# The one throttle of this worker process.
failed_keys = FailedKeyThrottle()
