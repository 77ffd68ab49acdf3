# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl.html).
"""The external API's key: generated once, shown once, stored as a salted hash.

A dump of the database or a read of ``ir.config_parameter`` gives no working key.
Generating a new key replaces the stored hash, which revokes the old key at once.

Two stored formats, told apart by their first field:

* ``hmac_sha256$<salt>$<digest>``: the keys this addon generates, 256 random bits
  (``secrets.token_urlsafe(32)``). Nobody guesses or inverts such a key, whatever the
  hash, so one HMAC-SHA256 is enough: a stretched hash would only give anonymous
  callers the server's CPU to burn (60,000 PBKDF2 rounds: tens of milliseconds per
  call, against microseconds).
* ``pbkdf2_sha256$<iterations>$<salt>$<digest>``: keys stored before, and keys of
  unknown strength (the original module's, chosen by hand, carried over by
  takeover.py), which a dump must not let anyone brute-force. Verified with PBKDF2
  until the key is replaced.
"""

import hashlib
import hmac
import secrets

from .settings import PARAM_API_KEY_HASH

SCHEME = "hmac_sha256"
STRETCHED_SCHEME = "pbkdf2_sha256"
ITERATIONS = 60_000
# Keys longer than this are refused before hashing: a hostile caller must not make the
# server hash megabytes.
MAX_KEY_LENGTH = 256


def _pbkdf2(key, salt, iterations=ITERATIONS):
    digest = hashlib.pbkdf2_hmac("sha256", key.encode(), salt.encode(), iterations)
    return digest.hex()


def _hmac(key, salt):
    return hmac.new(salt.encode(), key.encode(), hashlib.sha256).hexdigest()


def hash_api_key(key, stretched=False):
    """The stored form of ``key``: HMAC-SHA256 for a generated key, PBKDF2
    (``stretched``) for a key of unknown strength."""
    salt = secrets.token_hex(16)
    if stretched:
        return f"{STRETCHED_SCHEME}${ITERATIONS}${salt}${_pbkdf2(key, salt)}"
    return f"{SCHEME}${salt}${_hmac(key, salt)}"


def generate_api_key(env):
    """Store the hash of a new random key and return the key (shown once).

    Running servers use it (and stop accepting the old one) as soon as this
    transaction commits, wherever it runs: see :func:`signal_key_change`.
    """
    key = secrets.token_urlsafe(32)
    env["ir.config_parameter"].sudo().set_param(PARAM_API_KEY_HASH, hash_api_key(key))
    signal_key_change(env)
    return key


def revoke_api_key(env):
    env["ir.config_parameter"].sudo().set_param(PARAM_API_KEY_HASH, False)
    signal_key_change(env)


def signal_key_change(env):
    """Tell the other server processes, once this transaction commits, that the
    parameters changed.

    Each process caches ``ir.config_parameter`` (ormcache). Odoo signals a change
    through the database at the end of a web request, so that the others drop their
    cache; an ``odoo shell`` session, a script or a cron job that commits does not, and
    until a restart the running servers would keep refusing the new key. The signal
    is sent after the commit (a rolled back change has nothing to announce) and only
    by a fully loaded registry (not during an install or upgrade).
    """
    registry = env.registry
    if registry.ready:
        env.cr.postcommit.add(registry.signal_changes)


def api_key_configured(env):
    return bool(env["ir.config_parameter"].sudo().get_param(PARAM_API_KEY_HASH))


def verify_api_key(env, candidate):
    """True when ``candidate`` is the configured key (constant-time comparison).

    No key configured means every candidate is refused: an unset key never means open.
    """
    stored = env["ir.config_parameter"].sudo().get_param(PARAM_API_KEY_HASH)
    if not stored or not isinstance(candidate, str) or not candidate:
        return False
    if len(candidate) > MAX_KEY_LENGTH:
        return False
    scheme, _sep, rest = stored.partition("$")
    try:
        if scheme == SCHEME:
            salt, expected = rest.split("$")
            actual = _hmac(candidate, salt)
        elif scheme == STRETCHED_SCHEME:
            iterations, salt, expected = rest.split("$")
            actual = _pbkdf2(candidate, salt, int(iterations))
        else:
            return False
    except ValueError:
        return False
    return hmac.compare_digest(actual, expected)
