"""Cameras from a config: `--cameras FILE` (or a `cameras:` list in a `--config` file) or repeated
`--source`, as one AppConfig per camera.

A camera entry is a mapping whose keys are edge_app's own option names (`source`, `outputs`, `json`,
`min_confidence`, `zones`, ...; `name` for the camera's name). Each value is checked exactly as the
same option on the command line, and a bad one is refused by where it is (`cameras[2].fps: ...`).
Every option not given for a camera is the command line's (or the config file's top level). A
top-level file or folder shared by several cameras must contain `{camera}`, which becomes each
camera's name (`--json "runs/{camera}.jsonl"`): two cameras never write one file.

    cameras:
      - name: door
        source: rtsp://192.168.1.20/live
        min_confidence: 0.6
        zones: ["porch:0,300 200,300 200,480 0,480"]
        outputs: [door.mp4]
      - name: garden
        source: garden.mp4
        json: garden.jsonl
"""
from __future__ import annotations

import dataclasses
import functools
import re
import typing
from pathlib import Path
from typing import Any

from runtime.config_cli import field_parser
from runtime.errors import ConfigError

from .app import AppConfig

__all__ = ["CAMERA_KEYS", "camera_list", "camera_configs", "PER_CAMERA_PATHS"]

# What may differ between cameras; the rest (tracking, MQTT, retention, ...) is the app's.
CAMERA_KEYS = ("camera", "source", "width", "height", "fps", "flip", "realtime", "min_confidence", "overlap_iou",
               "overlay", "zones", "outputs", "json", "event_log", "snapshots", "clips", "output_fps",
               "reconnect_timeout", "stall_timeout", "max_frames", "update_interval")
ALIASES = {"name": "camera", "uri": "source", "output": "outputs", "conf": "min_confidence"}
PER_CAMERA_PATHS = ("outputs", "json", "event_log", "snapshots", "clips")  # where {camera} is filled in
# Also filled in, and refused when shared: an MQTT client ID (a broker disconnects a duplicate).
PER_CAMERA_NAMES = PER_CAMERA_PATHS + ("mqtt_client_id", "mqtt_available")


def camera_list(value: Any) -> list[dict]:
    """The --cameras option's type: a YAML file's path (a list of cameras, or a mapping with a
    `cameras:` list), or the list itself (from a --config file). Each entry's keys are checked here,
    its values by `camera_configs`."""
    if isinstance(value, str):
        import yaml

        path = Path(value).expanduser()
        try:
            loaded = yaml.safe_load(path.read_text())
        except OSError as error:
            raise ValueError(f"{value}: cannot read it ({error.strerror or error})") from None
        except yaml.YAMLError as error:
            raise ValueError(f"{value}: not valid YAML ({error})") from None
        value = loaded.get("cameras") if isinstance(loaded, dict) else loaded
        if not value:
            raise ValueError(f"{path}: no cameras in it (a list of cameras, or cameras: [...])")
    if not isinstance(value, list):  # an empty list (the default) is "no cameras file"
        raise ValueError("cameras must be a list of mappings (name, source, outputs, ...)")
    cameras = []
    for index, entry in enumerate(value):
        if isinstance(entry, str):
            entry = {"source": entry}
        if not isinstance(entry, dict):
            raise ValueError(f"cameras[{index}]: expected a mapping (name: ..., source: ...), got {entry!r}")
        named = {}
        for key, item in entry.items():
            name = ALIASES.get(str(key), str(key).replace("-", "_"))
            if name not in CAMERA_KEYS:
                raise ValueError(f"cameras[{index}]: unknown key {key!r}; a camera may set: name, "
                                 + ", ".join(k for k in CAMERA_KEYS if k != "camera"))
            if name in named:
                raise ValueError(f"cameras[{index}]: {key!r} is given twice")
            named[name] = item
        if "source" not in named:
            raise ValueError(f"cameras[{index}]: no source (give source: URI)")
        cameras.append(named)
    return cameras


def _camera_name(source: str, taken: set[str]) -> str:
    """A name from the source (the file's stem, the stream's host and path), unique among `taken`."""
    text = str(source)
    stem = Path(text).stem if "://" not in text else text.split("://", 1)[1]
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", stem).strip("-") or "camera"
    candidate, number = name, 2
    while candidate in taken:
        candidate, number = f"{name}-{number}", number + 1
    return candidate


@functools.lru_cache(maxsize=1)
def _app_fields() -> tuple[dict, dict]:
    """AppConfig's fields and type hints by name (read once)."""
    return {f.name: f for f in dataclasses.fields(AppConfig)}, typing.get_type_hints(AppConfig)


def _checked(key: str, value: Any, where: str) -> Any:
    fields, hints = _app_fields()
    field = fields[key]
    if hints[key] is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}.{key}: expected true or false, got {value!r}")
        return value
    try:
        return field_parser(field, hints[key], with_choices=True)(value)
    except ValueError as error:
        raise ConfigError(f"{where}.{key}: {error}") from None


def _fill(value: Any, camera: str) -> Any:
    if isinstance(value, list):
        return [_fill(v, camera) for v in value]
    return value.replace("{camera}", camera) if isinstance(value, str) else value


def camera_configs(config: AppConfig, cameras: list[dict] | None = None) -> list[AppConfig]:
    """One AppConfig per camera: `cameras` entries (camera_list's) over `config`'s values, or one
    camera per source when `config.source` lists several."""
    sources = config.source if isinstance(config.source, (list, tuple)) else [config.source] if config.source else []
    if cameras and sources:
        raise ConfigError("--source and --cameras both give cameras: give them one way")
    entries = [dict(c) for c in cameras] if cameras else [{"source": s} for s in sources]
    if not entries:
        raise ConfigError("no source: give --source URI (repeatable) or --cameras FILE")
    base = {f.name: getattr(config, f.name) for f in dataclasses.fields(AppConfig)}
    several = len(entries) > 1
    names: set[str] = set()
    configs = []
    for index, entry in enumerate(entries):
        where = f"cameras[{index}]" if cameras else f"--source {entry['source']}"
        values = {k: _checked(k, v, where) for k, v in entry.items()}
        name = values.get("camera") or (base["camera"] if not several else _camera_name(values["source"], names))
        if name in names:
            raise ConfigError(f"{where}: the camera name {name!r} is taken; names must differ (they name files, "
                              "topics and the page's tiles)")
        names.add(name)
        merged = {**base, **values, "camera": name}
        for key in PER_CAMERA_NAMES:
            if key not in values:
                merged[key] = _fill(base[key], name)
        for key in PER_CAMERA_NAMES:
            shared = [p for p in (base[key] if isinstance(base[key], list) else [base[key]]) if p]
            if several and key not in values and any("{camera}" not in p and p != "-" for p in shared):
                flag = "--" + ("output" if key == "outputs" else key.replace("_", "-"))
                if key == "mqtt_client_id":
                    raise ConfigError(f"{flag} {shared[0]} would be every camera's MQTT client ID, and a broker "
                                      "disconnects duplicates: put {camera} in it (e.g. site-{camera}) or leave it out")
                if key == "mqtt_available":
                    raise ConfigError(f"{flag} {shared[0]} would be every camera's availability topic, and the "
                                      "first camera to end would mark it offline: put {camera} in it or leave it out")
                raise ConfigError(f"{flag} {shared[0]} would be written by every camera: put {{camera}} in it "
                                  f"(e.g. {{camera}}.mp4) or give each camera its own in --cameras FILE; --web shows every "
                                  "camera's preview on one page")
        if several and merged["mqtt"] and not merged["mqtt_available"]:
            # Each camera has its own MQTT connection and last will: one shared availability topic would
            # read "offline" as soon as the first camera ended.
            merged["mqtt_available"] = f"{merged['mqtt_prefix']}/{name}/available"
        try:
            configs.append(AppConfig(**merged))
        except ConfigError as error:
            raise ConfigError(f"{where}: {error}") from None
    return configs
