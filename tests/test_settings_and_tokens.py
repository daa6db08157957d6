"""Settings precedence and token sealing."""

from __future__ import annotations

import pytest

from gateway.errors import ConfigError
from gateway.settings import Settings, load
from gateway.tokens import TokenBox, check_token_shape, new_key


def test_defaults_work_with_no_configuration():
    """With no file, environment or flags, the embedded defaults apply."""
    settings = load(None, environ={})
    assert settings.database_url.startswith("sqlite:///var/")
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
    ("upload_threads = 0\n", "upload_threads must be positive"),
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
