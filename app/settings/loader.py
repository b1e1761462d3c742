"""Load spendguard.yaml + environment into one validated `Settings` object.

Loading order: the YAML file (path from `--config`, `SPENDGUARD_CONFIG`, else `./spendguard.yaml`;
no file at all means defaults), then `${VAR}` references expanded from the environment, then
environment overrides (`SPENDGUARD_<SECTION>__<KEY>` for any key, `SPENDGUARD_<SECTION>` as JSON
for a whole section, and `SPENDGUARD_DATABASE_URL` last), then validation. Anything wrong becomes
one `ConfigError` naming the file (or the variable), the key path and the fix.

Only the environment handed to `load_settings` is read (the process environment by default), so
tests and tools can load a configuration without inheriting the caller's variables.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from app.errors import ConfigError
from app.settings.models import Settings

DEFAULT_CONFIG_PATH = Path("spendguard.yaml")
ENV_PREFIX = "SPENDGUARD_"
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def config_path(
    explicit: str | Path | None = None, environ: Mapping[str, str] | None = None
) -> Path:
    """The config file to read: explicit path, else $SPENDGUARD_CONFIG, else ./spendguard.yaml."""
    if explicit:
        return Path(explicit)
    env = (os.environ if environ is None else environ).get("SPENDGUARD_CONFIG")
    return Path(env) if env else DEFAULT_CONFIG_PATH


def load_settings(
    path: str | Path | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Read, expand and validate the configuration, or raise `ConfigError` saying what to fix."""
    env = os.environ if environ is None else environ
    file = config_path(path, env)
    explicit = bool(path) or bool(env.get("SPENDGUARD_CONFIG"))
    raw: dict[str, Any] = {}
    if file.exists():
        raw = _expand_env(_read_yaml(file), env, file, ())
    elif explicit:
        raise ConfigError(
            f"{file}: config file not found. Fix the path given by --config or "
            "SPENDGUARD_CONFIG, or unset it to run with defaults."
        )
    origins = _apply_env_overrides(raw, env)
    try:
        return Settings(**raw)
    except ValidationError as exc:
        source = f"{file}" if file.exists() else f"{file} (no such file: defaults + environment)"
        raise ConfigError(_describe(exc, source, raw, origins)) from None


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys instead of silently keeping the last one."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: set[Hashable] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *defaults` may legitimately repeat keys it merges
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, Hashable):
                continue  # the base class reports unhashable keys
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found duplicate key {key!r} (remove one of them)",
                    key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _read_yaml(file: Path) -> dict[str, Any]:
    try:
        with file.open(encoding="utf-8") as stream:
            loaded = yaml.load(stream, Loader=_StrictLoader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"{file}: not valid YAML: {exc}\nFix the file at the line shown (quote values "
            "that contain ': ' or ' #'; each key may appear once per section)."
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file}: cannot read the config file: {exc}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(
            f"{file}: the top level must be a mapping of sections (database:, collectors:, …), "
            f"got {type(loaded).__name__}"
        )
    return loaded


def _expand_env(node: Any, env: Mapping[str, str], file: Path, at: tuple[str | int, ...]) -> Any:
    if isinstance(node, dict):
        # Keys become strings: `user_teams: {1042: payments}` means user "1042".
        return {str(k): _expand_env(v, env, file, (*at, str(k))) for k, v in node.items()}
    if isinstance(node, list):
        return [_expand_env(v, env, file, (*at, i)) for i, v in enumerate(node)]
    if isinstance(node, str):

        def sub(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in env:
                raise ConfigError(
                    f"{file}: {_key_path(at)}: environment variable ${{{name}}} is not set. "
                    f"Fix: export {name}=… before starting spendguard, or remove the key."
                )
            return env[name]

        return _ENV_REF.sub(sub, node)
    return node


def _apply_env_overrides(raw: dict[str, Any], env: Mapping[str, str]) -> dict[tuple[str, ...], str]:
    """Merge SPENDGUARD_* variables into `raw`; return key path → variable, for error messages."""
    origins: dict[tuple[str, ...], str] = {}
    # Sorted, so a whole section (SPENDGUARD_API) comes before its keys (SPENDGUARD_API__PORT).
    for name in sorted(env):
        if not name.upper().startswith(ENV_PREFIX):
            continue
        parts = tuple(name[len(ENV_PREFIX) :].lower().split("__"))
        if len(parts) == 1 and parts[0] not in Settings.model_fields:
            continue  # SPENDGUARD_CONFIG, SPENDGUARD_DATABASE_URL, variables of other tools
        if "" in parts:
            raise ConfigError(
                f"environment variable {name}: empty key; write SPENDGUARD_<SECTION>__<KEY>, "
                "e.g. SPENDGUARD_API__PORT=8800"
            )
        _set_key(raw, parts, _env_value(name, env[name]), name)
        origins[parts] = name
    url = env.get("SPENDGUARD_DATABASE_URL")
    if url:
        _set_key(raw, ("database", "url"), url, "SPENDGUARD_DATABASE_URL")
        origins[("database", "url")] = "SPENDGUARD_DATABASE_URL"
    return origins


def _env_value(name: str, value: str) -> Any:
    # Lists and sections are given as JSON; scalars stay strings and pydantic converts them.
    if value.lstrip()[:1] in ("[", "{"):
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"environment variable {name}: not valid JSON ({exc}); "
                'write lists and sections as JSON, e.g. ["a", "b"] or {"port": 8800}'
            ) from None
    return value


def _set_key(raw: dict[str, Any], parts: tuple[str, ...], value: Any, name: str) -> None:
    node = raw
    for i, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if isinstance(child, list):
            where = ".".join(parts[: i + 1])
            raise ConfigError(
                f"environment variable {name}: {where} is a list, so it cannot be overridden "
                f"item by item; set it whole as JSON in {ENV_PREFIX}"
                f"{'__'.join(parts[: i + 1]).upper()}"
            )
        if not isinstance(child, dict):
            return  # the file gives a scalar where a section belongs: validation reports it
        node = child
    node[parts[-1]] = value


def _key_path(parts: tuple[str | int, ...]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _user_path(loc: tuple[str | int, ...], raw: Any, missing: bool) -> tuple[str | int, ...]:
    """The part of a pydantic error location the user wrote, without union and type tags.

    Following the input itself tells a real key (`notifiers.Finops`) from a tag pydantic adds
    (`str`, `list[str]`, `folder`): only the field named by a "missing" error is absent.
    """
    kept: list[str | int] = []
    node = raw
    for i, part in enumerate(loc):
        in_dict = isinstance(node, dict) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if in_dict or in_list:
            node = node[part]
        elif not (missing and i == len(loc) - 1 and isinstance(node, dict)):
            continue
        kept.append(part)
    return tuple(kept)


def _describe(
    exc: ValidationError, source: str, raw: dict[str, Any], origins: dict[tuple[str, ...], str]
) -> str:
    lines = [f"{source}: invalid configuration ({exc.error_count()} problem(s)):"]
    for err in exc.errors(include_url=False):
        loc = _user_path(tuple(err["loc"]), raw, missing=err["type"] == "missing")
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
            key = str(err.get("ctx", {}).get("discriminator", "kind")).strip("'")
            loc = (*loc, key)
            expected = err.get("ctx", {}).get("expected_tags")
            msg = f"choose one of {expected}" if expected else f"missing; say which {key} it is"
        if err["type"] == "extra_forbidden":
            line = (
                f"  {_key_path(loc)}: unknown key; remove it or check its spelling against "
                "spendguard.example.yaml"
            )
        else:
            line = f"  {_key_path(loc)}: {msg} (see spendguard.example.yaml for the expected form)"
        origin = next((v for k, v in origins.items() if _overlaps(loc, k)), None)
        if origin:
            line += f" [set by environment variable {origin}]"
        lines.append(line)
    return "\n".join(lines)


def _overlaps(loc: tuple[str | int, ...], key: tuple[str, ...]) -> bool:
    """Whether an error at `loc` concerns the value an environment variable set at `key`."""
    shorter = min(len(loc), len(key))
    return shorter > 0 and tuple(map(str, loc[:shorter])) == key[:shorter]
