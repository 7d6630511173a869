"""The error every module raises for bad input (a file, a folder or a config key), kept apart so
the modules that read user files need not import each other to raise it."""


class DataError(ValueError):
    """Bad input data; the message names the file or config key and the fix."""
