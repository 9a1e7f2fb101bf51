# SPDX-License-Identifier: Apache-2.0
"""The one error tree of inferplane; foreign errors are translated at the boundary (``from``).

    InferplaneError
    ├── SpecError          an InferenceModel spec or CLI argument is invalid
    ├── PlanError          the planner cannot place the model
    ├── KubeError          the Kubernetes API refused or failed a call
    ├── StoreError         the artifact store cannot read, write or find something
    │   └── ArchiveError   an archive is unsafe or corrupt
    ├── ConversionError    a conversion or its verification failed
    │   └── ToolMissing    a conversion tool is not installed here
    ├── BackendError       a serving backend cannot load or run a model
    │   └── RuntimeMissing a backend's runtime is not installed here
    └── ProtocolError      a client's inference request is wrong
        ├── ModelNotFound  no such model or version
        ├── RequestTooLarge
        └── Unavailable    not ready, or the queue is full

No HTTP status codes live here: ``serving.app`` maps these classes to them.
"""

from __future__ import annotations


class InferplaneError(Exception):
    """Root of every error inferplane raises on purpose; the message is meant for the user."""


class SpecError(InferplaneError):
    """An InferenceModel spec or a command-line argument is invalid."""


class PlanError(InferplaneError):
    """The planner cannot place the model on the devices available."""


class KubeError(InferplaneError):
    """A call to the Kubernetes API failed."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class StoreError(InferplaneError):
    """The artifact store cannot read, write or find something."""


class ArchiveError(StoreError):
    """An archive is unsafe (escaping paths, links out, too large) or corrupt."""


class ConversionError(InferplaneError):
    """A conversion or its verification failed."""


class ToolMissing(ConversionError):
    """A conversion tool is not installed in this environment."""

    def __init__(self, tool: str, image: str, hint: str = "") -> None:
        extra = f" {hint}" if hint else ""
        super().__init__(
            f"{tool} is not installed here; it ships in the inferplane '{image}' image.{extra}"
        )
        self.tool = tool
        self.image = image


class BackendError(InferplaneError):
    """A serving backend cannot load or run a model."""


class RuntimeMissing(BackendError):
    """A backend's runtime library is not installed in this environment."""

    def __init__(self, backend: str, package: str, image: str) -> None:
        super().__init__(
            f"backend '{backend}' needs {package}, which is not installed here; "
            f"use the inferplane '{image}' image (or pip install {package})"
        )
        self.backend = backend
        self.package = package
        self.image = image


class ProtocolError(InferplaneError):
    """A client's inference request is wrong (the client's mistake, never the server's)."""


class ModelNotFound(ProtocolError):
    """No model or version of that name is served here."""


class RequestTooLarge(ProtocolError):
    """The request body is over the configured limit."""


class Unavailable(ProtocolError):
    """The model is not ready yet, or the queue is full; the client should retry later."""

    def __init__(self, message: str, *, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
