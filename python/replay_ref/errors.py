"""The one exception type for bad input (exit status 2, one line)."""


class InputError(Exception):
    """A file, flag or data set the check cannot use; str() is one line."""
