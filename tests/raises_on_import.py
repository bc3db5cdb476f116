"""A handler module that fails as it is imported (tests of refused configs import it on purpose)."""

raise RuntimeError("this module fails on import")
