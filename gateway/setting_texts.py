"""What the operator reads about the settings: a value that cannot work names the setting and
what to write instead.
"""

from __future__ import annotations

from gateway.phrases import PROGRAM


def removed_setting(name: str, where: str) -> str:
    """A setting of an OpenSSH-mode set-up that no longer exists (set `where`)."""
    return (
        f"setting '{name}'{where} no longer exists: the OpenSSH mode has one set-up, the replica's "
        "authorized_keys_file with the shim as forced command; remove it (README, \"OpenSSH mode\")"
    )


def openssh_mode_needs_key_file() -> str:
    return ("the OpenSSH mode needs authorized_keys_file, the file of key lines the replica keeps and "
            "sshd greps; set it to a path sshd's AuthorizedKeysCommand reads")


# -- configuration (read by the operator) ---------------------------------------------------------
def not_host_port(value: str) -> str:
    return f"'{value}' is not HOST:PORT; write for example 127.0.0.1:2222"


def setting_not_boolean(name: str, raw: object) -> str:
    return f"setting {name} must be true or false, not '{raw}'"


def setting_not_integer(name: str, raw: object) -> str:
    return f"setting {name} must be a whole number, not '{raw}'"


def setting_not_number(name: str, raw: object) -> str:
    return f"setting {name} must be a number, not '{raw}'"


def setting_not_one_of(name: str, choices: tuple[str, ...], value: str) -> str:
    return f"{name} must be one of {', '.join(choices)}, not '{value}'"


def not_a_network(name: str, entry: str) -> str:
    return f"{name} entry '{entry}' is not a network like 10.0.0.0/8"


def config_file_missing(path: object) -> str:
    return f"configuration file {path} does not exist; give --config (or PYPISSH_CONFIG) the path of the TOML file"


def config_file_not_toml(path: object, problem: object) -> str:
    return f"configuration file {path} is not valid TOML: {problem}"


def unknown_setting(name: str, path: object = None, closest: str | None = None) -> str:
    if path and closest:
        return f"unknown setting '{name}' in {path}; did you mean '{closest}'?"
    if path:
        return f"unknown setting '{name}' in {path}; `{PROGRAM} check --show` lists every setting"
    if closest:
        return f"unknown setting '{name}'; did you mean '{closest}'?"
    return f"unknown setting '{name}'; `{PROGRAM} check --show` lists every setting"


def missing_extra(feature: str, module: str, extra: str) -> str:
    """For a command that needs an optional dependency the install left out."""
    return f"{feature} needs {module}: pip install 'pypissh-gateway[{extra}]'"


# -- settings: values that cannot work (each names the setting and what to write) -----------------
def setting_not_list(name: str, raw: object) -> str:
    return f"setting {name} must be a list of strings or one comma-separated string, not '{raw}'"


def setting_not_text(name: str) -> str:
    return f"setting {name} must be a single value, not a table or list"


def setting_not_finite(name: str, value: object) -> str:
    return f"setting {name} must be a finite number, not {value}"


def setting_too_small(name: str, value: object, bound: str) -> str:
    return f"setting {name} must be {bound}, not {value}"


def port_out_of_range(name: str, port: int) -> str:
    return f"setting {name} names port {port}; ports go from 1 to 65535"


def home_not_absolute(value: str) -> str:
    return (f"home must be an absolute path, not '{value}'; write for example "
            "PYPISSH_HOME=/var/lib/pypissh-gateway (a relative --home is taken from the current directory)")


def cannot_listen(setting: str, address: str, reason: object) -> str:
    return (f"cannot listen on {address} ({setting}): {reason}; stop what uses it (`ss -ltnp` shows which), "
            f"or set {setting} to a free address")


def health_listen_is_listen(address: str) -> str:
    return (f"health_listen is the same address as listen ({address}); give the health endpoints a port "
            "of their own, e.g. health_listen = \"127.0.0.1:9122\"")


def database_url_is_a_path(value: str) -> str:
    return (f"database_url must be a URL, not a path ('{value}'); for a SQLite file write "
            f"sqlite:///{value}, for PostgreSQL postgresql://USER@HOST/DATABASE")


def database_scheme_unknown(scheme: str, accepted: tuple[str, ...]) -> str:
    if scheme in ("postgres", "postgress", "pgsql"):
        return (f"database_url scheme '{scheme}://' is not one the registry can use (postgres:// is spelt "
                f"postgresql://); write sqlite:///PATH or postgresql://USER@HOST/DATABASE "
                f"(accepted: {', '.join(accepted)})")
    return (f"database_url scheme '{scheme}://' is not one the registry can use; write "
            f"sqlite:///PATH or postgresql://USER@HOST/DATABASE (accepted: {', '.join(accepted)})")


def smtp_url_invalid(url: str, schemes: tuple[str, ...]) -> str:
    return (f"smtp_url '{url}' is not a mail server URL; write smtp://HOST:25, smtp+starttls://HOST:587 "
            f"or smtps://HOST:465 (accepted schemes: {', '.join(schemes)})")


def upstream_url_invalid(url: str) -> str:
    return (f"upstream_url '{url}' is not an HTTPS URL; write the upload API's address, "
            "e.g. https://upload.pypi.org/legacy/")


def index_url_invalid(url: str) -> str:
    return (f"index_url '{url}' is not an HTTPS URL; write the index's simple API address, "
            "e.g. https://pypi.org/simple/")


def upstream_not_https(url: str) -> str:
    return (f"upstream_url {url} is plain http: API tokens and uploads would cross the network in "
            "cleartext; use the upload API's https:// address")


def config_file_is_a_directory(path: object) -> str:
    return (f"configuration file {path} is a directory; give --config (or PYPISSH_CONFIG) the TOML file "
            f"itself, e.g. {path}/config.toml")


def config_file_unreadable(path: object, reason: object) -> str:
    return (f"cannot read configuration file {path} ({reason}); make it readable by the user running "
            "this command (owner or group, never world-writable)")


def config_file_not_utf8(path: object) -> str:
    return f"configuration file {path} is not UTF-8 text, which TOML requires; save it as UTF-8"


def unknown_variable(variable: str, closest: str | None, setting: str | None) -> str:
    if closest:
        return f"warning: {variable} is not a setting and is ignored; did you mean {closest} (setting {setting})?"
    return f"warning: {variable} is not a setting and is ignored; `{PROGRAM} check --show` lists every setting"


def needs_openssh_mode(name: str) -> str:
    return f"{name} is used only in the OpenSSH mode; set openssh_mode = true, or remove {name}"


def not_absolute(name: str, value: str) -> str:
    return f"{name} must be an absolute path, not '{value}' (sshd runs it from the session user's home)"
