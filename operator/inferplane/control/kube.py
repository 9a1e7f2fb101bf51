# SPDX-License-Identifier: Apache-2.0
"""The only place that talks to the Kubernetes API: get, list, server-side apply, delete, patch.

A small async client over aiohttp (kopf's own HTTP stack); the login is the official
``kubernetes`` client's configuration, shared with kopf (``handlers.login``): in a pod, the
service account from ``KUBERNETES_SERVICE_HOST``/``PORT`` and its projected token, which that
client re-reads every minute as the kubelet rotates it; outside, ``KUBECONFIG`` (or
``~/.kube/config``) with everything the official client supports: tokens, client certificates,
exec plugins (EKS, GKE, AKS), OIDC. A 401 loads the credentials afresh and retries once (a token
revoked before its rotation). Every failure becomes a ``KubeError`` carrying the HTTP status
and the API server's message; client-library errors never leak out. Objects are plain dicts.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from inferplane import errors
from inferplane.control import naming

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
HOST_ENV = "KUBERNETES_SERVICE_HOST"
HEADER_TTL_S = 10.0
"""How long the Authorization header is reused before the official client is asked again (it
re-reads a service-account token file every minute, re-runs an exec plugin when its credential
expires); a 401 asks at once, through a fresh login."""

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

ABSENT_VERSION = "1"
"""A resourceVersion no object has: etcd's first write is revision 2. An apply carrying a
resourceVersion is conditional on it (kubernetes/kubernetes#63104): it fails with 409 Conflict
on any existing object, and creates an absent one (the version is not kept), which makes it a
create-only apply."""


@dataclass(frozen=True)
class Config:
    """Where the API server is and how to prove who we are.

    ``client``: the official client's ``Configuration``; asked for the Authorization header on
    every request, so its refresh hook re-reads a rotated token file or re-runs an exec plugin
    whose credential expired. ``token``: a fixed bearer token instead (tests).
    """

    server: str
    ssl: ssl.SSLContext | bool
    token: str | None = None
    client: Any = field(default=None, compare=False, repr=False)
    ca_path: str | None = None
    certificate_path: str | None = None
    private_key_path: str | None = None
    reload: Callable[[], Config] | None = field(default=None, compare=False, repr=False)
    """Loads the credentials afresh (after a 401)."""
    _header: list[tuple[float, str | None]] = field(default_factory=list, compare=False, repr=False)
    """The last header from ``client`` and when it was asked (at most one entry)."""

    def authorization(self) -> str | None:
        """The Authorization header's value (``Bearer <token>``), or None (client certificate).

        Asked of the official client at most every ``HEADER_TTL_S``: its refresh hook costs about
        a quarter of a millisecond, more than the rest of a request's client-side work."""
        if self.client is None:
            return f"Bearer {self.token}" if self.token else None
        now = time.monotonic()
        if self._header and now - self._header[0][0] < HEADER_TTL_S:
            return self._header[0][1]
        header = self.client.get_api_key_with_prefix(
            "BearerToken"
        ) or self.client.get_api_key_with_prefix("authorization")
        value = str(header).strip() if header else None
        self._header[:] = [(now, value)]
        return value


def load_config(
    kubeconfig: str | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    service_account: Path = SERVICE_ACCOUNT,
) -> Config:
    """The in-cluster config (``KUBERNETES_SERVICE_HOST`` and the service account's token), or
    the current context of ``kubeconfig`` / ``$KUBECONFIG`` / ``~/.kube/config``; a KubeError
    naming what is missing otherwise."""
    from kubernetes import client as k8s_client
    from kubernetes import config as k8s_config
    from kubernetes.config import incluster_config

    environ = os.environ if environ is None else environ
    path = kubeconfig or environ.get("KUBECONFIG")
    token = service_account / "token"
    configuration = k8s_client.Configuration()
    in_cluster = not path and bool(environ.get(HOST_ENV)) and token.is_file()
    where = f"service account {service_account}" if in_cluster else f"kubeconfig {path}"
    try:
        if in_cluster:
            incluster_config.InClusterConfigLoader(
                token_filename=str(token),
                cert_filename=str(service_account / "ca.crt"),
                environ=environ,
            ).load_and_set(configuration)
        else:
            path = path or os.path.expanduser("~/.kube/config")
            where = f"kubeconfig {path}"
            k8s_config.load_kube_config(
                config_file=path, client_configuration=configuration, persist_config=False
            )
    except (k8s_config.ConfigException, OSError, ValueError, KeyError, TypeError) as exc:
        raise errors.KubeError(f"cannot log in to Kubernetes with {where}: {exc}") from None
    context: ssl.SSLContext | bool = False
    if configuration.verify_ssl:
        context = ssl.create_default_context(cafile=configuration.ssl_ca_cert)
        if configuration.cert_file and configuration.key_file:
            context.load_cert_chain(configuration.cert_file, configuration.key_file)
    return Config(
        server=configuration.host.rstrip("/"),
        ssl=context,
        client=configuration,
        ca_path=configuration.ssl_ca_cert,
        certificate_path=configuration.cert_file,
        private_key_path=configuration.key_file,
        reload=functools.partial(
            load_config, kubeconfig, environ=environ, service_account=service_account
        ),
    )


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
        self.logins = 1
        """Credential loads (the first, then one per 401 that a fresh login answered)."""
        self._session: aiohttp.ClientSession | None = None
        self._login = asyncio.Lock()

    async def __aenter__(self) -> Kube:
        connector = aiohttp.TCPConnector(limit=self.connections)
        self._session = aiohttp.ClientSession(
            base_url=self.config.server,
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=30),
        )
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._session is not None:
            await self._session.close()

    async def _relogin(self, failed: Config) -> bool:
        """Load the credentials afresh after a 401 with ``failed`` (once for a burst of 401s:
        a request that failed with credentials already replaced just retries)."""
        async with self._login:
            if self.config is not failed:
                return True
            if failed.reload is None:
                return False
            self.config = await asyncio.to_thread(failed.reload)
            self.logins += 1
            return True

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
        for attempt in (1, 2):
            config = self.config
            headers = {"Content-Type": content_type}
            authorization = config.authorization()
            if authorization:
                headers["Authorization"] = authorization
            try:
                async with self._session.request(
                    method, path, params=params, data=data, headers=headers, ssl=config.ssl
                ) as response:
                    text = await response.text()
                    status = response.status
            except aiohttp.ClientError as exc:
                raise errors.KubeError(f"{method} {path}: {exc}") from exc
            except TimeoutError as exc:
                raise errors.KubeError(f"{method} {path}: timed out") from exc
            if status == 401 and attempt == 1 and await self._relogin(config):
                continue
            if status == 404 and missing_ok:
                return None
            if status >= 400:
                try:
                    message = json.loads(text).get("message", text)
                except ValueError:
                    message = text[:500]
                raise errors.KubeError(f"{method} {path}: {status} {message}", status=status)
            if raw:
                return text
            return json.loads(text) if text else None
        raise AssertionError("unreachable: the second attempt returns or raises")

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
        self,
        manifest: Mapping[str, Any],
        *,
        manager: str,
        force: bool = True,
        create_only: bool = False,
    ) -> dict[str, Any]:
        """Server-side apply (forced by default: the operator owns the fields it sets).

        ``create_only``: the apply creates the object or fails with a KubeError of status 409
        when it exists, whoever made it. The object is created by an apply all the same (its
        fields owned by ``manager`` with operation ``Apply``, exactly as by a plain apply), so
        later applies drop and hand over fields as they would otherwise.
        """
        if create_only:
            meta = {**manifest["metadata"], "resourceVersion": ABSENT_VERSION}
            manifest = {**manifest, "metadata": meta}
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
