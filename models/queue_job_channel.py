# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl.html).

from odoo import api, models, tools

from ..engine.settings import ChannelRules

# queue_job 18.0.4 gave channel records their runner options; earlier releases have
# none, and the settings' channels string is then the only source of rules.
RULE_FIELDS = ("capacity", "paused", "sequential")


class QueueJobChannel(models.Model):
    _inherit = "queue.job.channel"

    @api.model
    @tools.ormcache()
    def _dqj_channel_rules(self):
        """The runner options of the channel records, as ChannelRules (cached; the
        cache is cleared, in every worker, when a channel changes)."""
        present = [name for name in RULE_FIELDS if name in self._fields]
        if not present:
            return ChannelRules()
        capacities, paused, sequential = {}, set(), set()
        for channel in self.sudo().search_read([], ["complete_name", *present]):
            name = channel["complete_name"]
            if channel.get("capacity"):  # 0: no limit of its own
                capacities[name] = channel["capacity"]
            if channel.get("paused"):
                paused.add(name)
            if channel.get("sequential"):
                sequential.add(name)
        return ChannelRules(capacities, frozenset(paused), frozenset(sequential))

    @api.model_create_multi
    def create(self, vals_list):
        records = super().create(vals_list)
        self.env.registry.clear_cache()
        return records

    def write(self, vals):
        res = super().write(vals)
        self.env.registry.clear_cache()
        return res

    def unlink(self):
        res = super().unlink()
        self.env.registry.clear_cache()
        return res
