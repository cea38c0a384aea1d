"""Reference pages generated from the code, so they cannot drift from it.

- ``reference/cli.md``: every command of the typer app (walked as a click command tree);
- ``reference/settings.md``: every field of the settings models, with its variable and default;
- ``reference/http.md`` and ``reference/openapi.json``: the server's OpenAPI schema;
- ``reference/schemas.md``: the JSON schemas of the stable contracts (``assistant.contracts``), and of
  ``Verdicts`` when the code defines one.

The MkDocs hook (``docs/hooks.py``) calls :func:`pages` at build time; ``python docs/gen_reference.py OUT``
writes the same pages into OUT (to read them without MkDocs).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

CLI_NAME = "assistant"


def _cell(text: Any) -> str:
    """A Markdown table cell: one line, pipes and angle brackets escaped (``<home>`` is text, not a tag)."""
    return " ".join(str(text).split()).replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def _code(text: Any) -> str:
    text = str(text)
    if not text:
        return '`""`'
    return f"`` {text} ``" if "`" in text else f"`{text}`"


# -- CLI ------------------------------------------------------------------------------------------

def cli_commands() -> list[tuple[str, Any, Any]]:
    """(full name, click command, click context) for every command and group, depth first."""
    import typer

    from assistant.cli import app

    # Duck-typed: typer ships its own copy of click, so isinstance checks against `click` miss.
    root = typer.main.get_command(app)
    out: list[tuple[str, Any, Any]] = []

    def walk(cmd: Any, ctx: Any, name: str) -> None:
        out.append((name, cmd, ctx))
        if hasattr(cmd, "list_commands"):
            for sub_name in cmd.list_commands(ctx):
                sub = cmd.get_command(ctx, sub_name)
                if sub is None or sub.hidden:
                    continue
                walk(sub, sub.context_class(sub, info_name=sub_name, parent=ctx), f"{name} {sub_name}")

    walk(root, root.context_class(root, info_name=CLI_NAME), CLI_NAME)
    return out


def _arg_name(param: Any) -> str:
    name = (param.metavar or param.name or "").strip("{}").upper()
    return f"{name}..." if param.nargs == -1 else name


def _usage(cmd: Any, ctx: Any, name: str) -> str:
    params = [p for p in cmd.get_params(ctx) if not getattr(p, "hidden", False)]
    pieces = [name]
    if any(p.param_type_name == "option" for p in params):
        pieces.append("[OPTIONS]")
    for p in params:
        if p.param_type_name == "argument":
            pieces.append(_arg_name(p) if p.required else f"[{_arg_name(p)}]")
    if hasattr(cmd, "list_commands"):
        pieces.append("COMMAND [ARGS]...")
    return " ".join(pieces)


def _type_name(param: Any) -> str:
    """click's ``param.type.name``; typer's own click copy names it differently across versions."""
    for get in (lambda: param.type.name, lambda: param.display_type(),
                lambda: param.type_descriptor.annotation.__name__):
        try:
            value = get()
        except (AttributeError, TypeError):
            continue
        if isinstance(value, str) and value:
            return value.upper()
    return "TEXT"


def _param_row(param: Any, ctx: Any) -> str:
    if param.param_type_name == "argument":
        names = _arg_name(param)
        kind = "argument" + ("" if param.required else " (optional)")
    else:
        names = ", ".join(param.opts + param.secondary_opts)
        kind = "flag" if param.is_flag else _type_name(param)
    default = param.get_default(ctx, call=False) if not getattr(param, "required", False) else None
    if callable(default) or default in (None, (), []) or (getattr(param, "is_flag", False) and default is False):
        default_text = ""
    else:
        default_text = _code(default)
    help_text = getattr(param, "help", None) or ""
    return f"| {_code(names)} | {_cell(kind)} | {default_text} | {_cell(help_text)} |"


def cli_reference() -> str:
    lines = ["# CLI reference", "",
             "Generated from the typer app (`assistant.cli`) at build time: every command, argument and "
             "option, with the help text `assistant COMMAND --help` prints.", ""]
    for name, cmd, ctx in cli_commands():
        depth = min(name.count(" ") + 1, 4)
        lines += [f"{'#' * (depth + 1)} `{name}`", ""]
        doc = (cmd.help or "").strip()
        if doc:
            lines += [doc.split("\n\n")[0].strip(), ""]
        lines += ["```", _usage(cmd, ctx, name), "```", ""]
        params = [p for p in cmd.get_params(ctx) if not getattr(p, "hidden", False) and p.name != "help"]
        if params:
            lines += ["| argument / option | type | default | help |", "|---|---|---|---|"]
            lines += [_param_row(p, ctx) for p in params]
            lines.append("")
    return "\n".join(lines)


# -- settings -------------------------------------------------------------------------------------

def settings_rows() -> list[dict[str, str]]:
    """One row per settings field: dotted name, variable(s), type, default, description."""
    from pydantic_core import PydanticUndefined

    from assistant import settings as S

    def type_name(field: Any) -> str:
        ann = field.annotation
        text = getattr(ann, "__name__", None) if not getattr(ann, "__args__", None) else None
        text = text or str(ann).replace("typing.", "").replace("pathlib.", "")
        return text.replace("SecretStr", "secret str")

    def default_of(name: str, field: Any) -> str:
        if field.default_factory is not None:
            factory = field.default_factory
            if isinstance(factory, type) and hasattr(factory, "model_fields"):
                return "(section)"
            value = factory()
            return _code(str(value).replace(str(Path.home()), "~")) if value is not None else ""
        if field.default is PydanticUndefined or field.default is None:
            return ""
        value = field.default
        if hasattr(value, "get_secret_value"):
            return _code("") if not value.get_secret_value() else "(secret)"
        if isinstance(value, bool):
            return _code(str(value).lower())
        return _code(value)

    def constraints(field: Any) -> str:
        bits = []
        for meta in field.metadata:
            for attr, sym in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<"), ("min_length", "length ≥"),
                              ("max_length", "length ≤")):
                v = getattr(meta, attr, None)
                if v is not None:
                    bits.append(f"{sym} {v}")
        return ", ".join(bits)

    docs = S._field_docs(S.Settings)
    rows: list[dict[str, str]] = []
    top_vars = {"home": "ASSISTANT_HOME", "cache_dir": "ASSISTANT_CACHE_DIR", "config_file": "ASSISTANT_CONFIG"}
    for name in S.TOP_LEVEL:
        field = S.Settings.model_fields[name]
        rows.append({"setting": name, "variables": top_vars.get(name, S.ENV_PREFIX + name.upper()),
                     "type": type_name(field), "default": default_of(name, field),
                     "constraints": constraints(field), "description": docs.get(name, "")})
    for section in S.SECTIONS:
        sec_cls = S.Settings.model_fields[section].default_factory
        sec_docs = S._field_docs(sec_cls)
        for name, field in sec_cls.model_fields.items():
            short = S.env_var_for(section, name)
            nested = f"{S.ENV_PREFIX}{section.upper()}__{name.upper()}"
            variables = short if short == nested else f"{short}, {nested}"
            rows.append({"setting": f"{section}.{name}", "variables": variables, "type": type_name(field),
                         "default": default_of(name, field), "constraints": constraints(field),
                         "description": sec_docs.get(name, "")})
    return rows


def settings_reference() -> str:
    from assistant import settings as S

    lines = ["# Settings reference", "",
             "Generated from the settings models (`assistant/settings.py`) at build time. Every field is a TOML "
             "key (`[section]` then `name = value`) and an environment variable; the first variable listed is the "
             "documented short name where there is one, and `ASSISTANT_<SECTION>__<FIELD>` always works too. "
             "Precedence: keyword arguments > environment > config file > defaults. "
             "`assistant config show` prints the effective values.", ""]
    for section in (None, *S.SECTIONS):
        if section is None:
            title, doc = "Top level", "Where things live."
            rows = [r for r in settings_rows() if "." not in r["setting"]]
        else:
            sec_cls = S.Settings.model_fields[section].default_factory
            title, doc = f"`[{section}]`", " ".join((sec_cls.__doc__ or "").split())
            rows = [r for r in settings_rows() if r["setting"].startswith(section + ".")]
        lines += [f"## {title}", "", doc, "", "| setting | variable | type | default | description |",
                  "|---|---|---|---|---|"]
        for r in rows:
            desc = r["description"] + (f" ({r['constraints']})" if r["constraints"] else "")
            variables = ", ".join(_code(v.strip()) for v in r["variables"].split(","))
            lines.append(f"| {_code(r['setting'])} | {variables} | {_cell(r['type'])} | {r['default']} | "
                         f"{_cell(desc)} |")
        lines.append("")
    return "\n".join(lines)


# -- HTTP -----------------------------------------------------------------------------------------

def openapi_schema() -> dict[str, Any]:
    """The server's OpenAPI document, from an app around an Assistant on an empty temporary home."""
    from assistant.api import Assistant
    from assistant.server.app import create_app
    from assistant.settings import Settings

    with tempfile.TemporaryDirectory() as tmp:
        a = Assistant(Settings.load(env={"ASSISTANT_CONFIG": ""}, home=Path(tmp) / "home"))
        try:
            app = create_app(a, warm=False)
            while not hasattr(app, "openapi") and hasattr(app, "app"):  # ASGI middleware around FastAPI
                app = app.app
            return app.openapi()
        finally:
            a.index.close()


def http_routes(schema: dict[str, Any]) -> list[tuple[str, str]]:
    return [(method.upper(), path) for path, ops in schema.get("paths", {}).items() for method in ops]


def _schema_type(s: dict[str, Any]) -> str:
    if "$ref" in s:
        return s["$ref"].rsplit("/", 1)[-1]
    if "anyOf" in s:
        return " or ".join(_schema_type(x) for x in s["anyOf"])
    if s.get("type") == "array":
        return f"list of {_schema_type(s.get('items', {}))}"
    if "enum" in s:
        return " \\| ".join(str(x) for x in s["enum"])
    return str(s.get("type", "any"))


def http_reference(schema: dict[str, Any]) -> str:
    lines = ["# HTTP API reference", "",
             "Generated from the OpenAPI schema of the FastAPI app (`assistant/server/app.py`) at build time; "
             "the whole document is [openapi.json](openapi.json). The server does not publish it itself "
             "(no `/docs` or `/openapi.json` route). Errors are `{\"error\": {\"message\": ...}}` with a 4xx/5xx "
             "status; see [Serving](../serving.md).", ""]
    for path, ops in schema.get("paths", {}).items():
        for method, op in ops.items():
            lines += [f"## `{method.upper()} {path}`", ""]
            text = (op.get("description") or op.get("summary") or "").strip()
            if text:
                lines += [text, ""]
            params = op.get("parameters", [])
            if params:
                lines += ["| parameter | in | type | required | default | constraints |", "|---|---|---|---|---|---|"]
                for p in params:
                    s = p.get("schema", {})
                    kind = _cell(_schema_type(s))
                    default = _code(json.dumps(s["default"])) if "default" in s else ""
                    limits = ", ".join(f"{k} {s[k]}" for k in ("minimum", "maximum", "pattern", "maxLength")
                                       if k in s)
                    lines.append(f"| {_code(p['name'])} | {p.get('in', '')} | {kind} "
                                 f"| {'yes' if p.get('required') else 'no'} | {default} | {_cell(limits)} |")
                lines.append("")
            body = op.get("requestBody", {}).get("content", {})
            for media, spec in body.items():
                lines += [f"Request body ({_code(media)}): {_cell(_schema_type(spec.get('schema', {})))}", ""]
            responses = op.get("responses", {})
            if responses:
                lines += ["| status | meaning |", "|---|---|"]
                lines += [f"| {code} | {_cell(r.get('description', ''))} |" for code, r in responses.items()]
                lines.append("")
    components = schema.get("components", {}).get("schemas", {})
    if components:
        lines += ["## Request models", ""]
        for name, comp in components.items():
            lines += [f"### {name}", ""]
            if comp.get("description"):
                lines += [" ".join(comp["description"].split()), ""]
            props = comp.get("properties", {})
            if props:
                required = set(comp.get("required", []))
                lines += ["| field | type | required | default |", "|---|---|---|---|"]
                for field, fs in props.items():
                    default = _code(json.dumps(fs["default"])) if "default" in fs else ""
                    lines.append(f"| {_code(field)} | {_cell(_schema_type(fs))} | "
                                 f"{'yes' if field in required else 'no'} | {default} |")
                lines.append("")
    return "\n".join(lines)


# -- JSON schemas ---------------------------------------------------------------------------------

#: Modules where a ``Verdicts`` record may live (claim verification); the first found is documented.
VERDICTS_MODULES = ("assistant.contracts", "assistant.records", "assistant.verification")


def json_schemas() -> dict[str, dict[str, Any]]:
    """name -> JSON schema: every contract of ``assistant.contracts``, and ``Verdicts`` if the code has one."""
    from pydantic import BaseModel, TypeAdapter

    from assistant.contracts import CONTRACTS

    out = {name: model.model_json_schema() for name, model in CONTRACTS.items()}
    if "Verdicts" not in out:
        for module in VERDICTS_MODULES:
            try:
                obj = getattr(importlib.import_module(module), "Verdicts", None)
            except ImportError:
                continue
            if obj is None:
                continue
            if hasattr(obj, "json_schema") and callable(obj.json_schema):
                out["Verdicts"] = obj.json_schema()
            elif isinstance(obj, type) and issubclass(obj, BaseModel):
                out["Verdicts"] = obj.model_json_schema()
            elif dataclasses.is_dataclass(obj):
                out["Verdicts"] = TypeAdapter(obj).json_schema()
            break
    return out


def schemas_reference(schemas: dict[str, dict[str, Any]]) -> str:
    lines = ["# JSON schemas", "",
             "Generated from the models at build time (`assistant/contracts.py`; a test validates real answers "
             "against them). `Answer` is what `Answer.to_dict()`, `assistant ask --json` and `POST /v1/ask` "
             "return.", ""]
    for name, schema in schemas.items():
        lines += [f"## {name}", "", "```json", json.dumps(schema, indent=2, ensure_ascii=False), "```", ""]
    return "\n".join(lines)


# -- all pages ------------------------------------------------------------------------------------

def pages() -> dict[str, str]:
    """Path under docs/ -> content, for every generated page."""
    schema = openapi_schema()
    return {
        "reference/cli.md": cli_reference(),
        "reference/settings.md": settings_reference(),
        "reference/http.md": http_reference(schema),
        "reference/openapi.json": json.dumps(schema, indent=2, ensure_ascii=False),
        "reference/schemas.md": schemas_reference(json_schemas()),
    }


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python docs/gen_reference.py OUT_DIR", file=sys.stderr)
        return 2
    out = Path(argv[0])
    for rel, text in pages().items():
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(path)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    raise SystemExit(main(sys.argv[1:]))
