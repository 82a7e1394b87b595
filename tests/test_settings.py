"""The one Settings: typed values, a clear error naming a malformed variable (at the app's start too), `.env` read
before anything else, and the documents generated from it kept current."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from config import settings as config
from config.paths import PROJECT_DIR
from config.settings import OTHER_VARIABLES, VARIABLES, Settings, SettingsError

ROOT = PROJECT_DIR


def test_defaults_are_typed_and_empty_means_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DB_POOL_SIZE", "")
    monkeypatch.setenv("DB_WRITE_TIMEOUT", " 2.5 ")
    monkeypatch.setenv("MODEL_PATH", "models/other.pth")
    current = config.settings()
    assert current.db_pool_size == 4 and current.db_write_timeout == 2.5
    assert current.model_path == ROOT / "models" / "other.pth", "a relative path is the project's"
    assert current.operator_password is None and current.retention_days is None


def test_the_operator_password_may_come_from_a_file_and_only_one_copy_counts(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Compose mounts secrets/operator_password read-only into the app and Prometheus (OPERATOR_PASSWORD_FILE)."""
    secret = tmp_path / "operator_password"
    secret.write_text("a long operator password\n")
    monkeypatch.delenv("OPERATOR_PASSWORD", raising=False)
    monkeypatch.setenv("OPERATOR_PASSWORD_FILE", str(secret))
    assert config.settings().operator_password == "a long operator password", "the trailing newline is not in it"
    monkeypatch.setenv("OPERATOR_PASSWORD", "a long operator password")
    assert config.settings().operator_password == "a long operator password", "the same one twice is one"
    monkeypatch.setenv("OPERATOR_PASSWORD", "another long password")
    with pytest.raises(SettingsError, match="different passwords"):
        config.settings()
    empty = tmp_path / "empty"
    empty.write_text("")
    monkeypatch.setenv("OPERATOR_PASSWORD_FILE", str(empty))
    assert config.settings().operator_password == "another long password", "an empty file: the variable"
    monkeypatch.delenv("OPERATOR_PASSWORD")
    assert config.settings().operator_password is None, "neither: no operator view"
    monkeypatch.setenv("OPERATOR_PASSWORD_FILE", str(tmp_path))  # Docker makes a folder where a file was missing
    with pytest.raises(SettingsError, match="OPERATOR_PASSWORD_FILE names .* cannot be read"):
        config.settings()
    short = tmp_path / "short"
    short.write_text("short")
    monkeypatch.setenv("OPERATOR_PASSWORD_FILE", str(short))
    with pytest.raises(SettingsError, match="at least 12"):
        config.settings()


@pytest.mark.parametrize(
    "name, raw, words",
    [
        ("DB_POOL_SIZE", "abc", "DB_POOL_SIZE must be a whole number, not 'abc'"),
        ("DB_POOL_SIZE", "0", "DB_POOL_SIZE must be at least 1"),
        ("DB_WRITE_TIMEOUT", "fast", "DB_WRITE_TIMEOUT must be a number"),
        ("API_LIMIT_PER_MINUTE", "-5", "API_LIMIT_PER_MINUTE must be at least 0"),
        ("OPERATOR_PASSWORD", "short", "OPERATOR_PASSWORD is 5 characters long"),
    ],
)
def test_a_malformed_value_is_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, raw: str, words: str
) -> None:
    monkeypatch.setenv(name, raw)
    with pytest.raises(SettingsError, match=re.escape(words)):
        config.settings()


def test_env_file_is_read_and_the_environment_wins(tmp_path: Path) -> None:
    """In a fresh process: `.env`'s IMAGE_MEMORY_MB takes effect (the old DECODE_CONCURRENCY was read too early),
    and a name `.env` sets that nothing reads is an error, not silence."""
    env_file = tmp_path / ".env"
    env_file.write_text("IMAGE_MEMORY_MB=500\nDB_POOL_SIZE=7\n")
    code = (
        f"import pathlib; from config import settings as s; s.load_env(pathlib.Path({str(env_file)!r})); "
        "c = s.settings(); print(c.image_memory_mb, c.db_pool_size, s.unknown_in_env_file(s.ENV_FILE))"
    )
    env = {k: v for k, v in os.environ.items() if k not in VARIABLES}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**env, "DB_POOL_SIZE": "3"}, capture_output=True)
    assert out.stdout.decode().split() == ["500.0", "3", "[]"], out.stderr.decode()
    env_file.write_text("DB_POOLSIZE=7\n")
    assert config.unknown_in_env_file(env_file) == ["DB_POOLSIZE"]


def test_the_app_refuses_to_start_on_a_malformed_setting_with_its_name() -> None:
    """`streamlit run server.py` with DB_POOL_SIZE=abc: exits non-zero at once, saying which variable and why."""
    env = {**os.environ, "DB_POOL_SIZE": "abc", "STREAMLIT_SERVER_HEADLESS": "true"}
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            "server.py",
            "--server.port",
            "8599",
            "--server.address",
            "127.0.0.1",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode != 0
    assert "DB_POOL_SIZE must be a whole number, not 'abc'" in run.stderr
    assert "Traceback" not in run.stderr


def test_env_example_and_the_readme_table_are_generated_from_the_settings() -> None:
    assert (ROOT / ".env.example").read_text() == config.env_example(), "python -m config.settings --env-example"
    readme = (ROOT / "README.md").read_text()
    table = readme.split("<!-- settings:start -->\n")[1].split("\n<!-- settings:end -->")[0]
    assert table == config.readme_table()
    for name, spec in VARIABLES.items():
        assert spec.metadata["what"], f"{name} says what it is"


def test_compose_passes_only_known_variables_and_no_second_copy_of_a_default() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    text = (ROOT / "docker-compose.yml").read_text()
    used = set(re.findall(r"\$\{([A-Z][A-Z0-9_]+)", text))
    assert used <= set(VARIABLES) | set(OTHER_VARIABLES), used - set(VARIABLES) - set(OTHER_VARIABLES)
    for name, value in compose["services"]["app"]["environment"].items():
        assert name in VARIABLES, f"the app reads no {name}"
        default = re.fullmatch(r"\$\{(\w+):-(.*)\}", str(value))
        if default and default.group(1) == name and default.group(2):
            parsed = config.parse(name, default.group(2))
            assert parsed != VARIABLES[name].default, f"{name}: Compose repeats the settings' default"


def test_every_setting_has_a_field_and_the_settings_are_frozen() -> None:
    current = config.settings()
    assert isinstance(current, Settings) and len(VARIABLES) == len(set(VARIABLES))
    with pytest.raises(AttributeError):
        current.db_pool_size = 9  # type: ignore[misc]


def test_a_renamed_variable_is_refused_with_its_new_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DECODE_CONCURRENCY", "3")
    with pytest.raises(SettingsError, match="DECODE_CONCURRENCY is replaced by IMAGE_MEMORY_MB"):
        config.check()
