"""The error every config problem a user can cause is reported as."""


class ConfigError(ValueError):
    """A config file or override cannot be used; the message says where and why."""
