"""FedAvg in PyTorch, the reference for internal/fl's accuracy test.

Reads the Fashion-MNIST idx files, a partition of training indices among
clients, and the initial weights of a 784-H-10 MLP (float32,
little-endian, in internal/train's order: W0 [in, out] row-major, B0, W1,
B1); runs FedAvg rounds (every client, SGD with momentum 0.9 for E local
epochs of batch B, a fresh optimizer each round, the updates averaged by
sample count) and prints the test accuracy after each round as JSON.
"""
import gzip, json, sys
import numpy as np
import torch

def idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)

def main():
    cfg = json.load(open(sys.argv[1]))
    torch.manual_seed(cfg["seed"])
    torch.set_num_threads(1)
    d = cfg["dataDir"]
    xtr = torch.tensor(idx(d + "/train-images-idx3-ubyte.gz").reshape(-1, 784) / 255.0, dtype=torch.float32)
    ytr = torch.tensor(idx(d + "/train-labels-idx1-ubyte.gz").astype(np.int64))
    xte = torch.tensor(idx(d + "/t10k-images-idx3-ubyte.gz").reshape(-1, 784) / 255.0, dtype=torch.float32)
    yte = torch.tensor(idx(d + "/t10k-labels-idx1-ubyte.gz").astype(np.int64))
    sizes = cfg["sizes"]
    flat = np.fromfile(cfg["weights"], dtype="<f4")
    model = torch.nn.Sequential()
    at = 0
    for i in range(len(sizes) - 1):
        fin, fout = sizes[i], sizes[i + 1]
        lin = torch.nn.Linear(fin, fout)
        w = flat[at:at + fin * fout].reshape(fin, fout); at += fin * fout
        b = flat[at:at + fout]; at += fout
        with torch.no_grad():
            lin.weight.copy_(torch.tensor(w.T.copy()))
            lin.bias.copy_(torch.tensor(b.copy()))
        model.append(lin)
        if i < len(sizes) - 2:
            model.append(torch.nn.ReLU())
    glob = [p.detach().clone() for p in model.parameters()]
    parts = cfg["partition"]
    total = sum(len(p) for p in parts)
    accs = []
    for r in range(cfg["rounds"]):
        agg = [torch.zeros_like(g) for g in glob]
        for part in parts:
            with torch.no_grad():
                for p, g in zip(model.parameters(), glob):
                    p.copy_(g)
            opt = torch.optim.SGD(model.parameters(), lr=cfg["lr"], momentum=0.9)
            ix = torch.tensor(part)
            for _ in range(cfg["epochs"]):
                perm = ix[torch.randperm(len(ix))]
                for lo in range(0, len(perm), cfg["batch"]):
                    b = perm[lo:lo + cfg["batch"]]
                    opt.zero_grad()
                    loss = torch.nn.functional.cross_entropy(model(xtr[b]), ytr[b])
                    loss.backward()
                    opt.step()
            with torch.no_grad():
                for a, p, g in zip(agg, model.parameters(), glob):
                    a += (p - g) * (len(part) / total)
        glob = [g + a for g, a in zip(glob, agg)]
        with torch.no_grad():
            for p, g in zip(model.parameters(), glob):
                p.copy_(g)
            acc = (model(xte).argmax(1) == yte).float().mean().item()
        accs.append(acc)
    print(json.dumps({"torch": torch.__version__, "accuracy": accs}))

main()
