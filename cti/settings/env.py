"""The environment layer: ``CTI_…`` variables (mostly secrets) over the file's values.

A variable that names something the file does not have (a node, a token, a backend) is a
problem, not ignored: a misspelt secret must not leave a node without one unnoticed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cti.settings.errors import ConfigProblem
from cti.settings.http import http_token_env_var
from cti.settings.schema import node_secret_env_var
from cti.settings.workorders import WORKORDERS_TOKEN_ENV

if TYPE_CHECKING:
    from collections.abc import Mapping

    from cti.settings.yamlfile import Loc

__all__ = ["apply_env"]


def apply_env(
    data: dict[str, Any], env: Mapping[str, str], problems: list[ConfigProblem]
) -> dict[Loc, str]:
    """Layer the ``CTI_…`` variables over *data* in place; return {path: variable}."""
    sources: dict[Loc, str] = {}

    def put(loc: tuple[str, ...], var: str) -> None:
        if var not in env:
            return
        target: Any = data
        for key in loc[:-1]:
            target = target.setdefault(key, {})
            if not isinstance(target, dict):
                return  # the file has a wrong shape there; validation reports it
        target[loc[-1]] = env[var]
        sources[loc] = var

    put(("mqtt", "password"), "CTI_MQTT_PASSWORD")
    put(("database", "url"), "CTI_DATABASE_URL")
    put(("dispatch110", "feedback", "token"), "CTI_DISPATCH110_FEEDBACK_TOKEN")
    put(("logging", "level"), "CTI_LOG_LEVEL")
    # the one setting that differs between the two daemons of an active/standby pair
    put(("ha", "node_id"), "CTI_HA_NODE_ID")
    _apply_http_token_env(data, env, sources, problems)
    _apply_workorders_token_env(data, env, sources, problems)

    ami = data.get("ami")
    nodes = ami.get("nodes") if isinstance(ami, dict) else None
    if not isinstance(nodes, list):
        return sources
    claimed: set[str] = set()
    for index, node in enumerate(nodes):
        if not isinstance(node, dict):
            continue
        name = node.get("name")
        var = node_secret_env_var(name) if isinstance(name, str) else None
        if var is not None and var in env:
            node["secret"] = env[var]
            claimed.add(var)
        elif node.get("secret") is None and "CTI_AMI_SECRET" in env:
            node["secret"] = env["CTI_AMI_SECRET"]
            var = "CTI_AMI_SECRET"
        else:
            continue
        sources["ami", "nodes", index, "secret"] = var
    names = sorted(
        n["name"] for n in nodes if isinstance(n, dict) and isinstance(n.get("name"), str)
    )
    problems.extend(
        ConfigProblem(var, f"matches no node in ami.nodes (nodes: {', '.join(names) or 'none'})")
        for var in sorted(env)
        if var.startswith("CTI_AMI_SECRET_") and var not in claimed
    )
    return sources


def _apply_http_token_env(
    data: dict[str, Any],
    env: Mapping[str, str],
    sources: dict[Loc, str],
    problems: list[ConfigProblem],
) -> None:
    """``CTI_HTTP_TOKEN_<NAME>`` sets the token of ``http.tokens[name=<name>]``.

    Only tokens listed in the file can be set (their scopes are configuration, not
    secrets); a variable that matches no listed token is a problem, not ignored.
    """
    http = data.get("http")
    tokens = http.get("tokens") if isinstance(http, dict) else None
    claimed: set[str] = set()
    names: list[str] = []
    if isinstance(tokens, list):
        for index, tok in enumerate(tokens):
            name = tok.get("name") if isinstance(tok, dict) else None
            if not isinstance(name, str):
                continue
            names.append(name)
            var = http_token_env_var(name)
            if var in env and isinstance(tok, dict):
                tok["token"] = env[var]
                claimed.add(var)
                sources["http", "tokens", index, "token"] = var
    problems.extend(
        ConfigProblem(
            var, f"matches no token in http.tokens (tokens: {', '.join(sorted(names)) or 'none'})"
        )
        for var in sorted(env)
        if var.startswith("CTI_HTTP_TOKEN_") and var not in claimed
    )


def _apply_workorders_token_env(
    data: dict[str, Any],
    env: Mapping[str, str],
    sources: dict[Loc, str],
    problems: list[ConfigProblem],
) -> None:
    """``CTI_WORKORDERS_TOKEN`` sets ``workorders.http.token``; with no ``workorders.http``
    section in the file it is a problem (a token for no backend), not ignored."""
    if WORKORDERS_TOKEN_ENV not in env:
        return
    section = data.get("workorders")
    http = section.get("http") if isinstance(section, dict) else None
    if isinstance(http, dict):
        http["token"] = env[WORKORDERS_TOKEN_ENV]
        sources["workorders", "http", "token"] = WORKORDERS_TOKEN_ENV
    elif http is None:
        problems.append(
            ConfigProblem(WORKORDERS_TOKEN_ENV, "set, but the file has no workorders.http section")
        )
