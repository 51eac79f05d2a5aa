"""Command lines generated from config dataclasses: each option's name, type, default and help are
written once, on the dataclass field it sets.

A tool declares its settings as a dataclass whose fields are made with `option(...)`;
`command_parser(Config, ...)` turns the fields into options, and `parse_command` turns a command line
into a `Config` instance — no hand-copying from an argparse namespace into a config object. Every
generated command line also takes `--config FILE` (YAML or JSON: the field names as keys, what
`--print-config` prints) and `--print-config`, and `Command.save_beside` writes the config a run
used next to what it wrote, so that a result can be traced back to its settings and re-run.

Why jsonargparse: it parses into typed values, loads `--config FILE` with the same validation as the
command line (a bad value in a file is refused by its key, like a bad option), prints what it parsed,
and is an argparse subclass, so usage errors, `--help` and exit code 2 stay argparse's. Its one
dependency is PyYAML, small enough for the runtime install a Jetson makes. The options are added from
the fields here rather than with its `add_class_arguments`, because that names options with
underscores (`--mnist_dir`) and takes booleans as `--flag true`: every existing command line and
script would have changed.

An option's `type` must accept both the text typed on a command line and an already parsed value
(what a config file holds, and what jsonargparse re-checks after parsing), so `runtime.cli.number`,
`min_max` and the other parsers take either.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import types
import typing
from dataclasses import MISSING, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from jsonargparse import ActionConfigFile, ArgumentParser

from runtime.cli import checked
from runtime.errors import SpamcamError

__all__ = ["option", "field_parser", "MergeDict", "command_parser", "parse_command", "Command", "config_yaml", "config_path_beside", "CONFIG_FILE_NAME"]

CONFIG_FILE_NAME = "config.yaml"  # in an output folder; beside an output file: <file>.config.yaml
_EXCLUDED_KEYS = ("config", "print_config", "__path__")


@dataclass(frozen=True)
class _Cli:
    """How a field appears on the command line (kept in the field's metadata)."""

    help: str
    flags: tuple[str, ...] = ()  # option strings; default: --field-name (a positional: none)
    old_flags: tuple[str, ...] = ()  # earlier names still accepted, not shown by --help
    type: Callable[[Any], Any] | None = None
    choices: Sequence[Any] | None = None
    metavar: str | tuple[str, ...] | None = None
    nargs: str | int | None = None
    positional: bool = False
    switch: str | None = None  # a boolean that defaults to True: the flag that sets it False (--no-progress)
    action: type[argparse.Action] | str | None = None
    group: str | None = None
    required: bool = False
    cli: bool = True  # False: a setting of the Python API only (not on the command line)


def option(default: Any = MISSING, help: str = "", *, factory: Callable[[], Any] | None = None, **cli: Any):
    """A dataclass field that is also a command-line option; `cli` takes `_Cli`'s fields."""
    metadata = {"cli": _Cli(help=help, **cli)}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


class MergeDict(argparse.Action):
    """A repeatable option whose values (dicts, from its `type`) are merged: `--limit train=2000
    --limit val=500` gives {"train": 2000, "val": 500}."""

    def __call__(self, parser, namespace, values, option_string=None):  # noqa: ARG002 — argparse's signature
        merged = dict(getattr(namespace, self.dest, None) or {})
        merged.update(values)
        setattr(namespace, self.dest, merged)


class _Parser(ArgumentParser):
    """jsonargparse's parser, taking earlier option names too (`_with_current_names`)."""

    old_names: dict[str, str] = {}
    config_class: type | None = None

    def parse_args(self, args=None, namespace=None, **kwargs):  # type: ignore[override]
        args = _with_current_names(list(sys.argv[1:] if args is None else args), self.old_names)
        self._hint_a_bare_required_value(args)
        return super().parse_args(args, namespace, **kwargs)

    def _hint_a_bare_required_value(self, args: list[str]) -> None:
        """`edge_app model.onnx ...` as eval-cam takes it: a command without positional arguments whose
        one required option is missing, given a bare first word, is told which option that word needs."""
        if not args or args[0].startswith("-") or any(not a.option_strings for a in self._actions):
            return
        required = [a for a in self._actions if a.required and a.option_strings]
        if len(required) == 1 and not any(arg.split("=")[0] in required[0].option_strings for arg in args):
            flag = required[0].option_strings[0]
            self.error(f"{self.prog} takes no positional arguments: give {args[0]!r} as {flag} {args[0]}")


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the examples' layout; argparse's own wrapping elsewhere."""


def command_parser(config_class: type, *, prog: str, description: str, epilog: str = "",
                   groups: Sequence[tuple[str, type]] = ()) -> _Parser:
    """An argparse-compatible parser with an option for every field of `config_class`.

    `groups` lists (title, mixin dataclass) pairs whose fields `--help` shows under that title (the
    shared dataset, calibration and model-file options); other fields are listed as options."""
    parser = _Parser(prog=prog, description=description, epilog=epilog, formatter_class=_HelpFormatter,
                     print_config=None, exit_on_error=True)
    parser.add_argument("--config", action=ActionConfigFile, metavar="FILE",
                        help="read the options from this YAML or JSON file, with the keys --print-config "
                        "shows; options after it override it")
    parser.add_argument("--print-config", action="store_true",
                        help="print the options as YAML (what --config reads and the run saves) and exit")
    titled = {f.name: title for title, mixin in groups for f in dataclasses.fields(mixin)}
    fields = [f for f in dataclasses.fields(config_class) if f.metadata.get("cli") and f.metadata["cli"].cli]
    own = list(dict.fromkeys(f.metadata["cli"].group for f in fields if f.metadata["cli"].group))
    shared = [title for title, _ in groups]
    containers: dict[str | None, Any] = {None: parser}
    for title in own[:1] + shared + own[1:]:  # the shared groups (dataset, calibration) after the first own one
        containers[title] = parser.add_argument_group(title)
    hints = typing.get_type_hints(config_class)
    old_names: dict[str, str] = {}
    for field in fields:
        cli: _Cli = field.metadata["cli"]
        title = cli.group or titled.get(field.name)
        flags, kwargs = _argument(field, cli, hints[field.name])
        containers[title].add_argument(*flags, **kwargs)
        old_names.update({old: flags[0] for old in cli.old_flags})
    parser.config_class = config_class
    parser.old_names = old_names
    return parser


def _argument(field: dataclasses.Field, cli: _Cli, hint: Any) -> tuple[list[str], dict[str, Any]]:
    default = _default_of(field)
    help_text = cli.help
    shown = not (default is None or default is MISSING or isinstance(default, bool) or cli.required
                 or (isinstance(default, (tuple, list, dict, str)) and not default))
    if shown and "default" not in help_text and "(0:" not in help_text and not cli.positional:
        help_text = f"{help_text} (default: {_shown(default)})" if help_text else f"default: {_shown(default)}"
    kwargs: dict[str, Any] = {"help": help_text.replace("%", "%%")}
    if cli.positional:
        flags = [field.name]
        if cli.nargs is not None:
            kwargs["nargs"] = cli.nargs
        if default is not MISSING:
            kwargs.setdefault("nargs", "?")
            kwargs["default"] = default
    else:
        flags = list(cli.flags or ("--" + field.name.replace("_", "-"),))
        kwargs["dest"] = field.name
        kwargs["default"] = None if default is MISSING else default
        if cli.required:
            kwargs["required"] = True
    if hint is bool:
        if cli.switch:
            flags = [cli.switch]
            kwargs["action"] = "store_false"
        else:
            kwargs["action"] = "store_true"
        return flags, kwargs
    if cli.action is not None:
        kwargs["action"] = cli.action
    if cli.nargs is not None and not cli.positional:
        kwargs["nargs"] = cli.nargs
    kwargs["type"] = field_parser(field, hint)
    if cli.choices is not None:
        kwargs["choices"] = list(cli.choices)
    if cli.metavar is not None:
        kwargs["metavar"] = cli.metavar
    return flags, kwargs


def field_parser(field: dataclasses.Field, hint: Any, *, with_choices: bool = False) -> Callable[[Any], Any]:
    """What checks a (non-boolean) field's value, from a command line, a config file or any other
    mapping of settings (edge_app's cameras): its option's type, raising ValueError in its own words;
    `with_choices` checks the choices too (argparse does that itself for an option)."""
    cli: _Cli = field.metadata["cli"]
    parse = checked(cli.type or _plain_type(hint))  # a ValueError's own words, not "invalid value"
    if cli.action == "append":  # jsonargparse re-checks the whole list with the item type
        parse = _each(parse)
    if with_choices and cli.choices is not None:
        choices, inner = list(cli.choices), parse

        def parse(value: Any) -> Any:
            parsed = inner(value)
            for item in parsed if isinstance(parsed, list) else [parsed]:
                if item not in choices:
                    raise ValueError(f"{item!r} is not one of {', '.join(map(str, choices))}")
            return parsed
    return parse


def _default_of(field: dataclasses.Field) -> Any:
    if field.default is not MISSING:
        return field.default
    if field.default_factory is not MISSING:  # type: ignore[misc]
        return field.default_factory()  # type: ignore[misc]
    return MISSING


def _shown(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def _plain_type(hint: Any) -> Callable[[Any], Any]:
    """str, int, float, Path, a list of one (for nargs) or an Optional of those, from the annotation;
    anything richer needs `type=`."""
    from runtime.cli import number

    members = [a for a in typing.get_args(hint) if a is not type(None)]
    optional = typing.get_origin(hint) in (typing.Union, types.UnionType) and len(members) == 1
    base = members[0] if optional else hint
    if typing.get_origin(base) is list:  # nargs: the type of each item
        return _plain_type(typing.get_args(base)[0])
    if base is int:
        return number(int)
    if base is float:
        return number(float)
    if base in (str, Path):
        return _text
    raise TypeError(f"no command-line type for {hint!r}: give option(..., type=...)")


def _each(item_type: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def items(value: Any) -> Any:
        return [item_type(v) for v in value] if isinstance(value, list) else item_type(value)
    items.__name__ = getattr(item_type, "__name__", "value")
    return items


def _text(value: Any) -> str:
    """A string option; numbers from a config file are taken as their text."""
    if isinstance(value, (dict, list)):
        raise ValueError(f"{value!r} is not a text value")
    return str(value)


@dataclass
class Command:
    """What a command line asked for: the config, and the YAML that reproduces it."""

    config: Any
    yaml: str

    def save_beside(self, output: str | Path, *, folder: bool = False) -> Path:
        """Write the config next to `output` (`<output>.config.yaml`), or into it when it is a folder
        (`config.yaml`); atomically, so a full disk never leaves half a config."""
        from runtime.output_paths import write_text_atomic

        path = config_path_beside(output, folder=folder)
        write_text_atomic(path, self.yaml)
        return path

    def write_json(self, target: str, report: dict) -> str | Path:
        """A JSON report to `target` (a file, or "-" for standard output) and, beside a file, this config."""
        from runtime.output_paths import write_json_report

        written = write_json_report(target, report)
        if target != "-":
            self.save_beside(written)
        return written


def config_path_beside(output: str | Path, *, folder: bool = False) -> Path:
    """Where `Command.save_beside` writes the config of the run that wrote `output`."""
    output = Path(output)
    return output / CONFIG_FILE_NAME if folder else output.with_name(output.name + ".config.yaml")


def parse_command(parser: _Parser, argv: Sequence[str] | None = None) -> Command:
    """Parse `argv` (default: sys.argv[1:]) into the parser's config dataclass; `--print-config`
    prints the config's YAML and exits 0.

    A value the dataclass itself refuses (its `__post_init__` raising a `SpamcamError`) is reported
    like any malformed option: usage, the message, exit 2."""
    namespace = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    values = {k: v for k, v in namespace.as_dict().items() if k not in _EXCLUDED_KEYS}
    for field in dataclasses.fields(parser.config_class):  # jsonargparse lets a default stand in for a required one
        cli = field.metadata.get("cli")
        if cli is not None and cli.required and values.get(field.name) in ("", None) and not namespace.get("print_config"):
            flag = (cli.flags or ("--" + field.name.replace("_", "-"),))[0]
            parser.error(f"{flag} is required: {cli.help}")
    try:
        config = parser.config_class(**values)
    except (SpamcamError, ValueError) as error:
        parser.error(str(error))
    command = Command(config=config, yaml=config_yaml(config))
    if namespace.get("print_config"):
        sys.stdout.write(command.yaml)
        raise SystemExit(0)
    return command


def config_yaml(config: Any) -> str:
    """The config's command-line settings as YAML, the form `--config` reads (after normalisation:
    what the run used, e.g. --input-size 64 as [64, 64])."""
    import yaml

    fields = [f for f in dataclasses.fields(config) if f.metadata.get("cli") and f.metadata["cli"].cli]
    fields.sort(key=lambda f: not f.metadata["cli"].positional)  # what the command works on comes first
    values = {f.name: _plain(getattr(config, f.name)) for f in fields}
    return yaml.safe_dump(values, sort_keys=False, default_flow_style=False)


def _plain(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    return value


def _with_current_names(argv: list[str], old_names: dict[str, str]) -> list[str]:
    """Earlier option names (`--samples`) become the current ones (`--calib-samples`), so that a
    script written for an older spamcam keeps working while --help shows one name per setting."""
    if not old_names:
        return argv
    renamed = []
    for arg in argv:
        name, equals, value = arg.partition("=")
        renamed.append(old_names[name] + equals + value if name in old_names else arg)
    return renamed
