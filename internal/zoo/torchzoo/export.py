#!/usr/bin/python3
"""Exports one architecture built by PyTorch/torchvision to ONNX, with a fixed
input and PyTorch's output, for the Go runtime's checks against PyTorch.

    /usr/bin/python3 export.py ARCH OUTDIR [--batch N]

writes OUTDIR/model.onnx (opset 17, random weights from a fixed seed: nothing
is downloaded), OUTDIR/input.npy (float32, or int64 token ids for "text") and
OUTDIR/output.npy (float32, PyTorch's output in eval mode on that input), and
prints one JSON line describing them. Run with Debian's python3-torch and
python3-torchvision (/usr/bin/python3).
"""

import argparse
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torchvision.models as tvm

SEED = 20240917
OPSET = 17


class FashionCNN(nn.Module):
    """The Fashion-MNIST CNN of issue 15: its AvgPool2d has padding, so the
    exporter writes a Pad before the AveragePool."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1),
            nn.ReLU(),
            nn.AvgPool2d(2, padding=1),
            nn.Conv2d(8, 16, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Linear(16 * 7 * 7, 10)

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


class TextClassifier(nn.Module):
    """A small text classifier: token embedding plus learned positions, a
    two-layer nn.TransformerEncoder, mean over tokens, a linear head."""

    def __init__(self, vocab=1000, seq=32, dim=64, heads=4, layers=2, classes=4):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.pos = nn.Parameter(torch.randn(1, seq, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=4 * dim, dropout=0.1, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(dim, classes)

    def forward(self, tokens):
        h = self.encoder(self.embed(tokens) + self.pos)
        return self.head(h.mean(dim=1))


# name -> (constructor, input shape of one sample, input kind)
ARCHS = {
    "fashion-cnn": (FashionCNN, (1, 28, 28), "image"),
    "mobilenet_v2": (lambda: tvm.mobilenet_v2(weights=None), (3, 224, 224), "image"),
    "resnet18": (lambda: tvm.resnet18(weights=None), (3, 224, 224), "image"),
    "squeezenet1_1": (lambda: tvm.squeezenet1_1(weights=None), (3, 224, 224), "image"),
    "shufflenet_v2_x0_5": (lambda: tvm.shufflenet_v2_x0_5(weights=None), (3, 224, 224), "image"),
    "efficientnet_b0": (lambda: tvm.efficientnet_b0(weights=None), (3, 224, 224), "image"),
    "vit_b_16": (lambda: tvm.vit_b_16(weights=None), (3, 224, 224), "image"),
    "convnext_tiny": (lambda: tvm.convnext_tiny(weights=None), (3, 224, 224), "image"),
    "text": (TextClassifier, (32,), "tokens"),
}


def calibrate(model, shape, g):
    """Sets every BatchNorm's running statistics from two batches of random
    inputs, so that activations keep their scale through the network in
    eval mode: with freshly initialised statistics (mean 0, variance 1) deep
    networks such as EfficientNet shrink their outputs to 1e-17, where any
    runtime passes the comparison's absolute tolerance."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the calibration batches
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.rand((8,) + shape, generator=g, dtype=torch.float32))
    model.eval()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("arch", choices=sorted(ARCHS))
    p.add_argument("outdir")
    p.add_argument("--batch", type=int, default=1, help="batch of the fixed input (the graph's batch is dynamic)")
    a = p.parse_args()

    make, shape, kind = ARCHS[a.arch]
    torch.manual_seed(SEED)
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    model = make().eval()
    g = torch.Generator().manual_seed(SEED + 1)
    # torchvision's ViT starts its classification head at zero, which would
    # make every output 0 whatever the runtime computes before it.
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Linear) and not m.weight.any():
                m.weight.normal_(0, 0.02, generator=g)
    if kind == "image":
        calibrate(model, shape, g)
    if kind == "tokens":
        x = torch.randint(0, 1000, (a.batch,) + shape, generator=g, dtype=torch.int64)
    else:
        x = torch.rand((a.batch,) + shape, generator=g, dtype=torch.float32)
    with torch.no_grad():
        y = model(x)

    os.makedirs(a.outdir, exist_ok=True)
    path = os.path.join(a.outdir, "model.onnx")
    start = time.monotonic()
    torch.onnx.export(
        model,
        (x,),
        path,
        opset_version=OPSET,
        input_names=["input"],
        output_names=["output"],
        dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
        do_constant_folding=True,
    )
    export_s = time.monotonic() - start
    np.save(os.path.join(a.outdir, "input.npy"), x.numpy())
    np.save(os.path.join(a.outdir, "output.npy"), y.numpy().astype(np.float32))
    json.dump(
        {
            "arch": a.arch,
            "opset": OPSET,
            "torch": torch.__version__,
            "input": list(x.shape),
            "input_dtype": str(x.dtype).removeprefix("torch."),
            "output": list(y.shape),
            "output_absmax": float(y.abs().max()),
            "bytes": os.path.getsize(path),
            "export_seconds": round(export_s, 3),
        },
        sys.stdout,
    )
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
