"""Settings precedence and token sealing."""

from __future__ import annotations

import pytest

from gateway.errors import ConfigError
from gateway.settings import Settings, load, load_all, mask_url
from gateway.tokens import TokenBox, check_token_shape, new_key


def test_defaults_work_with_no_configuration():
    """With no file, environment or flags, the embedded defaults apply, their files in the
    per-user data directory."""
    settings = load(None, environ={"HOME": "/home/op"})
    home = "/home/op/.local/share/pypissh-gateway"
    assert settings.home == home
    assert settings.database_url == f"sqlite:///{home}/pypissh.sqlite3"
    assert (settings.host_key_dir, settings.secret_key_file) == (f"{home}/keys", f"{home}/secret.key")
    assert (settings.listen, settings.ssh_user) == ("127.0.0.1:2222", "submit")
    assert settings.upstream_url == "https://upload.pypi.org/legacy/"


def test_precedence_flag_over_environment_over_file(tmp_path):
    """flag > PYPISSH_* environment > TOML file > default."""
    config = tmp_path / "c.toml"
    config.write_text('listen = "0.0.0.0:22"\nssh_user = "upload"\nmax_upload_bytes = 1000\n')
    settings = load(config, environ={"PYPISSH_SSH_USER": "env-user", "PYPISSH_MAX_UPLOAD_BYTES": "2000"},
                    overrides={"max_upload_bytes": "3000"})
    assert settings.listen == "0.0.0.0:22"
    assert settings.ssh_user == "env-user"
    assert settings.max_upload_bytes == 3000


def test_config_path_from_environment(tmp_path):
    """PYPISSH_CONFIG names the file when --config is not given."""
    config = tmp_path / "c.toml"
    config.write_text('[pypissh]\nlisten = "127.0.0.1:2022"\n')
    assert load(None, environ={"PYPISSH_CONFIG": str(config)}).listen == "127.0.0.1:2022"


@pytest.mark.parametrize("content, message", [
    ("nonsense = 1\n", "unknown setting 'nonsense'"),
    ('listen = "nowhere"\n', "not HOST:PORT"),
    ('proxy_protocol = "maybe"\n', "proxy_protocol must be one of"),
    ("max_upload_bytes = 'lots'\n", "whole number"),
    ("listen = \n", "not valid TOML"),
    ("upload_threads = 0\n", "upload_threads must be at least 1"),
    ("idle_timeout = -1\n", "idle_timeout must be 0 or more"),
    ("max_connections_per_account = -5\n", "max_connections_per_account must be 0 or more"),
])
def test_bad_configuration_says_what_to_fix(tmp_path, content, message):
    """A bad file gives one clear sentence naming the setting."""
    config = tmp_path / "c.toml"
    config.write_text(content)
    with pytest.raises(ConfigError, match=message):
        load(config, environ={})


def test_tokens_are_sealed_and_opened():
    """A sealed token does not contain the token and opens to it."""
    box = TokenBox.from_settings(Settings(secret_key=new_key()))
    sealed = box.seal("pypi-AgEIcHlwaS5vcmcsecret")
    assert "pypi-" not in sealed and "secret" not in sealed
    assert box.open(sealed) == "pypi-AgEIcHlwaS5vcmcsecret"


def test_old_key_still_opens_after_a_new_key_is_put_first():
    """With 'new,old' configured, tokens sealed under the old key still open, and reseal to the new."""
    old, new = new_key(), new_key()
    sealed = TokenBox.from_settings(Settings(secret_key=old)).seal("pypi-AgEItoken-123456")
    both = TokenBox.from_settings(Settings(secret_key=f"{new},{old}"))
    resealed = both.reseal(sealed)
    assert TokenBox.from_settings(Settings(secret_key=new)).open(resealed) == "pypi-AgEItoken-123456"


def test_wrong_key_gives_a_clear_error():
    """A token sealed under another key is reported, not crashed on."""
    sealed = TokenBox.from_settings(Settings(secret_key=new_key())).seal("pypi-AgEItoken-123456")
    with pytest.raises(ConfigError, match="cannot be decrypted"):
        TokenBox.from_settings(Settings(secret_key=new_key())).open(sealed)


@pytest.mark.parametrize("text", ["hunter2", "pypi-", "pypi-has space inside"])
def test_non_tokens_are_refused(text):
    """Only strings shaped like API tokens are stored."""
    with pytest.raises(ConfigError, match="not an API token"):
        check_token_shape(text)


# -- one home: where relative paths resolve --------------------------------------------------------
def test_relative_paths_in_a_config_file_resolve_against_its_folder(tmp_path):
    """Every path written relative in the file, a SQLite database_url too, lands beside the file."""
    folder = tmp_path / "etc"
    folder.mkdir()
    config = folder / "config.toml"
    config.write_text('database_url = "sqlite:///state/registry.sqlite3"\nhost_key_dir = "hostkeys"\n'
                      'secret_key_file = "../secret.key"\nupstream_ca_bundle = "ca.pem"\nspool_dir = "spool"\n')
    settings = load(config, environ={"HOME": "/home/op"})
    assert settings.database_url == f"sqlite:///{folder}/state/registry.sqlite3"
    assert settings.host_key_dir == str(folder / "hostkeys")
    assert settings.secret_key_file == str(tmp_path / "secret.key")
    assert (settings.upstream_ca_bundle, settings.spool_dir) == (str(folder / "ca.pem"), str(folder / "spool"))


def test_relative_paths_from_environment_and_flags_resolve_against_home(tmp_path):
    """PYPISSH_* variables and --set values that are relative land in home, never in the
    current directory; absolute ones are kept."""
    settings = load(None, environ={"PYPISSH_HOME": "/srv/gw", "PYPISSH_HOST_KEY_DIR": "hk",
                                   "PYPISSH_DATABASE_URL": "sqlite:///db/r.sqlite3?timeout=5"},
                    overrides={"secret_key_file": "k/secret.key", "spool_dir": "/var/spool/gw"})
    assert settings.home == "/srv/gw"
    assert settings.host_key_dir == "/srv/gw/hk"
    assert settings.database_url == "sqlite:////srv/gw/db/r.sqlite3?timeout=5"
    assert (settings.secret_key_file, settings.spool_dir) == ("/srv/gw/k/secret.key", "/var/spool/gw")


def test_home_defaults_to_the_xdg_data_directory():
    """Without PYPISSH_HOME, home is $XDG_DATA_HOME/pypissh-gateway (else ~/.local/share/...)."""
    assert load(None, environ={"XDG_DATA_HOME": "/data", "HOME": "/home/op"}).home == "/data/pypissh-gateway"
    assert load(None, environ={"HOME": "/home/op"}).home == "/home/op/.local/share/pypissh-gateway"


def test_home_in_the_file_may_be_relative_elsewhere_it_must_be_absolute(tmp_path):
    """`home = "state"` in a file means the folder beside it; PYPISSH_HOME=state is refused with the fix."""
    config = tmp_path / "c.toml"
    config.write_text('home = "state"\n')
    settings = load(config, environ={})
    assert settings.home == str(tmp_path / "state")
    assert settings.database_url == f"sqlite:///{tmp_path}/state/pypissh.sqlite3"
    with pytest.raises(ConfigError, match=r"home must be an absolute path, not 'state'.*\(set by PYPISSH_HOME\)"):
        load(None, environ={"PYPISSH_HOME": "state"})


def test_sources_say_where_each_value_came_from(tmp_path):
    """default, file PATH, env NAME and flag: what `check --show` prints."""
    config = tmp_path / "c.toml"
    config.write_text('listen = "0.0.0.0:22"\nssh_user = "upload"\n')
    loaded = load_all(config, environ={"PYPISSH_SSH_USER": "env-user", "PYPISSH_HOME": "/srv/gw"},
                      overrides={"workers": "3"})
    sources = {name: str(loaded.sources[name]) for name in ("listen", "ssh_user", "workers", "home", "drain_seconds")}
    assert sources == {"listen": f"file {config}", "ssh_user": "env PYPISSH_SSH_USER", "workers": "flag",
                       "home": "env PYPISSH_HOME", "drain_seconds": "default"}


# -- misspelt variables --------------------------------------------------------------------------
def test_misspelt_variable_is_named_with_the_closest_setting():
    """PYPISSH_DATABSE_URL is ignored with one warning that names PYPISSH_DATABASE_URL."""
    loaded = load_all(None, environ={"HOME": "/h", "PYPISSH_DATABSE_URL": "sqlite:////x"})
    assert loaded.warnings == ("warning: PYPISSH_DATABSE_URL is not a setting and is ignored; did you mean "
                               "PYPISSH_DATABASE_URL (setting database_url)?",)
    assert loaded.settings.database_url == "sqlite:////h/.local/share/pypissh-gateway/pypissh.sqlite3"


def test_variables_of_the_legacy_client_and_the_dev_script_are_not_warned_about():
    """PYPISSH_SSH, PYPISSH_HOST, PYPISSH_USER (the pypissh client's), PYPISSH_VENV (./dev's) and
    PYPISSH_CONFIG are known; a name like no setting gets the hint to list them."""
    environ = {"HOME": "/h", "PYPISSH_SSH": "ssh -p 2", "PYPISSH_HOST": "h", "PYPISSH_USER": "u",
               "PYPISSH_VENV": ".venv", "PYPISSH_XYZZY": "1"}
    assert load_all(None, environ=environ).warnings == (
        "warning: PYPISSH_XYZZY is not a setting and is ignored; `pypissh-gateway check --show` lists every setting",)


def test_misspelt_setting_in_the_file_suggests_the_right_name(tmp_path):
    """An unknown name in the file stops with the closest setting's name."""
    config = tmp_path / "c.toml"
    config.write_text('max_uplod_bytes = 10\n')
    with pytest.raises(ConfigError, match="unknown setting 'max_uplod_bytes' in .*; did you mean 'max_upload_bytes'"):
        load(config, environ={})


# -- impossible values ----------------------------------------------------------------------------
@pytest.mark.parametrize("name, value, message", [
    ("workers", "0", "setting workers must be at least 1, not 0"),
    ("max_upload_bytes", "-1", "setting max_upload_bytes must be at least 1, not -1"),
    ("max_startups", "-5", "setting max_startups must be 0 or more, not -5"),
    ("key_cache_seconds", "-0.5", "setting key_cache_seconds must be 0 or more, not -0.5"),
    ("read_timeout", "0", "setting read_timeout must be above 0, not 0.0"),
    ("upstream_timeout", "nan", "setting upstream_timeout must be a finite number, not nan"),
    ("drain_seconds", "inf", "setting drain_seconds must be a finite number, not inf"),
    ("public_port", "70000", "setting public_port names port 70000; ports go from 1 to 65535"),
    ("listen", "127.0.0.1:99999", "setting listen names port 99999"),
    ("log_level", "LOUD", "log_level must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, not 'LOUD'"),
    ("smtp_url", "gopher://x", "smtp_url 'gopher://x' is not a mail server URL"),
    ("upstream_url", "ftp://x/", "upstream_url 'ftp://x/' is not an HTTPS URL"),
    ("database_url", "postgress://x/y", "database_url scheme 'postgress://' is not one the registry can use"),
    ("database_url", "/tmp/x.sqlite3", "database_url must be a URL, not a path ('/tmp/x.sqlite3'); for a SQLite "
                                       "file write sqlite:////tmp/x.sqlite3"),
    ("health_listen", "127.0.0.1:2222", "health_listen is the same address as listen (127.0.0.1:2222)"),
])
def test_impossible_values_are_refused_naming_the_setting_and_where_it_was_set(name, value, message):
    """Every numeric setting is checked, and schemes, addresses and levels; the message names the
    variable that set it."""
    with pytest.raises(ConfigError) as refused:
        load(None, environ={"HOME": "/h", f"PYPISSH_{name.upper()}": value})
    assert message in str(refused.value) and f"(set by PYPISSH_{name.upper()})" in str(refused.value)


def test_every_problem_is_listed_when_not_strict():
    """check needs them all at once: one entry per problem, in the settings' order."""
    loaded = load_all(None, environ={"HOME": "/h", "PYPISSH_WORKERS": "0", "PYPISSH_MAX_UPLOAD_BYTES": "-1",
                                     "PYPISSH_SMTP_URL": "gopher://x"}, strict=False)
    assert [p.split(" must")[0].split(" '")[0] for p in loaded.problems] == [
        "setting max_upload_bytes", "setting workers", "smtp_url"]


def test_two_ports_zero_are_not_the_same_address():
    """listen and health_listen both on port 0 each get a free port: no collision."""
    assert load(None, environ={"HOME": "/h"}, overrides={"listen": "127.0.0.1:0", "health_listen": "127.0.0.1:0"})


@pytest.mark.parametrize("url, shown", [
    ("postgresql://gw:s3cret@db:5432/pypissh", "postgresql://gw:***@db:5432/pypissh"),
    ("postgresql://gw@/pypissh?host=db1&password=s3cret", "postgresql://gw@/pypissh?host=db1&password=***"),
    ("smtp+starttls://mailer:p%40ss@mail:587", "smtp+starttls://mailer:***@mail:587"),
    ("sqlite:////var/lib/pypissh-gateway/pypissh.sqlite3", "sqlite:////var/lib/pypissh-gateway/pypissh.sqlite3"),
])
def test_passwords_in_urls_are_masked(url, shown):
    """A URL shown to a person never carries its password."""
    assert mask_url(url) == shown
