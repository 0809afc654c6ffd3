"""What checking each blob against its sha256 on read costs: PneumoniaMNIST's training
images stored as PNG blobs, read back plainly and through `BlobStore.get` (which checks),
three times each. Needs MEDLOOP_DATA_DIR-style access to pneumoniamnist.npz (first arg)."""

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from medloop.ingest import encode_png
from medloop.store import BlobStore

d = np.load(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/medmnist/pneumoniamnist.npz")
imgs = d["train_images"]
root = Path(tempfile.mkdtemp())
b = BlobStore(root)
shas = [b.put(encode_png(i)) for i in imgs]


def plain(sha):
    return b.path(sha).read_bytes()


for _ in range(3):
    t = time.perf_counter()
    [plain(s) for s in shas]
    t1 = time.perf_counter() - t
    t = time.perf_counter()
    [b.get(s) for s in shas]
    t2 = time.perf_counter() - t
    print(f"{len(shas)} blobs: read only {t1:.3f} s, read + sha256 check {t2:.3f} s")
