"""The exceptions spendguard raises on purpose.

    SpendguardError            anything we raise knowingly; the CLI prints it and exits non-zero
    ├── ConfigError            spendguard.yaml or the environment is wrong (file, key path, fix)
    ├── InputError             a source file or payload cannot be decoded (file, position, why)
    └── WarehouseError         the database cannot be reached or migrated

Every message says what is wrong and what to do next: the CLI shows it as it is.
"""

from __future__ import annotations


class SpendguardError(Exception):
    """Base of every error spendguard raises on purpose."""


class ConfigError(SpendguardError):
    """The configuration is invalid; the message names the file, the key path and the fix."""


class InputError(SpendguardError):
    """A source document cannot be decoded; the message names where and why."""


class WarehouseError(SpendguardError):
    """The warehouse cannot be reached or migrated."""
