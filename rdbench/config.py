"""Configuration: YAML files in ``conf/`` validated once, at load, into typed objects.

Two kinds of file live in ``conf/``:

* ``conf/systems/<name>.yaml`` describes one system (Gray-Scott, LSTM, DDPM...):
  the plug-in class that implements it, its settings under the paper profile,
  the overrides of the other profiles (``quick``, ``smoke``...), its named
  cases (``spot``/``stripe``, ``sine``/``lorenz``, ``mnist``...) and its
  parametric case kinds (``case_kinds``): a case ``KIND:ARG`` (``csv:data/x.csv``)
  resolves like a named case whose overrides are the kind's template with every
  ``{arg}`` replaced by ``ARG``.
* ``conf/<grid>.yaml`` lists the cells of a study (system x case x seed).

A cell's settings resolve in this order, each layer overriding the one before:
the system's ``settings`` -> the profile's overrides -> the case's overrides ->
the grid entry's ``set`` -> command-line ``--set key=value``. The result is
validated against the system's pydantic ``Settings`` model; an unknown key or a
value of the wrong type raises :class:`ConfigError` with a one-line message that
names the file, the key and what is allowed.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import re
import reprlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError


class ConfigError(ValueError):
    """A configuration problem, reported to the user as one line."""


class Settings(BaseModel):
    """Base of every system's settings model: frozen, unknown keys are errors, and a float
    setting must be finite (``inf`` and ``nan`` are refused where they are read)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


# --------------------------------------------------------------------------- files


def conf_dir() -> Path:
    """The ``conf/`` folder: ``$RDBENCH_CONF_DIR``, else the one shipped inside the package.

    The shipped configs are package data (``rdbench/conf``, also reachable as ``conf/``
    at the top of a checkout), so an installed wheel finds them from any folder.
    """
    env = os.environ.get("RDBENCH_CONF_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent / "conf"


PUBLISHED = "published"  # conf/published.yaml: Table 1 as published, not a grid


def available_grids(directory: Path | None = None) -> list[str]:
    """Names of the grid files in ``conf/`` (``paper``, ``quick``...)."""
    directory = directory or conf_dir()
    return sorted(p.stem for p in directory.glob("*.yaml") if p.stem != PUBLISHED)


# YAML is input: a few hundred bytes of nested anchors (an "alias bomb") expand to billions of
# nodes once copied or validated. Documents are read by a loader that counts the expanded size.
MAX_YAML_NODES = 100_000  # scalars, sequences and mappings once every alias is expanded
MAX_YAML_BYTES = 10 * 2**20  # a config file larger than this is not a config file
QUOTE_CHARS = 200  # an error message quotes at most this much of a value


class _CappedLoader(yaml.SafeLoader):
    """PyYAML's SafeLoader that refuses a document whose expanded size passes :data:`MAX_YAML_NODES`
    (or which refers to itself) before anything is built from it."""

    def compose_document(self):  # noqa: D102 - PyYAML's hook
        node = super().compose_document()
        if node is not None:
            _check_expanded_size(node)
        return node


def _check_expanded_size(root: yaml.Node) -> None:
    """Count the nodes of ``root`` as if every alias were a copy (memoised, so linear in the
    document); ConfigError past the cap or on a recursive alias."""
    sizes: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    open_nodes: set[int] = set()
    while stack:
        node, done = stack.pop()
        key = id(node)
        if key in sizes and not done:
            continue
        children = _children(node)
        if not done:
            if key in open_nodes:
                raise ConfigError("YAML refers to itself (a recursive alias); write the value out")
            open_nodes.add(key)
            stack.append((node, True))
            stack.extend((child, False) for child in children if id(child) not in sizes)
            continue
        open_nodes.discard(key)
        sizes[key] = 1 + sum(sizes[id(child)] for child in children)
        if sizes[key] > MAX_YAML_NODES:
            raise ConfigError(
                f"YAML expands to over {MAX_YAML_NODES} values (aliases of aliases); a config needs far fewer"
            )


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def load_yaml_text(text: str, source: str) -> Any:
    """Parse one YAML document (aliases capped); every problem is a one-line ConfigError naming ``source``."""
    try:
        return yaml.load(text, Loader=_CappedLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{source}:{where} is not valid YAML: {getattr(exc, 'problem', exc)}") from None
    except ConfigError as exc:  # the expanded-size cap
        raise ConfigError(f"{source}: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{source}: YAML nested too deeply") from None


def quote(value: Any, limit: int = QUOTE_CHARS) -> str:
    """``repr(value)`` cut to about ``limit`` characters (a long container is never rendered whole):
    an error line never carries a whole input."""
    short = reprlib.Repr()
    short.maxstring = short.maxother = short.maxlong = limit
    short.maxlist = short.maxtuple = short.maxdict = short.maxset = 20
    short.maxlevel = 4
    text = short.repr(value)
    return text if len(text) <= limit else f"{text[:limit]}..."


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, turning every I/O, encoding, size or syntax problem into a ConfigError."""
    path = Path(path)
    try:
        if path.is_file() and path.stat().st_size > MAX_YAML_BYTES:
            raise ConfigError(f"{path}: {path.stat().st_size} bytes is too large for a config file "
                              f"(at most {MAX_YAML_BYTES // 2**20} MiB)")
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a YAML text file (byte {exc.start} is not UTF-8)") from None
    data = load_yaml_text(text, str(path))
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


MAX_INT = 2**63 - 1  # an integer setting is a 64-bit integer: past this, torch and numpy overflow


def validate(model: type[BaseModel], data: Mapping[str, Any], source: str) -> Any:
    """Build ``model`` from ``data``; any validation error, or an integer past :data:`MAX_INT`,
    becomes a one-line ConfigError."""
    try:
        built = model.model_validate(dict(data))
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, model, source)) from None
    for loc, value in _integers(built):
        if abs(value) > MAX_INT:
            raise ConfigError(f"{source}: bad value {quote(value)} for {loc!r}: Input should be at most {MAX_INT}")
    return built


def _integers(value: Any, loc: str = "") -> Iterator[tuple[str, int]]:
    """``(dotted key, value)`` of every int inside a validated model (nested models, lists, dicts)."""
    if isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from _integers(getattr(value, name), f"{loc}.{name}" if loc else name)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _integers(item, f"{loc}.{key}" if loc else str(key))
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from _integers(item, f"{loc}.{index}")
    elif isinstance(value, int) and not isinstance(value, bool):
        yield loc, value


def describe_validation_error(exc: ValidationError, model: type[BaseModel], source: str) -> str:
    """One line for the first error: file, dotted key, the bad value and what is allowed."""
    errors = exc.errors()
    # an unknown key explains a "missing" one better (a typo is both), so report it first
    err = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    loc = ".".join(str(part) for part in err["loc"])
    if err["type"] == "extra_forbidden":
        allowed = _allowed_keys(model, err["loc"][:-1])
        return f"{source}: unknown key {quote(loc)}; allowed keys: {', '.join(allowed)}"
    if err["type"] == "missing":
        return f"{source}: missing required key {loc!r}"
    value = err.get("input")
    return f"{source}: bad value {quote(value)} for {quote(loc)}: {err['msg']}"


def _allowed_keys(model: type[BaseModel], parent_loc: tuple) -> list[str]:
    """Field names of the (possibly nested) model that ``parent_loc`` points at."""
    current: Any = model
    for part in parent_loc:
        if isinstance(part, int):
            continue
        field = current.model_fields.get(part) if hasattr(current, "model_fields") else None
        if field is None:
            break
        annotation = field.annotation
        args = getattr(annotation, "__args__", ()) or ()
        candidates = [annotation, *args]
        nested = next(
            (c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None
        )
        if nested is None:
            for arg in args:  # list[Model] / dict[str, Model]
                for inner in getattr(arg, "__args__", ()) or ():
                    if isinstance(inner, type) and issubclass(inner, BaseModel):
                        nested = inner
        if nested is None:
            break
        current = nested
    return sorted(getattr(current, "model_fields", {}).keys())


# --------------------------------------------------------------------------- names and plug-ins

NAME = re.compile(r"^[a-z][a-z0-9_]*$")  # a system's name: a file name in conf/systems/, never a path
PLUGIN = re.compile(r"^(?P<module>[A-Za-z_][\w]*(?:\.[A-Za-z_][\w]*)*):(?P<attr>[A-Za-z_]\w*)$")
TRUSTED_PACKAGE = "rdbench.systems"  # plug-ins are imported from here, or from a module the user trusts
_trusted_modules: set[str] = set()


def trust_plugin_module(module: str) -> None:
    """Allow plug-ins from ``module`` (``rdbench --trust-plugin MODULE``): config files alone
    cannot make rdbench import code from outside :data:`TRUSTED_PACKAGE`."""
    if not PLUGIN.match(f"{module}:X"):
        raise ConfigError(f"--trust-plugin {module!r} is not a module name (dotted Python identifiers)")
    _trusted_modules.add(module)


def check_system_name(name: str, what: str = "system") -> str:
    """``name`` if it is a system name (lowercase letters, digits, ``_``), else a ConfigError."""
    if not isinstance(name, str) or not NAME.match(name):
        raise ConfigError(
            f"bad {what} name {name!r}: a name of conf/systems/ (lowercase letters, digits and _), not a path"
        )
    return name


def _plugin_allowed(module: str) -> bool:
    return module == TRUSTED_PACKAGE or module.startswith(TRUSTED_PACKAGE + ".") or module in _trusted_modules


# --------------------------------------------------------------------------- overrides


def parse_assignment(text: str) -> tuple[str, Any]:
    """Parse one ``key=value`` from ``--set``; the value is read as YAML (``0.1``, ``true``, ``[1, 2]``)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set expects key=value, got {quote(text)}")
    if not raw.strip():
        return key, raw
    try:
        value = load_yaml_text(raw, f"--set {key}")
    except ConfigError as exc:
        if "not valid YAML" not in str(exc):
            raise  # an alias bomb or a recursive alias is refused, not kept as text
        value = raw
    return key, value


def apply_overrides(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Return a copy of ``base`` with dotted keys (``early_stop.tolerance``) set from ``overrides``."""
    out = json.loads(json.dumps(dict(base)))  # deep copy of plain YAML data
    for dotted, value in overrides.items():
        target = out
        parts = dotted.split(".")
        for part in parts[:-1]:
            nxt = target.get(part)
            if not isinstance(nxt, dict):
                nxt = {}
                target[part] = nxt
            target = nxt
        target[parts[-1]] = value
    return out


# --------------------------------------------------------------------------- system files


class Resources(BaseModel):
    """What one batch of a system's cells asks a Ray worker for (``rdbench grid --executor ray``).

    ``gpu_on_cuda`` GPUs are asked for only when the grid runs on CUDA; on the CPU a
    batch asks for ``cpu`` CPUs alone. ``max_retries``: how many times a batch whose
    worker process or node died is run again before its cells are FAILED.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    cpu: float = Field(1.0, ge=0, description="Ray CPUs per batch")
    gpu_on_cuda: float = Field(0.0, ge=0, description="Ray GPUs per batch when the device is CUDA")
    max_retries: int = Field(2, ge=0, description="reruns of a batch whose worker or node died")


class SystemFile(BaseModel):
    """The schema of ``conf/systems/<name>.yaml``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    plugin: str = Field(description="'module:Class' of the System plug-in")
    description: str = ""
    default_case: str
    case_label: str = Field("case", description="what a case is called on the CLI, e.g. 'dataset'")
    settings: dict[str, Any] = Field(default_factory=dict, description="the paper profile")
    profiles: dict[str, dict[str, Any]] = Field(default_factory=dict)
    cases: dict[str, dict[str, Any]]
    case_kinds: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="parametric cases: KIND -> overrides in which '{arg}' stands for what follows 'KIND:'",
    )
    resources: Resources = Field(default_factory=Resources, description="per batch on Ray")


class SystemConfig:
    """A loaded system file: knows its plug-in, profiles and cases, resolves settings."""

    PAPER = "paper"

    def __init__(self, name: str, spec: SystemFile, source: str):
        self.name = name
        self.spec = spec
        self.source = source
        if spec.default_case not in spec.cases:
            raise ConfigError(
                f"{source}: default_case {spec.default_case!r} is not one of the cases: "
                f"{', '.join(spec.cases)}"
            )

    @property
    def profiles(self) -> list[str]:
        return [self.PAPER, *[p for p in self.spec.profiles if p != self.PAPER]]

    @property
    def cases(self) -> list[str]:
        return list(self.spec.cases)

    def plugin_class(self) -> type:
        """The plug-in class the file names, imported only from an allowed module.

        ``plugin: module:Class`` must name a module of :data:`TRUSTED_PACKAGE` or one the
        user trusted on the command line; nothing is imported before that check. The
        caller checks that the class is a ``System``.
        """
        match = PLUGIN.match(self.spec.plugin)
        if not match:
            raise ConfigError(f"{self.source}: plugin {self.spec.plugin!r} is not 'package.module:Class'")
        module_name, class_name = match["module"], match["attr"]
        if not _plugin_allowed(module_name):
            raise ConfigError(
                f"{self.source}: plugin module {module_name!r} is outside {TRUSTED_PACKAGE}; "
                f"to run your own system, trust its module: rdbench --trust-plugin {module_name} ..."
            )
        try:
            module = importlib.import_module(module_name)
            found = getattr(module, class_name)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"{self.source}: cannot load plugin {self.spec.plugin!r}: {exc}") from exc
        if not isinstance(found, type):
            raise ConfigError(f"{self.source}: plugin {self.spec.plugin!r} is not a class")
        return found

    def case_forms(self) -> list[str]:
        """The named cases, then one ``KIND:<key>`` per parametric kind (``csv:<data_path>``)."""
        return [*self.spec.cases, *(self._kind_form(kind) for kind in self.spec.case_kinds)]

    def _kind_form(self, kind: str) -> str:
        """``KIND:<key>``, naming the setting that receives the argument."""
        flat = _flatten(self.spec.case_kinds[kind])
        key = next((k for k, v in flat.items() if isinstance(v, str) and ARG in v), "arg")
        return f"{kind}:<{key}>"

    def case_overrides(self, case: str) -> dict[str, Any]:
        """The overrides a case applies: a named case's, or a parametric kind's with ``{arg}`` filled in."""
        if case in self.spec.cases:
            return dict(self.spec.cases[case])
        kind, sep, arg = case.partition(":")
        if sep and kind in self.spec.case_kinds:
            if not arg.strip():
                raise ConfigError(
                    f"{self.spec.case_label} {case!r} for system {self.name!r}: "
                    f"{kind}: needs an argument after the colon, as in {self._kind_form(kind)}"
                )
            return _substitute(self.spec.case_kinds[kind], arg)
        raise ConfigError(
            f"unknown {self.spec.case_label} {case!r} for system {self.name!r}; "
            f"allowed: {', '.join(self.case_forms())}"
        )

    def case_label(self, case: str) -> str:
        """A short, readable name for run names and tags: a parametric case keeps its kind and the
        last part of its argument (``imagefolder:/data/x/digits_png`` -> ``imagefolder:digits_png``);
        the whole argument is in the settings (a param of the run)."""
        kind, sep, arg = case.partition(":")
        if case in self.spec.cases or not sep or kind not in self.spec.case_kinds:
            return case
        return f"{kind}:{Path(arg.rstrip('/')).name or arg}"

    def resolve(
        self,
        case: str,
        profile: str = PAPER,
        overrides: Mapping[str, Any] | None = None,
        settings_model: type[BaseModel] | None = None,
    ) -> Any:
        """Settings of one case under one profile, with overrides, validated into the model."""
        case_data = self.case_overrides(case)
        if profile not in self.profiles:
            raise ConfigError(
                f"unknown profile {profile!r} for system {self.name!r}; allowed: {', '.join(self.profiles)}"
            )
        data = dict(self.spec.settings)
        data = apply_overrides(data, _flatten(self.spec.profiles.get(profile, {})))
        data = apply_overrides(data, _flatten(case_data))
        data = apply_overrides(data, dict(overrides or {}))
        model = settings_model or self.plugin_class().Settings
        where = f"{self.source} [{self.spec.case_label}={case}, profile={profile}]"
        return validate(model, data, where)


ARG = "{arg}"


def _substitute(template: Any, arg: str) -> Any:
    """``template`` with every ``{arg}`` in its strings replaced by ``arg`` (nested mappings and lists too)."""
    if isinstance(template, str):
        return template.replace(ARG, arg)
    if isinstance(template, Mapping):
        return {key: _substitute(value, arg) for key, value in template.items()}
    if isinstance(template, list):
        return [_substitute(value, arg) for value in template]
    return template


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` so nested overrides merge instead of replace."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(_flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out


def available_systems(directory: Path | None = None) -> list[str]:
    directory = directory or conf_dir() / "systems"
    return sorted(p.stem for p in directory.glob("*.yaml"))


def load_system(name: str, path: str | Path | None = None) -> SystemConfig:
    """Load ``conf/systems/<name>.yaml`` (or ``path``) into a SystemConfig."""
    check_system_name(name)
    if path is None:
        path = conf_dir() / "systems" / f"{name}.yaml"
        if not Path(path).exists():
            raise ConfigError(
                f"unknown system {name!r}; allowed: {', '.join(available_systems()) or '(none found)'}"
            )
    data = read_yaml(path)
    spec = validate(SystemFile, data, str(path))
    return SystemConfig(name, spec, str(path))


def config_hash(system: str, case: str, seed: int, settings: BaseModel) -> str:
    """A stable hash of everything that shapes a cell's result (used to skip finished cells)."""
    payload = json.dumps(
        {"system": system, "case": case, "seed": seed, "settings": settings.model_dump(mode="json")},
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def flatten_settings(settings: BaseModel) -> dict[str, Any]:
    """Settings as flat ``dotted.key -> value`` pairs, for MLflow params."""
    return _flatten(settings.model_dump(mode="json"))
