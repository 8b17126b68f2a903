"""The agent's TOML configuration: one file, Corrosion's sections and key names where they exist,
every key with a default that works on one machine (docs/config.md lists them all).

    config = load_config(Path("corrosion.toml"))      # or None: ./corrosion.toml if present
    async with open_node(config.node_config()) as node:  # agent, HTTP API, admin socket
        ...
    async with Agent.open(config.agent_config()) as agent:  # the agent alone
        ...

Rules:

- **Strict.** An unknown key, a value of the wrong type (``"8787"`` where an integer is
  expected, ``1`` where a string is), a bad address or an out-of-range number is refused with a
  `ConfigError` whose message is one line naming the file, the key (dotted path) and what was
  expected. Nothing is converted silently.
- **Environment overrides.** ``CORROSION_<SECTION>_<KEY>`` (upper case, dashes and dots as
  underscores: ``CORROSION_GOSSIP_ADDR``, ``CORROSION_API_AUTHZ_BEARER_TOKEN``) replaces a key
  of the file. The value is read as a TOML value when it parses as one (``8080``,
  ``["a:1", "b:2"]``), else as a string; a key that holds a string always takes the text as
  it is. A variable that names a section but no key of it is refused (a typo must not be
  ignored); other ``CORROSION_*`` variables are not ours and are left alone.
- **Command-line overrides** (`Override`) come last.
- **Paths.** Relative paths of the file are relative to the file's directory; those of the
  environment and of the command line to the current directory. `load_config` returns
  absolute paths, with the derived defaults filled in (``db.subscriptions_path`` =
  ``<db.path>.subs.db``, ``admin.path`` = ``<db.path>.admin.sock``).

Structure: frozen attrs classes per section, structured by a cattrs converter with
``forbid_extra_keys`` and strict hooks (cattrs' default hooks would call ``int()`` and
``str()`` on anything); errors are collected per key from cattrs' exception groups, then
checks that need several keys (ranges, min <= max) run on the structured value.
"""

from __future__ import annotations

import difflib
import math
import os
import tomllib
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NewType, Union, get_args, get_origin

import attrs
import cattrs
from cattrs.errors import (
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
    IterableValidationNote,
)
from cattrs.gen import make_dict_structure_fn, override

from corrosion_py.errors import CorrosionError

if TYPE_CHECKING:  # the agent is imported only when an AgentConfig is built
    from corrosion_py.agent import AgentConfig
    from corrosion_py.runner import NodeConfig

__all__ = [
    "ENV_PREFIX",
    "AdminSection",
    "ApiSection",
    "AuthzSection",
    "Config",
    "ConfigError",
    "DbSection",
    "GossipSection",
    "LogSection",
    "Override",
    "PerfSection",
    "default_config_path",
    "env_names",
    "load_config",
]

ENV_PREFIX = "CORROSION_"
DEFAULT_FILE = "corrosion.toml"
MIN_PACKET, MAX_PACKET = 512, 1200
MAX_CLUSTER_ID = 0xFFFF

HostPort = NewType("HostPort", str)
"""``HOST:PORT`` (the host may be an IPv6 address, as in ``::1:8787``)."""
Preset = NewType("Preset", str)
LogFormat = NewType("LogFormat", str)
LogLevel = NewType("LogLevel", str)

PRESETS = ("local", "lan", "wan")
LOG_FORMATS = ("plaintext", "json")
LOG_LEVELS = ("debug", "info", "warning", "error")


class ConfigError(CorrosionError):
    """The configuration is refused. ``file`` is the file read (None when none was), ``key``
    the dotted key of the first problem (None for the file itself), and the message is one line
    naming both."""

    def __init__(self, message: str, *, file: Path | None = None, key: str | None = None):
        super().__init__(message)
        self.file = file
        self.key = key


# -- the sections --------------------------------------------------------------------------------


@attrs.frozen
class DbSection:
    path: Path = Path("corrosion.db")
    """The SQLite file of the node."""
    schema_paths: tuple[Path, ...] = ()
    """Schema files, or directories whose ``*.sql`` files are read."""
    subscriptions_path: Path | None = None
    """The subscriptions' SQLite file; `load_config` fills in ``<db.path>.subs.db``."""
    skip_integrity_check: bool = False
    """Start without ``PRAGMA quick_check`` of the database (a huge file on a slow disk)."""
    integrity_check_timeout: float = 60.0
    """The start-up integrity check's bound (seconds); a check that does not finish refuses."""


@attrs.frozen
class GossipSection:
    addr: HostPort = HostPort("127.0.0.1:8787")
    """UDP (SWIM, broadcasts) and TCP (sync) on the same port; port 0 picks a free one."""
    bootstrap: tuple[HostPort, ...] = ()
    cluster_id: int = 0
    preset: Preset = Preset("lan")
    """SWIM timing: ``local`` (one host, fast), ``lan``, ``wan``."""
    max_packet_size: int = MAX_PACKET
    keyring_file: Path | None = None
    """The gossip keys: one base64 key per line, the first seals (``corrosion keygen``)."""
    plaintext: bool = False
    """Run gossip unencrypted on purpose; without it and without keys only loopback runs."""


@attrs.frozen
class AuthzSection:
    bearer_token: str | None = attrs.field(default=None, metadata={"key": "bearer-token"})


@attrs.frozen
class ApiSection:
    addr: HostPort = HostPort("127.0.0.1:8080")
    authz: AuthzSection = AuthzSection()


@attrs.frozen
class AdminSection:
    path: Path | None = None
    """The admin Unix socket; `load_config` fills in ``<db.path>.admin.sock``."""


@attrs.frozen
class LogSection:
    format: LogFormat = LogFormat("plaintext")
    level: LogLevel = LogLevel("info")


@attrs.frozen
class PerfSection:
    min_sync_backoff: float = 1.0
    max_sync_backoff: float = 15.0
    apply_queue_len: int = 20_000
    sql_tx_timeout: float = 60.0
    """Seconds a local transaction may take, waiting for the writer included; 0: no bound."""


@attrs.frozen
class Config:
    """A whole configuration. From `load_config`, its paths are absolute and the derived
    defaults filled in; ``file`` is the file it was read from (None: defaults only)."""

    db: DbSection = DbSection()
    gossip: GossipSection = GossipSection()
    api: ApiSection = ApiSection()
    admin: AdminSection = AdminSection()
    log: LogSection = LogSection()
    perf: PerfSection = PerfSection()
    file: Path | None = attrs.field(default=None, kw_only=True)

    @property
    def subscriptions_path(self) -> Path:
        return self.db.subscriptions_path or _beside(self.db.path, ".subs.db")

    @property
    def admin_path(self) -> Path:
        return self.admin.path or _beside(self.db.path, ".admin.sock")

    def agent_config(self) -> AgentConfig:
        """The `AgentConfig` this configuration describes."""
        from corrosion_py.addr import parse_addr
        from corrosion_py.agent import AgentConfig
        from corrosion_py.swim.presets import LAN, LOCAL, WAN

        swim = {"local": LOCAL, "lan": LAN, "wan": WAN}[self.gossip.preset]
        return AgentConfig(
            db_path=self.db.path,
            schema_paths=self.db.schema_paths,
            subscriptions_path=self.subscriptions_path,
            gossip_addr=parse_addr(self.gossip.addr),
            bootstrap=[parse_addr(a) for a in self.gossip.bootstrap],
            cluster_id=self.gossip.cluster_id,
            swim=attrs.evolve(swim, max_packet_size=self.gossip.max_packet_size),
            sync_interval=(self.perf.min_sync_backoff, self.perf.max_sync_backoff),
            apply_queue_len=self.perf.apply_queue_len,
            keyring_file=self.gossip.keyring_file,
            plaintext=self.gossip.plaintext,
            sql_tx_timeout=self.perf.sql_tx_timeout or None,
            integrity_check_timeout=(
                None if self.db.skip_integrity_check else self.db.integrity_check_timeout
            ),
        )

    def node_config(self) -> NodeConfig:
        """The `NodeConfig` this configuration describes: the agent, its HTTP API and its
        admin socket."""
        from corrosion_py.addr import parse_addr
        from corrosion_py.runner import NodeConfig

        return NodeConfig(
            self.agent_config(),
            api_addr=parse_addr(self.api.addr),
            api_token=self.api.authz.bearer_token,
            admin_path=self.admin_path,
        )


@attrs.frozen
class Override:
    """A key set on the command line: ``Override("api.addr", "127.0.0.1:9000", "--api-addr")``
    (``source`` names the option in error messages)."""

    key: str
    value: Any
    source: str


def _beside(path: Path, suffix: str) -> Path:
    return path.with_name(path.name + suffix)


def default_config_path() -> Path:
    return Path(DEFAULT_FILE)


# -- keys ----------------------------------------------------------------------------------------


@attrs.frozen
class _Key:
    dotted: str
    type: Any
    env: str


def _toml_key(field: attrs.Attribute[Any]) -> str:
    return str(field.metadata.get("key", field.name))


def _fields(cls: type) -> list[attrs.Attribute[Any]]:
    return [f for f in attrs.fields(cls) if not (cls is Config and f.name == "file")]


def _keys(cls: type = Config, prefix: str = "") -> Iterator[_Key]:
    for field in _fields(cls):
        dotted = prefix + _toml_key(field)
        if field.type is not None and attrs.has(field.type):
            yield from _keys(field.type, dotted + ".")
        else:
            env = ENV_PREFIX + dotted.upper().replace("-", "_").replace(".", "_")
            yield _Key(dotted, field.type, env)


def _resolve_types() -> None:
    for cls in (DbSection, GossipSection, AuthzSection, ApiSection, AdminSection, LogSection,
                PerfSection, Config):  # fmt: skip
        attrs.resolve_types(cls, globals())


_resolve_types()
KEYS: dict[str, _Key] = {k.dotted: k for k in _keys()}
SECTIONS = tuple(_toml_key(f) for f in _fields(Config))


def env_names() -> dict[str, str]:
    """Every key's environment variable: ``{"gossip.addr": "CORROSION_GOSSIP_ADDR", ...}``."""
    return {k.dotted: k.env for k in KEYS.values()}


# -- strict structuring --------------------------------------------------------------------------


class _Invalid(ValueError):
    """A value refused by one of our hooks; its message is the whole explanation."""


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return "a date/time" if value is not None else "nothing"


def _show(value: Any) -> str:
    text = repr(value) if not isinstance(value, dict) else "{...}"
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({_kind(value)})"


def _expect(what: str, value: Any) -> _Invalid:
    return _Invalid(f"expected {what}, got {_show(value)}")


def _int(value: Any, _: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _expect("an integer", value)
    return value


def _bool(value: Any, _: Any) -> bool:
    if not isinstance(value, bool):
        raise _expect("true or false", value)
    return value


def _float(value: Any, _: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _expect("a number", value)
    return float(value)


def _str(value: Any, _: Any) -> str:
    if not isinstance(value, str):
        raise _expect("a string", value)
    return value


def _path(value: Any, _: Any) -> Path:
    if not isinstance(value, str):
        raise _expect("a path (a string)", value)
    if not value:
        raise _Invalid("expected a path, got an empty string")
    return Path(value)


def _host_port(value: Any, _: Any) -> HostPort:
    if not isinstance(value, str):
        raise _expect('an address "HOST:PORT" (a string)', value)
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise _Invalid(f'expected an address "HOST:PORT" (port 0..65535), got {value!r}')
    return HostPort(value)


def _one_of(choices: tuple[str, ...], cls: Callable[[str], Any]) -> Callable[[Any, Any], Any]:
    def hook(value: Any, _: Any) -> Any:
        if not isinstance(value, str) or value.lower() not in choices:
            names = ", ".join(f'"{c}"' for c in choices)
            raise _Invalid(f"expected one of {names}, got {_show(value)}")
        return cls(value.lower())

    return hook


def _is_tuple(t: Any) -> bool:
    args = get_args(t)
    return get_origin(t) is tuple and len(args) == 2 and args[1] is Ellipsis


def _describe(t: Any) -> str:
    return {
        int: "integers", float: "numbers", str: "strings", Path: "paths",
        HostPort: '"HOST:PORT" addresses',
    }.get(t, "values")  # fmt: skip


def _converter() -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=True)
    conv.register_structure_hook(int, _int)
    conv.register_structure_hook(bool, _bool)
    conv.register_structure_hook(float, _float)
    conv.register_structure_hook(str, _str)
    conv.register_structure_hook(Path, _path)
    conv.register_structure_hook(HostPort, _host_port)
    conv.register_structure_hook(Preset, _one_of(PRESETS, Preset))
    conv.register_structure_hook(LogFormat, _one_of(LOG_FORMATS, LogFormat))
    conv.register_structure_hook(LogLevel, _one_of(LOG_LEVELS, LogLevel))

    def tuple_hook(t: Any) -> Callable[[Any, Any], Any]:
        element = get_args(t)[0]

        def hook(value: Any, _: Any) -> tuple[Any, ...]:
            if not isinstance(value, list | tuple):
                raise _expect(f"an array of {_describe(element)}", value)
            out, errors = [], []
            for index, item in enumerate(value):
                try:
                    out.append(conv.structure(item, element))
                except Exception as exc:
                    exc.__notes__ = [
                        *getattr(exc, "__notes__", []),
                        IterableValidationNote(f"item {index}", index, element),
                    ]
                    errors.append(exc)
            if errors:
                raise IterableValidationError(f"while structuring {t}", errors, t)
            return tuple(out)

        return hook

    conv.register_structure_hook_factory(_is_tuple, tuple_hook)

    def section_hook(cls: type) -> Callable[[Any, Any], Any]:
        renames = {
            f.name: override(rename=_toml_key(f)) for f in attrs.fields(cls) if "key" in f.metadata
        }
        if cls is Config:
            renames["file"] = override(omit=True)
        structure: Callable[[Any, Any], Any] = make_dict_structure_fn(
            cls,
            conv,
            _cattrs_forbid_extra_keys=True,
            **renames,  # type: ignore[arg-type]
        )

        def hook(value: Any, _: Any) -> Any:
            if not isinstance(value, dict):
                raise _expect("a table", value)
            return structure(value, cls)

        return hook

    conv.register_structure_hook_factory(attrs.has, section_hook)
    return conv


_CONVERTER = _converter()

# -- errors --------------------------------------------------------------------------------------


def _problems(exc: BaseException, path: tuple[str, ...] = ()) -> Iterator[tuple[str, str]]:
    """(dotted key, problem) for every leaf of a cattrs exception group."""
    if isinstance(exc, ClassValidationError):
        with_notes, without = exc.group_exceptions()
        for sub, note in with_notes:
            field = next((f for f in attrs.fields(exc.cl) if f.name == note.name), None)
            name = _toml_key(field) if field is not None else str(note.name)
            yield from _problems(sub, (*path, name))
        for sub in without:
            yield from _problems(sub, path)
    elif isinstance(exc, IterableValidationError):
        indexed, rest = exc.group_exceptions()
        for sub, inote in indexed:
            yield from _problems(sub, (*path[:-1], f"{path[-1]}[{inote.index}]") if path else path)
        for sub in rest:
            yield from _problems(sub, path)
    elif isinstance(exc, ForbiddenExtraKeysError):
        known = [_toml_key(f) for f in _fields(exc.cl)]
        for extra in sorted(exc.extra_fields):
            close = difflib.get_close_matches(extra, known, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            where = ".".join((*path, extra))
            what = "section" if not path else "key"
            yield where, f"unknown {what} ({hint}known: {', '.join(known)})"
    elif isinstance(exc, _Invalid):
        yield ".".join(path), str(exc)
    else:
        yield ".".join(path), f"invalid value ({type(exc).__name__}: {exc})"


@attrs.frozen
class _Origins:
    """Where each key came from, to name it in messages and to resolve relative paths."""

    file: Path | None
    sources: dict[str, str]  # dotted key -> env var or option (keys not from the file)

    def source(self, key: str) -> str | None:
        return self.sources.get(key.split("[", 1)[0])

    def error(self, problems: Sequence[tuple[str, str]]) -> ConfigError:
        """One line: ``FILE: KEY: problem; KEY: problem`` (keys set by a variable or an option
        are named by it: ``environment variable CORROSION_X (sets x): problem``)."""
        shown = []
        for key, problem in problems[:4]:
            source = self.source(key)
            if source:
                shown.append(f"{source} (sets {key}): {problem}")
            else:
                shown.append(f"{key}: {problem}" if key else problem)
        more = f" (and {len(problems) - 4} more)" if len(problems) > 4 else ""
        from_file = self.file is not None and any(not self.source(k) for k, _ in problems)
        prefix = f"{self.file}: " if from_file else ""
        first = problems[0][0]
        return ConfigError(prefix + "; ".join(shown) + more, file=self.file, key=first or None)


# -- loading -------------------------------------------------------------------------------------


def _read(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist", file=path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}", file=path) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}", file=path) from None


_STRINGY = {str, Path, HostPort, Preset, LogFormat, LogLevel}


def _stringy(t: Any) -> bool:
    args = [a for a in get_args(t) if a is not type(None)]
    if get_origin(t) is Union or (args and type(None) in get_args(t)):
        return len(args) == 1 and args[0] in _STRINGY
    return t in _STRINGY


def _env_value(text: str, key: _Key) -> Any:
    """A TOML value when ``text`` parses as one, else the text; string keys take the text."""
    if _stringy(key.type):
        try:
            parsed = tomllib.loads(f"v = {text}")
        except tomllib.TOMLDecodeError:
            return text
        return parsed["v"] if isinstance(parsed.get("v"), str) and len(parsed) == 1 else text
    try:
        parsed = tomllib.loads(f"v = {text}")
    except tomllib.TOMLDecodeError:
        return text
    return parsed["v"] if len(parsed) == 1 else text


def _set(raw: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    table = raw
    for name in parents:
        inner = table.get(name)
        if not isinstance(inner, dict):
            inner = table[name] = {}
        table = inner
    table[last] = value


def _env_overrides(env: Mapping[str, str]) -> Iterator[tuple[str, _Key, str]]:
    by_env = {k.env: k for k in KEYS.values()}
    section_prefixes = tuple(f"{ENV_PREFIX}{s.upper()}_" for s in SECTIONS)
    for name in sorted(env):
        if not name.startswith(section_prefixes):
            continue
        key = by_env.get(name)
        if key is None:
            close = difflib.get_close_matches(name, list(by_env), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ConfigError(f"environment variable {name} names no configuration key{hint}")
        yield name, key, env[name]


def load_config(
    path: Path | str | None = None,
    env: Mapping[str, str] = os.environ,
    *,
    overrides: Sequence[Override] = (),
    cwd: Path | None = None,
) -> Config:
    """Read the configuration: ``path`` (which must exist), or ``./corrosion.toml`` when
    ``path`` is None and that file exists, else the defaults; then the ``CORROSION_*``
    variables of ``env``, then ``overrides``. Raises `ConfigError`."""
    here = (cwd or Path.cwd()).absolute()
    file: Path | None = None
    if path is not None:
        file = (here / Path(path)).absolute()
    elif (here / DEFAULT_FILE).is_file():
        file = here / DEFAULT_FILE
    raw = _read(file) if file is not None else {}

    sources: dict[str, str] = {}
    for name, key, text in _env_overrides(env):
        _set(raw, key.dotted, _env_value(text, key))
        sources[key.dotted] = f"environment variable {name}"
    for item in overrides:
        if item.key not in KEYS:
            raise ValueError(f"unknown configuration key {item.key!r}")
        _set(raw, item.key, item.value)
        sources[item.key] = item.source
    origins = _Origins(file, sources)

    try:
        config = _CONVERTER.structure(raw, Config)
    except Exception as exc:
        problems = list(_problems(exc))
        raise origins.error(problems or [("", str(exc))]) from None
    problems = list(_check(config))
    if problems:
        raise origins.error(problems)
    return _resolved(attrs.evolve(config, file=file), origins, here)


def _check(config: Config) -> Iterator[tuple[str, str]]:
    """Rules between or beyond types."""
    gossip, perf = config.gossip, config.perf
    if not config.db.integrity_check_timeout > 0:
        yield (
            "db.integrity_check_timeout",
            f"must be > 0, got {config.db.integrity_check_timeout} (to skip the check: "
            "db.skip_integrity_check = true)",
        )
    if not 0 <= gossip.cluster_id <= MAX_CLUSTER_ID:
        yield "gossip.cluster_id", f"must be in 0..{MAX_CLUSTER_ID}, got {gossip.cluster_id}"
    if not MIN_PACKET <= gossip.max_packet_size <= MAX_PACKET:
        yield (
            "gossip.max_packet_size",
            f"must be in {MIN_PACKET}..{MAX_PACKET} (the UDP endpoint's limit), "
            f"got {gossip.max_packet_size}",
        )
    if gossip.plaintext and gossip.keyring_file is not None:
        yield "gossip.plaintext", "cannot be true while gossip.keyring_file is set (pick one)"
    if not gossip.plaintext and gossip.keyring_file is None and not _loopback(gossip.addr):
        yield (
            "gossip.keyring_file",
            f"required: gossip.addr {gossip.addr} is not a loopback address, and gossip is "
            "encrypted with these keys (create a file with `corrosion keygen --out FILE`; or "
            "set gossip.plaintext = true to run unencrypted)",
        )
    for i, addr in enumerate(gossip.bootstrap):
        if addr.endswith(":0"):
            yield f"gossip.bootstrap[{i}]", f"port 0 cannot be joined: {addr!r}"
    if not perf.min_sync_backoff > 0:
        yield "perf.min_sync_backoff", f"must be > 0, got {perf.min_sync_backoff}"
    if perf.max_sync_backoff < perf.min_sync_backoff:
        yield (
            "perf.max_sync_backoff",
            f"must be >= perf.min_sync_backoff ({perf.min_sync_backoff}), "
            f"got {perf.max_sync_backoff}",
        )
    if perf.apply_queue_len < 1:
        yield "perf.apply_queue_len", f"must be at least 1, got {perf.apply_queue_len}"
    if not 0 <= perf.sql_tx_timeout < math.inf:
        yield "perf.sql_tx_timeout", f"must be a number of seconds >= 0, got {perf.sql_tx_timeout}"
    token = config.api.authz.bearer_token
    if token is not None and not token:
        yield "api.authz.bearer-token", "must not be empty (leave it out for no token)"


def _loopback(addr: str) -> bool:
    from corrosion_py.addr import is_loopback

    return is_loopback(addr.rpartition(":")[0])


def _resolved(config: Config, origins: _Origins, cwd: Path) -> Config:
    file_dir = config.file.parent if config.file is not None else cwd

    def base(key: str) -> Path:
        return cwd if key in origins.sources else file_dir

    def absolute(key: str, path: Path) -> Path:
        return path if path.is_absolute() else base(key) / path

    def optional(key: str, path: Path | None) -> Path | None:
        return None if path is None else absolute(key, path)

    db_path = absolute("db.path", config.db.path)
    db = attrs.evolve(
        config.db,
        path=db_path,
        schema_paths=tuple(absolute("db.schema_paths", p) for p in config.db.schema_paths),
        subscriptions_path=optional("db.subscriptions_path", config.db.subscriptions_path)
        or _beside(db_path, ".subs.db"),
    )
    admin = AdminSection(
        path=optional("admin.path", config.admin.path) or _beside(db_path, ".admin.sock")
    )
    gossip = attrs.evolve(
        config.gossip, keyring_file=optional("gossip.keyring_file", config.gossip.keyring_file)
    )
    return attrs.evolve(config, db=db, gossip=gossip, admin=admin)
