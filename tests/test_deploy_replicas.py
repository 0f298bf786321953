"""deploy/kubernetes/scale-out/replicas-redis.yaml: three replicas and their Redis.

The manifests are read as Kubernetes would wire them: env vars expanded the way the
kubelet expands ``$(NAME)``, Services matched to pods by their selectors, and the
ConfigMap's config loaded by the proxy's own loader.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from cryptography.fernet import Fernet

from proxy.config import Settings, settings_from_mapping

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "deploy" / "kubernetes" / "scale-out" / "replicas-redis.yaml"
PROXY, REDIS = "zoom-proxy", "zoom-proxy-redis"
SECRETS = {
    "ZOOM_CLIENT_ID": "client-id",
    "ZOOM_CLIENT_SECRET": "client-secret",
    "PROXY_SESSION_KEY": Fernet.generate_key().decode(),
    "REDIS_PASSWORD": "0123abcd" * 8,
}


def documents() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(MANIFEST.read_text(encoding="utf-8")) if d]


def find(kind: str, name: str) -> dict[str, Any]:
    (found,) = [d for d in documents() if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


def container(deployment: str) -> dict[str, Any]:
    (only,) = find("Deployment", deployment)["spec"]["template"]["spec"]["containers"]
    result: dict[str, Any] = only
    return result


def expanded_env(secrets: dict[str, str]) -> dict[str, str]:
    """The proxy container's environment, with secrets filled in and ``$(NAME)`` expanded."""
    env: dict[str, str] = {}
    for entry in container(PROXY)["env"]:
        if "valueFrom" in entry:
            env[entry["name"]] = secrets[entry["valueFrom"]["secretKeyRef"]["key"]]
        else:
            env[entry["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], entry["value"])
    return env


def settings() -> Settings:
    config = yaml.safe_load(find("ConfigMap", "zoom-proxy-replicas-config")["data"]["config.yaml"])
    return settings_from_mapping(config, expanded_env(SECRETS))


def test_every_document_is_a_named_kubernetes_object() -> None:
    for document in documents():
        assert {"apiVersion", "kind", "metadata"} <= document.keys()
        assert document["metadata"]["name"]


def test_three_proxy_replicas_and_one_redis() -> None:
    assert find("Deployment", PROXY)["spec"]["replicas"] == 3
    assert find("Deployment", REDIS)["spec"]["replicas"] == 1


def test_the_config_is_valid_and_uses_redis_with_cookie_sessions() -> None:
    loaded = settings()
    assert loaded.redis.url is not None
    assert loaded.session.store == "cookie"
    assert loaded.redis.on_unavailable == "fail"
    assert loaded.public_url.startswith("https://")
    assert loaded.session.cookie_secure is True


def test_the_proxy_reads_the_config_from_the_configmap() -> None:
    env = {e["name"]: e.get("value") for e in container(PROXY)["env"]}
    (mount,) = container(PROXY)["volumeMounts"]
    (volume,) = find("Deployment", PROXY)["spec"]["template"]["spec"]["volumes"]
    assert volume["name"] == mount["name"]
    assert volume["configMap"]["name"] == "zoom-proxy-replicas-config"
    assert env["ZOOM_PROXY_CONFIG"] == f"{mount['mountPath']}/config.yaml"


def test_the_redis_url_reaches_the_redis_service_with_its_password() -> None:
    loaded = settings()
    assert loaded.redis.url is not None
    url = urlsplit(loaded.redis.url.value)
    assert (url.scheme, url.hostname, url.password) == ("redis", REDIS, SECRETS["REDIS_PASSWORD"])
    service = find("Service", REDIS)
    (port,) = service["spec"]["ports"]
    assert url.port == port["port"]
    assert port["targetPort"] in {p["name"] for p in container(REDIS)["ports"]}
    labels = find("Deployment", REDIS)["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()


def test_redis_requires_the_password_the_proxy_sends() -> None:
    redis = container(REDIS)
    args = redis["args"]
    assert args[args.index("--requirepass") + 1] == "$(REDIS_PASSWORD)"
    (password,) = redis["env"]
    proxy_ref = next(e for e in container(PROXY)["env"] if e["name"] == "REDIS_PASSWORD")
    assert password["valueFrom"] == proxy_ref["valueFrom"]


def test_the_password_is_defined_before_the_url_that_expands_it() -> None:
    names = [e["name"] for e in container(PROXY)["env"]]
    assert names.index("REDIS_PASSWORD") < names.index("REDIS_URL")


def test_only_the_proxy_pods_may_reach_redis() -> None:
    (rule,) = find("NetworkPolicy", REDIS)["spec"]["ingress"]
    (source,) = rule["from"]
    proxy_labels = find("Deployment", PROXY)["spec"]["template"]["metadata"]["labels"]
    assert source["podSelector"]["matchLabels"].items() <= proxy_labels.items()
    assert [p["port"] for p in rule["ports"]] == [6379]


def test_the_ingress_spreads_requests_without_affinity() -> None:
    ingress = find("Ingress", PROXY)
    assert not any("affinity" in key for key in ingress["metadata"].get("annotations", {}))
    paths = {p["path"] for p in ingress["spec"]["rules"][0]["http"]["paths"]}
    assert paths == {"/api", "/auth"}
    backends = {
        p["backend"]["service"]["name"] for p in ingress["spec"]["rules"][0]["http"]["paths"]
    }
    assert backends == {PROXY}


def test_every_container_has_requests_limits_and_runs_read_only_as_non_root() -> None:
    for deployment in (PROXY, REDIS):
        spec = find("Deployment", deployment)["spec"]["template"]["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        for each in spec["containers"]:
            assert {"cpu", "memory"} <= each["resources"]["requests"].keys()
            assert "memory" in each["resources"]["limits"]
            assert each["securityContext"]["readOnlyRootFilesystem"] is True
            assert each["securityContext"]["allowPrivilegeEscalation"] is False
