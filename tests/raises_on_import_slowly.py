"""A handler module that fails as it is imported, but only after a bot counts as started in supervisord
(startsecs): a bad config found late, as on a host too busy to load a bot in time."""

import time

from common.fleet.render import BOT_STARTSECS

time.sleep(BOT_STARTSECS + 1)  # the slow start itself
raise RuntimeError("this module fails on import, late")
