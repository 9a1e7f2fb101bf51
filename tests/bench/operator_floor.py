# SPDX-License-Identifier: Apache-2.0
"""The floor of the operator-at-scale bench: the cluster's own time for the operator's objects.

The objects the operator would create for each model (its planner's ``plan`` on the same spec,
inventory, settings and store) are rendered before the clock starts, with a placeholder for the
model's uid. Then, with no operator, the models are applied as the operator bench applies them,
and a bare client follows them with one watch and, at the operator's concurrency (its
``INFERPLANE_WORKERS``, 16), server-side applies each model's objects with the uid filled in.
The clock stops when every rendered Deployment has all its replicas ready. No status patch and
no Event is written: this is what the cluster needs for the objects alone, the least any
operator producing them could take here.
"""

from __future__ import annotations

import http.client
import json
import queue
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from tests.cluster import control_plane

from inferplane.api import v1alpha1
from inferplane.artifacts.store import open_store
from inferplane.control import kube, observed, planner
from inferplane.control.inventory import Inventory
from inferplane.control.settings import OperatorSettings

PLACEHOLDER_UID = "00000000-0000-4000-8000-floorfloorfl"
MANAGER = "inferplane-floor"


def render(
    items: list[dict[str, Any]], inventory: Inventory, settings: OperatorSettings
) -> dict[str, str]:
    """Per model name, its objects as one JSON text (a list) with ``PLACEHOLDER_UID`` for its
    uid: the plan of a model seen for the first time whose artifacts are in the store."""
    store = open_store(settings.store)
    rendered = {}
    now = datetime.now(UTC)
    for item in items:
        meta = item["metadata"]
        model = planner.Model(meta["name"], meta["namespace"], PLACEHOLDER_UID)
        spec = v1alpha1.validate_spec(item["spec"])
        chosen = planner.choose(spec, inventory, settings.devices)
        artifacts = {}
        for target in chosen[0]:
            options = planner.cluster_options(spec, target, settings)
            key = planner.assigned_key(spec, options, namespace=model.namespace, settings=settings)
            manifest = store.lookup(key)
            assert manifest is not None, f"the bench's store has no artifact {key}"
            artifacts[key] = observed.Artifact.from_manifest(manifest)
        plan = planner.plan(
            model=model, spec=spec, inventory=inventory, previous=None, settings=settings,
            now=now, chosen=chosen, observed=observed.Observed(artifacts=artifacts),
        )  # fmt: skip
        rendered[meta["name"]] = json.dumps(plan.apply)
    return rendered


def deployments_of(rendered: Mapping[str, str]) -> set[str]:
    return {
        o["metadata"]["name"]
        for text in rendered.values()
        for o in json.loads(text)
        if o["kind"] == "Deployment"
    }


class Watch(threading.Thread):
    """Follows a collection with one watch, calling ``seen`` with each object until it returns
    True (then ``done`` is set). Reconnects when the API server refuses or ends the watch (a new
    CRD's storage answers 429 "(re)initializing" for a moment)."""

    def __init__(
        self, state: control_plane.State, path: str, seen: Callable[[dict[str, Any]], bool]
    ) -> None:
        super().__init__(daemon=True)
        self.state, self.path, self.seen = state, path, seen
        self.done = threading.Event()

    def run(self) -> None:
        context = control_plane._ssl_context(self.state.directory)
        port = self.state.ports["kube-apiserver"]
        while not self.done.is_set():
            connection = http.client.HTTPSConnection(
                "127.0.0.1", port, context=context, timeout=900
            )
            try:
                connection.request("GET", f"{self.path}?watch=1&timeoutSeconds=900")
                response = connection.getresponse()
                while response.status == 200 and not self.done.is_set():
                    line = response.readline()
                    event = json.loads(line) if line else {}
                    if "object" not in event or event.get("type") == "ERROR":
                        break  # ended, or an error event: watch again from the start
                    if self.seen(event["object"]):
                        self.done.set()
            except OSError:
                pass  # the API server restarting, or going away at the end of the run
            finally:
                connection.close()
            if not self.done.is_set():
                time.sleep(1)

    def stop(self) -> None:
        self.done.set()


class Floor:
    """Follows the models of ``namespace`` and applies their rendered objects with ``workers``
    threads; ``ready`` is set when every rendered Deployment has all its replicas ready."""

    def __init__(
        self,
        state: control_plane.State,
        namespace: str,
        rendered: Mapping[str, str],
        workers: int = 16,
    ) -> None:
        self.state, self.namespace, self.rendered = state, namespace, rendered
        self.waiting = deployments_of(rendered)
        self.lock = threading.Lock()
        self.work: queue.Queue[tuple[str, str]] = queue.Queue()
        self.queued: set[str] = set()
        self.applied = 0
        self.errors: list[str] = []
        models = kube.path_of(v1alpha1.API_VERSION, v1alpha1.KIND, namespace=namespace)
        self.models = Watch(state, models, self._model)
        deployments = kube.path_of("apps/v1", "Deployment", namespace=namespace)
        self.deployments = Watch(state, deployments, self._deployment)
        self.workers = [threading.Thread(target=self._apply, daemon=True) for _ in range(workers)]

    @property
    def ready(self) -> threading.Event:
        return self.deployments.done

    def start(self) -> None:
        for thread in (self.deployments, self.models, *self.workers):
            thread.start()

    def stop(self) -> None:
        self.models.stop()
        self.deployments.stop()

    def _model(self, item: dict[str, Any]) -> bool:
        name = item["metadata"]["name"]
        if name in self.rendered and name not in self.queued:
            self.queued.add(name)
            self.work.put((name, item["metadata"]["uid"]))
        return False

    def _deployment(self, item: dict[str, Any]) -> bool:
        status = item.get("status") or {}
        wanted = item["spec"].get("replicas", 1)
        if status.get("readyReplicas", 0) >= wanted and status.get("updatedReplicas", 0) >= wanted:
            with self.lock:
                self.waiting.discard(item["metadata"]["name"])
                return not self.waiting
        return False

    def _apply(self) -> None:
        context = control_plane._ssl_context(self.state.directory)
        port = self.state.ports["kube-apiserver"]
        connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=120)
        while True:
            name, uid = self.work.get()
            for manifest in json.loads(self.rendered[name].replace(PLACEHOLDER_UID, uid)):
                path = kube.path_of(
                    manifest["apiVersion"], manifest["kind"],
                    namespace=self.namespace, name=manifest["metadata"]["name"],
                )  # fmt: skip
                connection.request(
                    "PATCH", f"{path}?fieldManager={MANAGER}&force=true", json.dumps(manifest),
                    {"Content-Type": "application/apply-patch+yaml"},
                )  # fmt: skip
                response = connection.getresponse()
                body = response.read()
                with self.lock:
                    self.applied += 1
                    if response.status >= 300:
                        self.errors.append(f"{path}: {response.status} {body[:200]!r}")
