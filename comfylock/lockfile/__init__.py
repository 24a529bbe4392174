"""Stage 5: the lock file: format, read, write, diff, and other tools' formats."""
