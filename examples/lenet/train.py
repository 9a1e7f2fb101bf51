# SPDX-License-Identifier: Apache-2.0
"""Train LeNet5 on scikit-learn's bundled handwritten digits (no download), in under a minute.

The 8x8 digits (values 0..16) are scaled to [0, 1] and enlarged to 32x32 (each pixel becomes a
4x4 block), split 80/20 with a fixed seed. Writes, next to this file unless ``--out`` says
otherwise:

- ``out/lenet.ckpt``: the trained weights (``network:lenet5`` builds the network they fit);
- ``out/digits-val.npz``: the held-out images ``x`` (N, 1, 32, 32) float32 and labels ``y``.

Run: ``python examples/lenet/train.py [--epochs 8] [--out DIR]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def digits(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_val, y_val): 1x32x32 float32 images and int32 labels."""
    from sklearn.datasets import load_digits

    data = load_digits()
    images = (data.images / 16.0).astype(np.float32)
    images = np.kron(images, np.ones((1, 4, 4), dtype=np.float32))[:, None, :, :]
    labels = data.target.astype(np.int32)
    order = np.random.default_rng(seed).permutation(len(labels))
    cut = int(len(order) * 0.8)
    train, val = order[:cut], order[cut:]
    return images[train], labels[train], images[val], labels[val]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--out", type=Path, default=HERE / "out")
    args = parser.parse_args(argv)

    import mindspore as ms
    from mindspore import nn

    sys.path.insert(0, str(HERE))
    from network import lenet5

    ms.set_device("CPU")
    ms.set_context(mode=ms.GRAPH_MODE)
    ms.set_seed(0)
    x_train, y_train, x_val, y_val = digits()
    net = lenet5()
    loss = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
    optimizer = nn.Adam(net.trainable_params(), learning_rate=2e-3)
    step = nn.TrainOneStepCell(nn.WithLossCell(net, loss), optimizer)
    step.set_train()
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    size = args.batch_size
    for epoch in range(args.epochs):
        order = rng.permutation(len(y_train))
        # Drop the ragged last batch: one shape means one compiled graph.
        losses = [
            float(step(ms.Tensor(x_train[idx]), ms.Tensor(y_train[idx])).asnumpy())
            for idx in (order[i : i + size] for i in range(0, len(order) - size + 1, size))
        ]
        print(f"epoch {epoch + 1}/{args.epochs}: loss {np.mean(losses):.4f}", file=sys.stderr)
    net.set_train(False)
    logits = net(ms.Tensor(x_val)).asnumpy()
    accuracy = float((logits.argmax(axis=1) == y_val).mean())
    args.out.mkdir(parents=True, exist_ok=True)
    ms.save_checkpoint(net, str(args.out / "lenet.ckpt"))
    np.savez(args.out / "digits-val.npz", x=x_val, y=y_val)
    print(
        f"validation accuracy {accuracy:.4f} on {len(y_val)} digits after "
        f"{time.perf_counter() - start:.1f} s; wrote {args.out}/lenet.ckpt and digits-val.npz",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
