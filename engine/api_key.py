# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl.html).
"""The external API's key: generated once, shown once, stored as a salted hash.

A dump of the database or a read of ``ir.config_parameter`` gives no working key.
Generating a new key replaces the stored hash, which revokes the old key at once.
"""

import hashlib
import hmac
import secrets

from .settings import PARAM_API_KEY_HASH

SCHEME = "pbkdf2_sha256"
ITERATIONS = 60_000
# Keys longer than this are refused before hashing: a hostile caller must not make the
# server hash megabytes.
MAX_KEY_LENGTH = 256


def _hash(key, salt, iterations=ITERATIONS):
    digest = hashlib.pbkdf2_hmac("sha256", key.encode(), salt.encode(), iterations)
    return digest.hex()


def hash_api_key(key):
    salt = secrets.token_hex(16)
    return f"{SCHEME}${ITERATIONS}${salt}${_hash(key, salt)}"


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
    try:
        scheme, iterations, salt, expected = stored.split("$")
        iterations = int(iterations)
    except ValueError:
        return False
    if scheme != SCHEME:
        return False
    return hmac.compare_digest(_hash(candidate, salt, iterations), expected)
