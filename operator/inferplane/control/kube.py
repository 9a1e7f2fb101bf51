# SPDX-License-Identifier: Apache-2.0
"""The only place that talks to the Kubernetes API: get, list, server-side apply, delete, patch.

A small async client over aiohttp (kopf's own HTTP stack), configured from the pod's service
account inside a cluster or from ``KUBECONFIG`` outside. Every failure becomes a ``KubeError``
carrying the HTTP status and the API server's message; client-library errors never leak out.
Objects are plain dicts.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from inferplane import errors
from inferplane.control import naming

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")

PLURALS = {
    "Job": "jobs",
    "Pod": "pods",
    "Deployment": "deployments",
    "Service": "services",
    "HorizontalPodAutoscaler": "horizontalpodautoscalers",
    "PodDisruptionBudget": "poddisruptionbudgets",
    "Event": "events",
    "Node": "nodes",
    "InferenceModel": "inferencemodels",
    "ScaledObject": "scaledobjects",
    "ResourceSlice": "resourceslices",
    "ResourceClaim": "resourceclaims",
    "ResourceClaimTemplate": "resourceclaimtemplates",
}


@dataclass(frozen=True)
class Config:
    server: str
    ssl: ssl.SSLContext | bool
    token: str | None = None


def _data_file(data: str, suffix: str) -> str:
    """Write base64 kubeconfig data to a private file (ssl loads certificates from files)."""
    with tempfile.NamedTemporaryFile(prefix="inferplane-", suffix=suffix, delete=False) as handle:
        handle.write(base64.b64decode(data))
    return handle.name


def load_config(kubeconfig: str | None = None) -> Config:
    """The in-cluster config, or the current context of ``kubeconfig`` / ``$KUBECONFIG``."""
    path = kubeconfig or os.environ.get("KUBECONFIG")
    host = os.environ.get("KUBERNETES_SERVICE_HOST")
    if not path and host and (SERVICE_ACCOUNT / "token").is_file():
        in_cluster = ssl.create_default_context(cafile=str(SERVICE_ACCOUNT / "ca.crt"))
        port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        token = (SERVICE_ACCOUNT / "token").read_text().strip()
        return Config(f"https://{host}:{port}", in_cluster, token)
    path = path or str(Path.home() / ".kube" / "config")
    try:
        config = yaml.safe_load(Path(path.split(os.pathsep)[0]).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise errors.KubeError(f"cannot read kubeconfig {path}: {exc}") from None
    try:
        contexts = {c["name"]: c["context"] for c in config["contexts"]}
        context_entry = contexts[config["current-context"]]
        cluster = {c["name"]: c["cluster"] for c in config["clusters"]}[context_entry["cluster"]]
        user = {u["name"]: u["user"] for u in config["users"]}[context_entry["user"]]
    except (KeyError, TypeError) as exc:
        raise errors.KubeError(f"kubeconfig {path}: incomplete ({exc})") from None
    base = Path(path).parent
    if cluster.get("insecure-skip-tls-verify"):
        context: ssl.SSLContext | bool = False
    else:
        ca = cluster.get("certificate-authority")
        if cluster.get("certificate-authority-data"):
            ca = _data_file(cluster["certificate-authority-data"], ".crt")
        context = ssl.create_default_context(cafile=str(base / ca) if ca else None)
        cert, key = user.get("client-certificate"), user.get("client-key")
        if user.get("client-certificate-data"):
            cert = _data_file(user["client-certificate-data"], ".crt")
            key = _data_file(user["client-key-data"], ".key")
        if cert and key:
            context.load_cert_chain(str(base / cert), str(base / key))
    return Config(cluster["server"].rstrip("/"), context, user.get("token"))


def path_of(
    api_version: str, kind: str, *, namespace: str | None = None, name: str | None = None
) -> str:
    """The REST path of a kind (and object)."""
    prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    parts = [prefix]
    if namespace:
        parts.append(f"namespaces/{namespace}")
    parts.append(PLURALS[kind])
    if name:
        parts.append(name)
    return "/".join(parts)


class Kube:
    """An API-server connection. Use as ``async with Kube(config) as kube``."""

    def __init__(self, config: Config, *, connections: int = 32) -> None:
        self.config = config
        self.connections = connections
        """Most requests in flight at once (aiohttp's connection pool)."""
        self.writes = 0
        """API writes made (apply, patch, delete, create): the scale benchmark reports it."""
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Kube:
        headers = {"Authorization": f"Bearer {self.config.token}"} if self.config.token else {}
        connector = aiohttp.TCPConnector(ssl=self.config.ssl, limit=self.connections)
        self._session = aiohttp.ClientSession(
            base_url=self.config.server,
            headers=headers,
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=30),
        )
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._session is not None:
            await self._session.close()

    async def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        missing_ok: bool = False,
        raw: bool = False,
    ) -> Any:
        assert self._session is not None, "use Kube as an async context manager"
        data = json.dumps(body) if body is not None else None
        if method != "GET":
            self.writes += 1
        try:
            async with self._session.request(
                method, path, params=params, data=data, headers={"Content-Type": content_type}
            ) as response:
                text = await response.text()
                if response.status == 404 and missing_ok:
                    return None
                if response.status >= 400:
                    try:
                        message = json.loads(text).get("message", text)
                    except ValueError:
                        message = text[:500]
                    raise errors.KubeError(
                        f"{method} {path}: {response.status} {message}", status=response.status
                    )
                if raw:
                    return text
                return json.loads(text) if text else None
        except aiohttp.ClientError as exc:
            raise errors.KubeError(f"{method} {path}: {exc}") from exc
        except TimeoutError as exc:
            raise errors.KubeError(f"{method} {path}: timed out") from exc

    async def get(
        self, api_version: str, kind: str, name: str, *, namespace: str | None = None
    ) -> dict[str, Any] | None:
        """One object, or None when it does not exist."""
        path = path_of(api_version, kind, namespace=namespace, name=name)
        result: dict[str, Any] | None = await self._call("GET", path, missing_ok=True)
        return result

    async def list(
        self,
        api_version: str,
        kind: str,
        *,
        namespace: str | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> list[dict[str, Any]]:
        params = {"labelSelector": naming.selector_string(labels)} if labels else None
        path = path_of(api_version, kind, namespace=namespace)
        result = await self._call("GET", path, params=params)
        items: list[dict[str, Any]] = result.get("items") or []
        return items

    async def resources(self, group_version: str) -> frozenset[str] | None:
        """The resources an API group version serves (discovery), or None when it is not
        served: unknown (404) or registered but unavailable (503, an aggregated API whose
        server is down)."""
        prefix = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
        try:
            found = await self._call("GET", prefix, missing_ok=True)
        except errors.KubeError as exc:
            if exc.status == 503:
                return None
            raise
        if found is None:
            return None
        return frozenset(r.get("name", "") for r in found.get("resources") or [])

    async def logs(self, name: str, *, namespace: str, container: str, tail: int = 400) -> str:
        """The last lines of a container's log ("" when there is none)."""
        path = path_of("v1", "Pod", namespace=namespace, name=name) + "/log"
        params = {"container": container, "tailLines": str(tail)}
        text = await self._call("GET", path, params=params, missing_ok=True, raw=True)
        return text if isinstance(text, str) else ""

    async def apply(
        self, manifest: Mapping[str, Any], *, manager: str, force: bool = True
    ) -> dict[str, Any]:
        """Server-side apply (forced by default: the operator owns the fields it sets)."""
        meta = manifest["metadata"]
        path = path_of(
            manifest["apiVersion"], manifest["kind"], namespace=meta.get("namespace"),
            name=meta["name"],
        )  # fmt: skip
        result: dict[str, Any] = await self._call(
            "PATCH",
            path,
            params={"fieldManager": manager, "force": "true" if force else "false"},
            body=manifest,
            content_type="application/apply-patch+yaml",
        )
        return result

    async def create(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        """POST a new object (Events; everything else is applied)."""
        path = path_of(
            manifest["apiVersion"],
            manifest["kind"],
            namespace=manifest["metadata"].get("namespace"),
        )
        result: dict[str, Any] = await self._call("POST", path, body=manifest)
        return result

    async def delete(self, api_version: str, kind: str, name: str, *, namespace: str) -> None:
        """Delete (background propagation); an object already gone is fine."""
        path = path_of(api_version, kind, namespace=namespace, name=name)
        body = {"propagationPolicy": "Background"}
        await self._call("DELETE", path, body=body, missing_ok=True)

    async def patch(
        self,
        api_version: str,
        kind: str,
        name: str,
        *,
        namespace: str,
        patch: Any,
        json_patch: bool = False,
    ) -> dict[str, Any] | None:
        """Merge-patch an object, or apply a JSON patch (a list of operations); None: it is
        gone."""
        path = path_of(api_version, kind, namespace=namespace, name=name)
        kind_of = "application/json-patch+json" if json_patch else "application/merge-patch+json"
        result: dict[str, Any] | None = await self._call(
            "PATCH", path, body=patch, content_type=kind_of, missing_ok=True
        )
        return result

    async def patch_status(
        self, api_version: str, kind: str, name: str, *, namespace: str, status: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Merge-patch the status subresource; returns the object as patched."""
        path = path_of(api_version, kind, namespace=namespace, name=name) + "/status"
        result: dict[str, Any] = await self._call(
            "PATCH", path, body={"status": status}, content_type="application/merge-patch+json"
        )
        return result
