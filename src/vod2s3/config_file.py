"""The configuration file (VOD2S3_CONFIG, TOML) merged with the environment, and where each
setting came from. The file's keys are the environment's names without the prefix, in
lower case; the environment wins. Values are checked once, by Settings.from_env, on one
merged mapping: an error names the file's key when the value came from the file."""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Literal

from vod2s3.bandwidth.timetable import Timetable
from vod2s3.config import SECRET_FILE_SETTINGS, Settings
from vod2s3.crypto import SecretBox
from vod2s3.errors import ConfigurationError

CONFIG_VARIABLE = "VOD2S3_CONFIG"
PREFIX = "VOD2S3_"
SETTING_NAMES = tuple(sorted(field.name for field in fields(Settings)))
# Settings that hold several values: a TOML array, or one string separated by commas.
LIST_SETTINGS = frozenset({"callback_allow", "trusted_proxies"})

Source = Literal["default", "file", "environment"]


@dataclass(frozen=True)
class Configuration:
    settings: Settings
    sources: dict[str, Source]  # by setting name
    file: Path | None  # the configuration file read, if any


def load(environ: Mapping[str, str]) -> Configuration:
    """The settings from the file VOD2S3_CONFIG names (if any) and the environment."""
    file = _config_path(environ)
    from_file = _read(file) if file is not None else {}
    merged: dict[str, str] = {}
    sources: dict[str, Source] = {}
    for name in SETTING_NAMES:
        variable = PREFIX + name.upper()
        # A secret's value may come from the file its _FILE variable names: that is the
        # environment's too, and wins over the configuration file as the value itself does.
        given = [variable]
        if name in SECRET_FILE_SETTINGS:
            given.append(variable + "_FILE")
        # An empty variable means "not set", as Settings.from_env has always read it.
        if any(environ.get(each, "").strip() for each in given):
            merged.update({each: environ[each] for each in given if each in environ})
            sources[name] = "environment"
        elif name in from_file:
            merged[variable] = from_file[name]
            sources[name] = "file"
        else:
            sources[name] = "default"
    from_file_names = {PREFIX + n.upper(): n for n, s in sources.items() if s == "file"}
    try:
        settings = Settings.from_env(merged)
        if settings.master_key:
            _check_master_key(settings.master_key)
    except ConfigurationError as error:
        raise ConfigurationError(_name_sources(error.message, from_file_names, file)) from None
    return Configuration(settings, sources, file)


def _check_master_key(master_key: str) -> None:
    """A bad key is said now, under its source's name (crypto.py's message names none)."""
    try:
        SecretBox(master_key)
    except ConfigurationError as error:
        raise ConfigurationError(f"VOD2S3_MASTER_KEY: {error.message}") from None


def _config_path(environ: Mapping[str, str]) -> Path | None:
    given = environ.get(CONFIG_VARIABLE, "").strip()
    if not given:
        return None
    # Absolute: the paths in the file are relative to it, whatever the working directory.
    return Path(given).expanduser().absolute()


def _read(file: Path) -> dict[str, str]:
    """The file's settings as the environment would spell them (paths made absolute)."""
    try:
        text = file.read_bytes().decode("utf-8")
    except OSError as error:
        raise ConfigurationError(
            f"{CONFIG_VARIABLE} names {file}, which cannot be read ({error.strerror}): "
            "give the path of a TOML file, or unset it"
        ) from None
    except UnicodeDecodeError:
        raise ConfigurationError(f"{file} is not UTF-8 text: save it as UTF-8") from None
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigurationError(f"{file} is not valid TOML: {error}") from None
    settings: dict[str, str] = {}
    for key, value in table.items():
        if isinstance(value, dict):
            raise ConfigurationError(
                f"{file}: [{key}] is a table, and vod2s3 reads none: write the settings at "
                "the top of the file, before any [section]"
            )
        if key not in SETTING_NAMES:
            raise ConfigurationError(_unknown_key(key, file))
        text_value = _as_text(key, value, file)
        settings[key] = _relative_to(file.parent, key, text_value)
    return settings


def _unknown_key(key: str, file: Path) -> str:
    bare = key.lower().removeprefix(PREFIX.lower())
    if bare in SETTING_NAMES:
        return f"{file}: unknown setting {key!r}: write it {bare!r} (lower case, no prefix)"
    close = difflib.get_close_matches(bare, SETTING_NAMES, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return (
        f"{file}: unknown setting {key!r}: {hint}the settings are the environment's names "
        f"without {PREFIX} in lower case: {', '.join(SETTING_NAMES)}"
    )


def _as_text(key: str, value: object, file: Path) -> str:
    """A TOML value as the environment variable would hold it."""
    if isinstance(value, bool):  # before int: a bool is an int
        return "yes" if value else "no"
    if isinstance(value, str | int | float):
        return str(value)
    if isinstance(value, list) and key in LIST_SETTINGS:
        if all(isinstance(item, str) for item in value):
            return ",".join(value)
        raise ConfigurationError(
            f'{key} in {file} must be an array of strings, such as ["10.0.0.0/8", "::1"]'
        )
    accepted = "a string, a number or true/false"
    if key in LIST_SETTINGS:
        accepted = 'an array of strings, such as ["10.0.0.0/8", "::1"], or one string'
    raise ConfigurationError(
        f"{key} in {file} must be {accepted}, not a TOML {type(value).__name__}"
    )


def _relative_to(folder: Path, key: str, value: str) -> str:
    """Paths in the file are relative to the file, never to the working directory."""
    if key in ("storage_root", "master_key_file") and value.strip():
        return str(folder / Path(value.strip()).expanduser())
    if key == "database_url":
        scheme, sep, path = value.strip().partition(":///")
        if scheme.startswith("sqlite") and sep and path and path != ":memory:":
            return f"{scheme}:///{folder / path}"
    return value


_VARIABLE = re.compile(r"\bVOD2S3_[A-Z0-9_]+\b")


def _name_sources(message: str, from_file: Mapping[str, str], file: Path | None) -> str:
    """The validators name the environment variable: name the file's key instead when the
    value came from the file."""

    def named(match: re.Match[str]) -> str:
        key = from_file.get(match.group(0))
        return f"{key} in {file}" if key is not None else match.group(0)

    return _VARIABLE.sub(named, message)


def working_directory_paths(settings: Settings) -> dict[str, Path]:
    """The settings whose path is relative, so depends on the directory the process starts
    in (the defaults ./vod2s3.db and ./storage are): where each resolves now."""
    relative: dict[str, Path] = {}
    sqlite_path = settings.sqlite_path
    if sqlite_path is not None and not sqlite_path.is_absolute():
        relative["database_url"] = sqlite_path.absolute()
    if not settings.storage_root.is_absolute():
        relative["storage_root"] = settings.storage_root.absolute()
    return relative


def shown_value(value: object) -> object:
    """A setting as JSON holds it: paths and networks as strings."""
    if isinstance(value, tuple):
        return [str(item) for item in value]
    if isinstance(value, Path | Timetable):
        return str(value)
    return value
