"""The documentation keeps up with the code: every config key, the quick start, every command.

Like datasette's test_docs.py: adding an option or a command without documenting it fails here,
with the list of what is missing.
"""

from __future__ import annotations

import re
import subprocess
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer.main
import yaml
from pydantic import BaseModel, SecretStr

from app.cli import app as cli_app
from app.settings import Settings, load_settings

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "spendguard.example.yaml"
README = REPO / "README.md"
MAKEFILE = REPO / "Makefile"

ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


# ── walking the Settings model tree ────────────────────────────────────────────────────────────
# A key path is a tuple of steps: a field name, "[]" for "any item of a list" or "<name>" for
# "any key of a mapping of sections" (notifiers.<name>.kind).


def _models_in(annotation: Any) -> Iterator[tuple[tuple[str, ...], type[BaseModel]]]:
    """The models reachable from a field's annotation, with the steps that lead to them."""
    origin = typing.get_origin(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield (), annotation
    elif origin is typing.Annotated:
        yield from _models_in(typing.get_args(annotation)[0])
    elif origin in (typing.Union, types.UnionType):
        for alternative in typing.get_args(annotation):
            yield from _models_in(alternative)
    elif origin in (list, set, tuple, frozenset):
        for item in typing.get_args(annotation):
            for steps, model in _models_in(item):
                yield ("[]", *steps), model
    elif origin is dict:
        _key, value = typing.get_args(annotation)
        for steps, model in _models_in(value):
            yield ("<name>", *steps), model


Option = tuple[type[BaseModel], str]  # one option: a field of a config model


def settings_keys(
    model: type[BaseModel] = Settings, prefix: tuple[str, ...] = ()
) -> dict[tuple[str, ...], Option]:
    """Every key path of the tree → its option (Schedule.every is under each collector)."""
    keys: dict[tuple[str, ...], Option] = {}
    for name, field in model.model_fields.items():
        path = (*prefix, name)
        keys[path] = (model, name)
        for steps, sub in _models_in(field.annotation):
            keys.update(settings_keys(sub, (*path, *steps)))
    return keys


def example_key_nodes(
    node: yaml.Node, model: type[BaseModel] = Settings, prefix: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], yaml.Node]]:
    """The model's key paths that the example sets, each with its YAML key node (for its line)."""
    if not isinstance(node, yaml.MappingNode):
        return
    for key_node, value_node in node.value:
        name = key_node.value
        if name not in model.model_fields:
            continue
        path = (*prefix, name)
        yield path, key_node
        for steps, sub in _models_in(model.model_fields[name].annotation):
            for value in _follow(value_node, steps):
                yield from example_key_nodes(value, sub, (*path, *steps))


def _follow(node: yaml.Node, steps: tuple[str, ...]) -> Iterator[yaml.Node]:
    if not steps:
        yield node
    elif steps[0] == "[]" and isinstance(node, yaml.SequenceNode):
        for item in node.value:
            yield from _follow(item, steps[1:])
    elif steps[0] == "<name>" and isinstance(node, yaml.MappingNode):
        for _key, value in node.value:
            yield from _follow(value, steps[1:])


def dotted(path: tuple[str, ...]) -> str:
    return ".".join(path).replace(".[]", "[]")


def example_environ() -> dict[str, str]:
    return {name: f"example-{name.lower()}" for name in ENV_REF.findall(EXAMPLE.read_text())}


def test_the_walk_sees_nested_lists_dicts_and_unions() -> None:
    keys = {dotted(k) for k in settings_keys()}
    assert "collectors.traces.sources[].path" in keys  # list of a union, first alternative
    assert "collectors.traces.sources[].bucket" in keys  # …second alternative
    assert "notifiers.<name>.webhook_url" in keys  # dict of models
    assert "rules[].condition" in keys
    assert "collectors.openai.schedule.cron" in keys


# ── (a) every key is documented in spendguard.example.yaml ─────────────────────────────────────


def test_every_setting_is_in_the_example_file() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    keys = settings_keys()
    present = {path for path, _node in example_key_nodes(yaml.compose(text))}
    documented: set[Option] = set()
    for path, option in keys.items():
        # Keys of list items and union alternatives may be documented in a comment only.
        in_item = "[]" in path or "<name>" in path
        textual = re.search(rf"(^|[\s{{,#-]){re.escape(path[-1])}:", text, re.MULTILINE)
        if path in present or (in_item and textual):
            documented.add(option)
    missing = sorted({dotted(path) for path, option in keys.items() if option not in documented})
    assert not missing, (
        f"settings missing from {EXAMPLE.name} (add each with a comment saying what it does, "
        f"its default and its allowed values): {', '.join(missing)}"
    )


def test_every_setting_in_the_example_has_a_comment() -> None:
    """Each option has, at one of its places in the example, a comment above it or beside it."""
    text = EXAMPLE.read_text(encoding="utf-8")
    lines = text.splitlines()
    commented: set[Option] = set()
    first_place: dict[Option, str] = {}
    keys = settings_keys()
    for path, key_node in example_key_nodes(yaml.compose(text)):
        option = keys[path]
        number = key_node.start_mark.line
        first_place.setdefault(option, f"line {number + 1}: {dotted(path)}")
        above = next((line.strip() for line in reversed(lines[:number]) if line.strip()), "")
        if above.startswith(("#", "- #")) or " #" in lines[number]:
            commented.add(option)
    bare = [place for option, place in first_place.items() if option not in commented]
    assert not bare, "options in the example without a comment:\n" + "\n".join(bare)


# ── (b) the example loads, and keeps secrets out ───────────────────────────────────────────────


def test_the_example_file_validates() -> None:
    settings = load_settings(EXAMPLE, environ=example_environ())
    # It shows the shape ARCHITECTURE promises, not an empty skeleton.
    assert settings.collectors.traces.sources
    assert settings.pricing.overrides
    assert settings.gpu_pools
    assert settings.notifiers
    assert settings.rules
    assert settings.gateways


def test_the_example_writes_every_secret_as_a_variable_reference() -> None:
    raw = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    settings = load_settings(EXAMPLE, environ=example_environ())
    literal = []
    for path in sorted(_secret_paths(Settings)):
        for at, value in _values(raw, path):
            if value is not None and not re.fullmatch(r"\$\{[A-Z_][A-Z0-9_]*\}", str(value)):
                literal.append(f"{at}: {value!r}")
    assert not literal, f"secrets must be ${{ENV_VAR}} references in {EXAMPLE.name}: {literal}"
    for name, value in example_environ().items():
        assert value not in repr(settings), f"${{{name}}} shows in repr(settings)"


def _secret_paths(
    model: type[BaseModel], prefix: tuple[str, ...] = ()
) -> Iterator[tuple[str, ...]]:
    for name, field in model.model_fields.items():
        path = (*prefix, name)
        if SecretStr in _flat(field.annotation):
            yield path
        for steps, sub in _models_in(field.annotation):
            yield from _secret_paths(sub, (*path, *steps))


def _flat(annotation: Any) -> set[Any]:
    args = typing.get_args(annotation)
    return {annotation} | {leaf for arg in args for leaf in _flat(arg)}


def _values(node: Any, path: tuple[str, ...], at: str = "") -> Iterator[tuple[str, Any]]:
    if not path:
        yield at, node
    elif path[0] == "[]" and isinstance(node, list):
        for i, item in enumerate(node):
            yield from _values(item, path[1:], f"{at}[{i}]")
    elif path[0] == "<name>" and isinstance(node, dict):
        for key, value in node.items():
            yield from _values(value, path[1:], f"{at}.{key}")
    elif isinstance(node, dict) and path[0] in node:
        yield from _values(node[path[0]], path[1:], f"{at}.{path[0]}".lstrip("."))


# ── (c) the quick start is `make run` and `make test`, and both exist ──────────────────────────


def quick_start_commands() -> list[str]:
    if not README.exists():
        pytest.fail(f"{README.name} is missing: it must have a 'Quick start' section")
    text = README.read_text(encoding="utf-8")
    heading = re.search(r"^(#+)\s*Quick start\s*$", text, re.MULTILINE | re.IGNORECASE)
    assert heading, f"{README.name} has no '## Quick start' heading"
    section = text[heading.end() :]
    next_heading = re.search(rf"^#{{1,{len(heading.group(1))}}}\s", section, re.MULTILINE)
    if next_heading:
        section = section[: next_heading.start()]
    block = re.search(r"^```[^\n]*\n(.*?)^```", section, re.MULTILINE | re.DOTALL)
    assert block, f"the Quick start section of {README.name} has no fenced code block"
    return [line.strip() for line in block.group(1).splitlines() if line.strip()]


def makefile_targets() -> set[str]:
    text = MAKEFILE.read_text(encoding="utf-8")
    return set(re.findall(r"^([A-Za-z0-9_-]+):(?!=)", text, re.MULTILINE))


def test_the_quick_start_is_make_run_and_make_test() -> None:
    assert quick_start_commands() == ["make run", "make test"]


def test_the_quick_start_targets_exist_and_are_listed_by_make_help() -> None:
    targets = makefile_targets()
    help_text = subprocess.run(
        ["make", "--no-print-directory", "-s", "help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    listed = set(re.findall(r"^\s*make\s+([A-Za-z0-9_-]+)", help_text, re.MULTILINE))
    for command in quick_start_commands():
        target = command.removeprefix("make ")
        assert target in targets, f"`{command}` is in the README but not a Makefile target"
        assert target in listed, f"`{command}` is not listed by `make help`:\n{help_text}"


# ── (d) every CLI command is in the README ─────────────────────────────────────────────────────


def cli_command_paths() -> list[str]:
    """Every leaf command as typed after `spendguard`, e.g. "db upgrade", "api"."""

    def walk(group: Any, prefix: tuple[str, ...]) -> Iterator[str]:
        for name, command in sorted(group.commands.items()):
            if command.hidden:
                continue
            if hasattr(command, "commands"):  # a group (typer vendors its own click)
                yield from walk(command, (*prefix, name))
            else:
                yield " ".join((*prefix, name))

    return list(walk(typer.main.get_command(cli_app), ()))


def test_the_command_walk_finds_nested_commands() -> None:
    paths = cli_command_paths()
    assert "db upgrade" in paths
    assert "report unit-costs" in paths
    assert "db" not in paths


def test_every_cli_command_is_in_the_readme() -> None:
    if not README.exists():
        pytest.fail(f"{README.name} is missing: it must list every `spendguard` command")
    text = README.read_text(encoding="utf-8")
    missing = [
        path
        for path in cli_command_paths()
        if not re.search(rf"spendguard {re.escape(path)}(?![\w-])", text)
    ]
    assert not missing, "commands not documented in README.md as `spendguard …`: " + ", ".join(
        f"spendguard {path}" for path in missing
    )
