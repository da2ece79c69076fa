"""A preload entry that cannot be imported, as after a bad deploy."""

import shop_that_is_gone  # noqa: F401
