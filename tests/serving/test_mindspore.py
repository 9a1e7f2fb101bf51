# SPDX-License-Identifier: Apache-2.0
"""LeNet5 served by the MindSpore backend (CPU): checkpoint + network, and MindIR via GraphCell."""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as triton
from tests import models
from tests.serving.conftest import Server, StartServer, metric_value

LENET_ENV = {
    "PYTHONPATH": os.pathsep.join([str(models.LENET_DIR), os.environ.get("PYTHONPATH", "")])
}


@pytest.fixture(scope="module")
def reference(lenet_checkpoint: Path):  # type: ignore[no-untyped-def]
    """LeNet5 with the checkpoint's weights, called directly in MindSpore."""
    import mindspore as ms

    net = models.lenet_network()
    ms.load_param_into_net(net, ms.load_checkpoint(str(lenet_checkpoint)))  # type: ignore[arg-type]
    net.set_train(False)  # type: ignore[attr-defined]
    return lambda x: net(ms.Tensor(x)).asnumpy()  # type: ignore[operator]


def _not_ready_until_loaded(server: Server) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            if server.request("GET", "/v2/health/live")[0] == 200:
                break
        except OSError:
            assert time.monotonic() < deadline
            time.sleep(0.02)
    status, headers, body = server.request("GET", "/v2/health/ready")
    assert status == 503 and b"loading" in body
    status, headers, body = server.request("POST", "/v2/models/lenet/infer", b"{}")
    assert status == 503 and int(headers["retry-after"]) >= 1
    assert server.request("GET", "/v2/models/lenet/ready")[0] == 503


def _infer(url: str, x: np.ndarray, binary: bool) -> np.ndarray:
    client = triton.InferenceServerClient(url)
    inp = triton.InferInput("x", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=binary)
    result = client.infer("lenet", [inp])
    client.close()
    (name,) = [o["name"] for o in result.get_response()["outputs"]]
    return result.as_numpy(name)


@pytest.mark.parametrize("source", ["checkpoint", "mindir"])
def test_lenet_equals_mindspore(
    start_server: StartServer,
    lenet_checkpoint: Path,
    lenet_mindir: Path,
    reference,  # type: ignore[no-untyped-def]
    source: str,
) -> None:
    args: list[str | Path] = [lenet_checkpoint, "--network", models.LENET_NETWORK]
    if source == "mindir":
        args = [lenet_mindir]
    args += ["--input", models.LENET_INPUT, "--max-batch-size", "4", "--max-queue-delay-ms", "50"]
    server = start_server(*args, env=LENET_ENV, ready=False)
    if source == "checkpoint":  # loading MindSpore takes seconds: the server answers meanwhile
        _not_ready_until_loaded(server)
    server.wait_ready()
    rng = np.random.default_rng(5)
    for binary in (False, True):
        x = rng.standard_normal((2, 1, 32, 32)).astype(np.float32)
        np.testing.assert_allclose(
            _infer(server.url, x, binary), reference(x), rtol=1e-4, atol=1e-5
        )
    singles = [rng.standard_normal((1, 1, 32, 32)).astype(np.float32) for _ in range(8)]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda x: _infer(server.url, x, True), singles))
    for x, got in zip(singles, answers, strict=True):
        np.testing.assert_allclose(got, reference(x), rtol=1e-4, atol=1e-5)
    text = server.metrics()
    assert metric_value(text, "inferplane_batch_size_count") < 10, "the 8 singles never merged"


def test_sigterm_while_loading_exits_cleanly(
    start_server: StartServer, lenet_checkpoint: Path
) -> None:
    server = start_server(
        lenet_checkpoint, "--network", models.LENET_NETWORK, "--input", models.LENET_INPUT,
        env=LENET_ENV, ready=False,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while True:
        try:
            if server.request("GET", "/v2/health/live")[0] == 200:
                break
        except OSError:
            assert time.monotonic() < deadline
            time.sleep(0.02)
    assert server.request("GET", "/v2/health/ready")[0] == 503
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=30) == 0
    assert "ready at" not in (server.proc.stderr.read() if server.proc.stderr else "")
