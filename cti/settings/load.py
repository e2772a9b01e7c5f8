"""Loading the configuration: file, then environment, validated at once.

Layers, lowest first: the models' defaults < the YAML file (``config/cti.yaml``) < the
environment (``CTI_…``, mostly secrets). :func:`load_settings` merges them and validates the
result with pydantic; every problem is reported at once as a
:class:`~cti.settings.errors.ConfigProblem` that names the dotted field path and the YAML
line, so a typo is an error, never a silent default.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, get_args

from pydantic import BaseModel, ValidationError

from cti.settings.env import apply_env
from cti.settings.errors import ConfigError, ConfigProblem
from cti.settings.http import http_token_env_var
from cti.settings.schema import Settings, node_secret_env_var
from cti.settings.yamlfile import read_yaml

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from cti.settings.yamlfile import Loc

__all__ = ["DEFAULT_CONFIG_PATH", "load_settings", "resolve_config_path"]


DEFAULT_CONFIG_PATH: Final = Path("config/cti.yaml")
"""Used when neither ``-c FILE`` nor ``$CTI_CONFIG`` names a file; relative to the cwd."""

_AMI_KEY_HINT: Final = (
    "set CTI_AMI_SECRET (every node) or {var} (this node) in the environment, "
    "or `secret:` in the file (quoted)"
)


def resolve_config_path(path: Path | None, env: Mapping[str, str] | None = None) -> Path:
    """The file to read: *path*, else ``$CTI_CONFIG``, else ``config/cti.yaml`` (cwd)."""
    if path is not None:
        return path
    env = os.environ if env is None else env
    from_env = env.get("CTI_CONFIG")
    return Path(from_env) if from_env else DEFAULT_CONFIG_PATH


def load_settings(path: Path | None, env: Mapping[str, str] | None = None) -> Settings:
    """Read, layer and validate the configuration.

    Args:
        path: the YAML file; ``None`` means ``$CTI_CONFIG`` or ``config/cti.yaml``.
        env: the environment to take ``CTI_…`` overrides from (default ``os.environ``).

    Raises:
        ConfigError: with every problem found (file, YAML syntax, or validation).
    """
    env = os.environ if env is None else env
    file = resolve_config_path(path, env)
    data, lines, duplicates = read_yaml(file)

    problems = [
        ConfigProblem(_dotted(loc), "duplicate key (the later one would win silently)", line)
        for loc, line in duplicates
    ]
    if data is None:
        data = {}
    if not isinstance(data, dict):
        problems.append(ConfigProblem(str(file), "the top level must be a mapping (key: value)", 1))
        raise ConfigError(problems, path=file)

    for section in Settings.model_fields:
        # `mqtt:` with every line below it commented out reads as null: mean the defaults.
        if section in data and data[section] is None:
            data[section] = {}
    env_sources = apply_env(data, env, problems)
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        names = _node_names(data)
        tokens = _token_names(data)
        problems.extend(_problem(err, lines, env_sources, names, tokens) for err in exc.errors())
    if problems:
        problems.sort(key=lambda p: (p.line is None, p.line or 0))
        raise ConfigError(problems, path=file)
    return settings

    # another shape: validation reports the section itself


def _node_names(data: Mapping[str, Any]) -> dict[int, str]:
    ami = data.get("ami")
    nodes = ami.get("nodes") if isinstance(ami, dict) else None
    if not isinstance(nodes, list):
        return {}
    return {
        index: node["name"]
        for index, node in enumerate(nodes)
        if isinstance(node, dict) and isinstance(node.get("name"), str)
    }


def _token_names(data: Mapping[str, Any]) -> dict[int, str]:
    http = data.get("http")
    tokens = http.get("tokens") if isinstance(http, dict) else None
    if not isinstance(tokens, list):
        return {}
    return {
        index: tok["name"]
        for index, tok in enumerate(tokens)
        if isinstance(tok, dict) and isinstance(tok.get("name"), str)
    }


def _problem(
    error: Any,
    lines: Mapping[Loc, int],
    env_sources: Mapping[Loc, str],
    node_names: Mapping[int, str],
    token_names: Mapping[int, str] | None = None,
) -> ConfigProblem:
    loc: Loc = tuple(error["loc"])
    message: str = error["msg"].removeprefix("Value error, ")
    kind: str = error["type"]
    var = next((v for src, v in env_sources.items() if loc[: len(src)] == src), None)

    if kind == "extra_forbidden":
        fields = _fields_at(loc[:-1])
        guess = difflib.get_close_matches(str(loc[-1]), fields, n=1, cutoff=0.6)
        if guess:
            message += f" (did you mean {guess[0]!r}?)"
    elif _is_node_secret(loc):
        name = node_names.get(loc[2]) if isinstance(loc[2], int) else None
        per_node = node_secret_env_var(name) if name else "CTI_AMI_SECRET_<NODE>"
        message += "; " + _AMI_KEY_HINT.format(var=per_node)
    elif _is_http_token(loc):
        name = (token_names or {}).get(loc[2]) if isinstance(loc[2], int) else None
        var_name = http_token_env_var(name) if name else "CTI_HTTP_TOKEN_<NAME>"
        message += f"; set {var_name} in the environment, or `token:` in the file (quoted)"
    elif kind != "missing" and not _is_secret(loc):
        shown = _short(error.get("input"))
        if shown is not None:
            message += f" (got {shown})"

    if var is not None:
        return ConfigProblem(_dotted(loc), f"{message} (from ${var})", None)
    return ConfigProblem(_dotted(loc), message, _line_of(loc, lines))


def _is_node_secret(loc: Loc) -> bool:
    return len(loc) == 4 and loc[:2] == ("ami", "nodes") and loc[3] == "secret"


def _is_http_token(loc: Loc) -> bool:
    return len(loc) == 4 and loc[:2] == ("http", "tokens") and loc[3] == "token"


def _is_secret(loc: Loc) -> bool:
    # password_hash: a refused "hash" is most often the password itself, pasted in its
    # place; echoing it would write it to the terminal and, on a reload, the daemon's log
    return bool(loc) and loc[-1] in {"secret", "password", "token", "password_hash"}


def _short(value: object) -> str | None:
    if isinstance(value, bool | int | float) or value is None:
        return repr(value)
    if isinstance(value, str):
        return repr(value if len(value) <= 40 else value[:37] + "...")
    return None


def _dotted(loc: Sequence[str | int]) -> str:
    return ".".join(map(str, loc)) or "<top level>"


def _line_of(loc: Loc, lines: Mapping[Loc, int]) -> int | None:
    for end in range(len(loc), 0, -1):
        line = lines.get(loc[:end])
        if line is not None:
            return line
    return None


def _fields_at(loc: Loc) -> list[str]:
    """Field names of the model found at *loc* (``("ami", "nodes", 0)`` -> AmiNode's)."""
    model: type[BaseModel] = Settings
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        found = _model_in(field.annotation) if field is not None else None
        if found is None:
            return []
        model = found
    return list(model.model_fields)


def _model_in(annotation: object) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None
