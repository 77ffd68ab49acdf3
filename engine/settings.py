# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl.html).
"""The runner's settings, in one place.

Defaults, bounds and the reading of ``ir.config_parameter`` live here; callers pass the
values they got from :func:`read_settings` (or explicit ones, checked by the same
bounds) to the runner and never read parameters themselves.
"""

from dataclasses import dataclass, field

from odoo.service import server as odoo_server
from odoo.tools import config

from .compat import server_wide_modules

PARAM_PREFIX = "deltatech_queue_job."
PARAM_BATCH_SIZE = PARAM_PREFIX + "batch_size"
PARAM_MAX_SECONDS = PARAM_PREFIX + "max_seconds"
PARAM_RUNNER_COUNT = PARAM_PREFIX + "runner_count"
PARAM_CHANNELS = PARAM_PREFIX + "channels"
PARAM_API_KEY_HASH = PARAM_PREFIX + "api_key_hash"
PARAM_HISTORY_DAYS = PARAM_PREFIX + "history_days"
PARAM_ASYNC_COMMIT = PARAM_PREFIX + "async_commit"

# name: (default, minimum, maximum)
BOUNDS = {
    "batch_size": (20, 1, 1000),
    "max_seconds": (50, 1, 600),
    "runner_count": (2, 1, 16),
    "history_days": (30, 1, 3650),
}

# Seconds kept free below a platform time limit (limit_time_real_cron for the cron,
# limit_time_real for HTTP): room for the job in flight, its commit and the cron's own
# bookkeeping, so that the worker finishes before the platform kills it.
LIMIT_MARGIN_MIN = 5
LIMIT_MARGIN_RATIO = 0.2


class SettingsError(ValueError):
    """A setting or a runner parameter is out of its bounds.

    ``field`` names the offending parameter, so that callers (the API, the settings
    form) can say which one.
    """

    def __init__(self, field, message):
        super().__init__(message)
        self.field = field


def check_int(name, value):
    """Return ``value`` as an int within the bounds of setting ``name``.

    Booleans, floats with a fraction and non-numeric strings are refused: a clear
    error beats a silently truncated batch size.
    """
    _default, low, high = BOUNDS[name]
    not_an_int = SettingsError(
        name, f"{name} must be an integer between {low} and {high}"
    )
    if isinstance(value, bool) or value is None:
        raise not_an_int
    if isinstance(value, float):
        if not value.is_integer():
            raise not_an_int
        value = int(value)
    if isinstance(value, str):
        text = value.strip()
        # isdigit() alone also accepts other scripts' digits ("३", read as 3) and
        # superscripts ("²", which int() then refuses with a plain ValueError).
        if not (text.isascii() and text.lstrip("-").isdigit()) or len(text) > 12:
            raise not_an_int
        value = int(text)
    if not isinstance(value, int):
        raise not_an_int
    if not low <= value <= high:
        raise SettingsError(name, f"{name} must be between {low} and {high}")
    return value


@dataclass(frozen=True)
class ChannelRules:
    """What limits the channels: ``capacities`` (``{channel: n}``, each running job
    holds a slot of its channel and of its parents), ``paused`` (channels whose jobs,
    subchannels included, do not start) and ``sequential`` (channels whose jobs run one
    at a time, in queue order, and stop at a failed job), as queue_job's own runner."""

    capacities: dict = field(default_factory=dict)
    paused: frozenset = frozenset()
    sequential: frozenset = frozenset()

    def merged(self, other):
        """Both sets of rules at once: the smaller capacity, every pause and
        sequence."""
        capacities = dict(self.capacities)
        for name, capacity in other.capacities.items():
            capacities[name] = min(capacity, capacities.get(name, capacity))
        for name in self.sequential | other.sequential:
            capacities[name] = 1
        return ChannelRules(
            capacities,
            self.paused | other.paused,
            self.sequential | other.sequential,
        )


def anchor_channel(name):
    """Channel names that do not start at ``root`` are anchored there."""
    return name if name == "root" or name.startswith("root.") else "root." + name


def parse_channel_rules(text):
    """Parse queue_job's ``channels`` syntax into :class:`ChannelRules`.

    ``"root:4,root.mail:1:sequential,root.sync:1:paused"``; a channel without a
    capacity gets 1, like queue_job's own runner. Other options
    (``root.x:2:throttle=1``) are ignored: this runner does not throttle.
    """
    capacities = parse_channels(text)
    paused, sequential = set(), set()
    for raw in (text or "").split(","):
        parts = [part.strip() for part in raw.split(":")]
        if len(parts) < 3 or not parts[0]:
            continue
        name = anchor_channel(parts[0])
        options = set(parts[2:])
        if "paused" in options:
            paused.add(name)
        if "sequential" in options:
            sequential.add(name)
    return ChannelRules({}, frozenset(paused), frozenset(sequential)).merged(
        ChannelRules(capacities)
    )


def parse_channels(text):
    """Parse queue_job's ``channels`` syntax into ``{channel: capacity}``.

    ``"root:4,root.mail:1"`` gives ``{"root": 4, "root.mail": 1}``; a channel without
    a capacity (``"root.x"``) gets 1, like queue_job's own runner. Channel names that do
    not start at ``root`` are anchored there. Options after the capacity
    (``root.x:2:sequential``) are read by :func:`parse_channel_rules`.
    """
    capacities = {}
    for raw in (text or "").split(","):
        item = raw.strip()
        if not item:
            continue
        parts = item.split(":")
        name = parts[0].strip()
        if not name:
            raise SettingsError("channels", f"invalid channel specification {item!r}")
        name = anchor_channel(name)
        capacity = 1
        if len(parts) > 1 and parts[1].strip():
            cap = parts[1].strip()
            if not cap.isdigit() or int(cap) < 1:
                raise SettingsError(
                    "channels",
                    f"invalid capacity {cap!r} for channel {name!r} "
                    "(a positive integer is expected)",
                )
            capacity = int(cap)
        capacities[name] = capacity
    return capacities


def limit_cap(limit):
    """Seconds a runner may spend under a platform time limit ``limit`` (0: none).

    Under the cron they are counted from the worker's last heartbeat, not from the
    runner's start: see engine/watchdog.py.
    """
    if not limit or limit <= 0:
        return None
    margin = max(LIMIT_MARGIN_MIN, limit * LIMIT_MARGIN_RATIO)
    return max(1, int(limit - margin))


def http_time_cap():
    """Budget cap under the HTTP worker's time limit, ``None`` when unlimited."""
    return limit_cap(config.get("limit_time_real"))


def queue_job_runner_in_this_server():
    """Whether this server also starts queue_job's own jobrunner, by queue_job's rule.

    ``queue_job`` among the server-wide modules (``--load``, ``server_wide_modules``),
    a server that serves (not ``--stop-after-init``, not ``odoo shell``), and a
    jobrunner that queue_job considers enabled: its root channel capacity is not 0
    (``ODOO_QUEUE_JOB_CHANNELS`` or the ``[queue_job]`` section's ``channels``; from
    queue_job 18.0.4 also ``max_capacity``).
    """
    # Imported here: the rest of this module is plain settings, which the stress
    # suite loads without queue_job (which needs a running Odoo's addons path).
    from odoo.addons.queue_job.jobrunner import _is_runner_enabled  # noqa: PLC0415

    return (
        "queue_job" in server_wide_modules()
        and odoo_server.server is not None
        and not config.get("stop_after_init")
        and _is_runner_enabled()
    )


def http_run_budget(settings, params):
    """Batch size and time budget of a runner started by an HTTP request.

    ``params`` may carry ``batch_size`` and ``max_seconds`` (checked by the bounds
    above); the missing ones come from ``settings`` (a :class:`RunnerSettings`). The
    budget must end before the HTTP worker's ``limit_time_real`` kills the request
    mid-batch: an explicit ``max_seconds`` above :func:`http_time_cap` is refused, the
    configured default is lowered to it.
    """
    if "batch_size" in params:
        batch_size = check_int("batch_size", params["batch_size"])
    else:
        batch_size = settings.batch_size
    cap = http_time_cap()
    if "max_seconds" in params:
        max_seconds = check_int("max_seconds", params["max_seconds"])
        if cap is not None and max_seconds > cap:
            raise SettingsError(
                "max_seconds",
                f"max_seconds must not exceed {cap} on this server: its HTTP time "
                f"limit (limit_time_real = {config.get('limit_time_real')} s) would "
                "kill the request mid-batch",
            )
    else:
        max_seconds = (
            settings.max_seconds if cap is None else min(settings.max_seconds, cap)
        )
    return batch_size, max_seconds


@dataclass(frozen=True)
class RunnerSettings:
    batch_size: int
    max_seconds: int
    runner_count: int
    channels: str
    history_days: int
    # Commit each job without waiting for its WAL flush (synchronous_commit = off):
    # off by default, see the README's "How it works".
    async_commit: bool = False

    @property
    def channel_capacities(self):
        return parse_channels(self.channels)

    @property
    def channel_rules(self):
        """The rules of the settings' channels (queue_job 18.0.4's channel records
        add theirs: queue.job.channel._dqj_channel_rules)."""
        return parse_channel_rules(self.channels)


def _read_int(params, key, name):
    default = BOUNDS[name][0]
    raw = params.get_param(key)
    if raw in (None, False, ""):
        return default
    try:
        return check_int(name, raw)
    except SettingsError:
        # A hand-edited parameter out of bounds must not stop the queue.
        return default


def read_settings(env):
    """Read the runner settings (``ir.config_parameter`` is ormcached: no query)."""
    params = env["ir.config_parameter"].sudo()
    channels = params.get_param(PARAM_CHANNELS) or ""
    try:
        parse_channels(channels)
    except SettingsError:
        channels = ""
    return RunnerSettings(
        batch_size=_read_int(params, PARAM_BATCH_SIZE, "batch_size"),
        max_seconds=_read_int(params, PARAM_MAX_SECONDS, "max_seconds"),
        runner_count=_read_int(params, PARAM_RUNNER_COUNT, "runner_count"),
        channels=channels,
        history_days=_read_int(params, PARAM_HISTORY_DAYS, "history_days"),
        async_commit=str(params.get_param(PARAM_ASYNC_COMMIT) or "").lower()
        in ("1", "true"),
    )
