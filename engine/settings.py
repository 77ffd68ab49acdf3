# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl.html).
"""The runner's settings, in one place.

Defaults, bounds and the reading of ``ir.config_parameter`` live here; callers pass the
values they got from :func:`read_settings` (or explicit ones, checked by the same
bounds) to the runner and never read parameters themselves.
"""

import logging
import os
from dataclasses import dataclass, field

from odoo.service import server as odoo_server
from odoo.tools import config

from .compat import config_section, server_wide_modules

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

_logger = logging.getLogger(__name__)


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


# queue_job's channel options this runner applies; the others queue_job knows are
# accepted and ignored (this runner neither throttles nor gives sub-channels defaults).
CHANNEL_FLAGS = ("paused", "sequential")
IGNORED_CHANNEL_OPTIONS = ("throttle", "capacity_default", "sequential_default")
CHANNEL_EXAMPLE = "root:4,root.mail:1:sequential"


def _channel_items(text):
    """The entries of a channels text: separated by commas or, as queue_job also
    reads them from its configuration file, by line breaks; blank ones dropped."""
    for raw in (text or "").replace("\n", ",").split(","):
        item = raw.strip()
        if item:
            yield item


def _parse_channel_item(item):
    """``name[:capacity[:option[=value]]...]`` -> (name, capacity, flags).

    Raises :class:`SettingsError` naming the part of ``item`` that does not parse.
    """
    parts = [part.strip() for part in item.split(":")]
    if not parts[0]:
        raise SettingsError("channels", f"missing channel name in {item!r}")
    name = anchor_channel(parts[0])
    capacity = 1
    if len(parts) > 1 and parts[1]:
        cap = parts[1]
        if not (cap.isascii() and cap.isdigit()) or int(cap) < 1:
            raise SettingsError(
                "channels",
                f"invalid capacity {cap!r} for channel {name!r} "
                "(a positive integer is expected)",
            )
        capacity = int(cap)
    flags = set()
    for option in parts[2:]:
        key, has_value, _value = (part.strip() for part in option.partition("="))
        if not key:
            continue
        if key in CHANNEL_FLAGS and not has_value:
            flags.add(key)
        elif key in CHANNEL_FLAGS:
            raise SettingsError(
                "channels", f"option {option!r} in {item!r}: {key} takes no value"
            )
        elif key not in IGNORED_CHANNEL_OPTIONS:
            raise SettingsError(
                "channels",
                f"unknown option {option!r} in {item!r} "
                f"(options: {', '.join(CHANNEL_FLAGS)})",
            )
    return name, capacity, flags


def read_channel_text(text):
    """Parse what parses of a channels text: ``(kept, errors)``.

    ``kept`` is the text of the entries that parse, ``errors`` one message per entry
    that does not. For texts read at run time (a parameter edited by hand, queue_job's
    configuration): the good entries keep applying, the caller reports the bad ones.
    """
    kept, errors = [], []
    for item in _channel_items(text):
        try:
            _parse_channel_item(item)
        except SettingsError as err:
            errors.append(str(err))
        else:
            kept.append(item)
    return ",".join(kept), errors


def parse_channel_rules(text):
    """Parse queue_job's ``channels`` syntax into :class:`ChannelRules`.

    ``"root:4,root.mail:1:sequential,root.sync:1:paused"``; a channel without a
    capacity gets 1, like queue_job's own runner, and a sequential one 1 at most.
    queue_job's other options (``throttle``, ``capacity_default``,
    ``sequential_default``) are ignored; anything else that does not parse raises a
    :class:`SettingsError` naming it.
    """
    capacities, paused, sequential = {}, set(), set()
    errors = []
    for item in _channel_items(text):
        try:
            name, capacity, flags = _parse_channel_item(item)
        except SettingsError as err:
            errors.append(str(err))
            continue
        capacities[name] = capacity
        if "paused" in flags:
            paused.add(name)
        if "sequential" in flags:
            sequential.add(name)
    if errors:
        raise SettingsError("channels", "; ".join(errors))
    return ChannelRules({}, frozenset(paused), frozenset(sequential)).merged(
        ChannelRules(capacities)
    )


def parse_channels(text):
    """Parse queue_job's ``channels`` syntax into ``{channel: capacity}``.

    ``"root:4,root.mail:1"`` gives ``{"root": 4, "root.mail": 1}``; a channel without
    a capacity (``"root.x"``) gets 1, like queue_job's own runner. Channel names that do
    not start at ``root`` are anchored there. Options after the capacity
    (``root.x:2:sequential``) are read by :func:`parse_channel_rules`, which this
    checks the whole text with.
    """
    parse_channel_rules(text)
    return {
        name: capacity
        for name, capacity, _flags in map(_parse_channel_item, _channel_items(text))
    }


# Where queue_job's jobrunner reads its channels, in its order.
QUEUE_JOB_CHANNELS_ENV = "ODOO_QUEUE_JOB_CHANNELS"
QUEUE_JOB_CHANNELS_OPTION = "[queue_job] channels"


def queue_job_channels():
    """queue_job's jobrunner channels as it reads them: ``(text, origin)``.

    ``ODOO_QUEUE_JOB_CHANNELS``, else ``channels`` in the ``[queue_job]`` section of
    the configuration file (queue_job's ``_channels()``; read here from
    ``odoo.tools.config`` at each call, not from queue_job's import-time copy of the
    section). ``("", None)`` when neither is set.
    """
    text = os.environ.get(QUEUE_JOB_CHANNELS_ENV)
    if text and text.strip():
        return text, QUEUE_JOB_CHANNELS_ENV
    section = config_section("queue_job")
    text = section.get("channels")
    if text and text.strip():
        return text, QUEUE_JOB_CHANNELS_OPTION
    return "", None


def channels_from_queue_job(text):
    """queue_job's channels text as this addon's, with the same effect.

    The entries are comma-separated; a capacity of 0 is what queue_job makes of it.
    On ``root``, it is queue_job's switch that stops its own jobrunner (which README's
    Installation recommends when switching to this addon), not "run nothing": the
    entry is left out. On another channel, queue_job reads it as no limit of its own:
    the entry is left out too, unless it pauses the channel (kept, with a capacity of
    1 that a paused channel never uses).
    """
    entries = []
    for item in _channel_items(text):
        parts = [part.strip() for part in item.split(":")]
        if len(parts) > 1 and parts[1] == "0":
            if parts[0] == "root" or "paused" not in parts[2:]:
                continue
            item = ":".join([parts[0], "1", *parts[2:]])
        entries.append(item)
    return ",".join(entries)


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
    # Where ``channels`` comes from: PARAM_CHANNELS, queue_job's configuration
    # (QUEUE_JOB_CHANNELS_ENV or QUEUE_JOB_CHANNELS_OPTION), or None.
    channels_origin: str | None = None

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


# Channel texts whose bad entries this process has reported: once each, not at every
# read (a runner reads the settings at each batch).
_REPORTED_CHANNELS = set()
_REPORTED_CHANNELS_MAX = 64


def _usable_channels(text, origin):
    """The entries of ``text`` that parse; the others are logged at ERROR (once per
    process and text) and left out: a hand-edited parameter or queue_job's
    configuration must not stop the queue, nor lose the rules that do parse."""
    kept, errors = read_channel_text(text)
    if errors and (origin, text) not in _REPORTED_CHANNELS:
        if len(_REPORTED_CHANNELS) >= _REPORTED_CHANNELS_MAX:
            _REPORTED_CHANNELS.clear()
        _REPORTED_CHANNELS.add((origin, text))
        _logger.error(
            "channels of %s ignored: %s; the runners apply %s",
            origin,
            "; ".join(errors),
            repr(kept) if kept else "no channel rule",
        )
    return kept


def read_channels(params):
    """The runners' channels text and where it comes from: ``(text, origin)``.

    The addon's own setting when it has one; else queue_job's jobrunner channels
    (:func:`queue_job_channels`), so that switching from queue_job's jobrunner keeps
    its capacities, sequences and pauses; else none (``("", None)``).
    """
    own = params.get_param(PARAM_CHANNELS) or ""
    if own.strip():
        return _usable_channels(own, PARAM_CHANNELS), PARAM_CHANNELS
    text, origin = queue_job_channels()
    if not text:
        return "", None
    return _usable_channels(channels_from_queue_job(text), origin), origin


def read_settings(env):
    """Read the runner settings (``ir.config_parameter`` is ormcached: no query)."""
    params = env["ir.config_parameter"].sudo()
    channels, channels_origin = read_channels(params)
    return RunnerSettings(
        batch_size=_read_int(params, PARAM_BATCH_SIZE, "batch_size"),
        max_seconds=_read_int(params, PARAM_MAX_SECONDS, "max_seconds"),
        runner_count=_read_int(params, PARAM_RUNNER_COUNT, "runner_count"),
        channels=channels,
        history_days=_read_int(params, PARAM_HISTORY_DAYS, "history_days"),
        async_commit=str(params.get_param(PARAM_ASYNC_COMMIT) or "").lower()
        in ("1", "true"),
        channels_origin=channels_origin,
    )
