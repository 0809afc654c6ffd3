"""What flushing blobs to disk costs: N blobs of 20 kB (a chest X-ray PNG's size) stored
one flush each (`put`) against one flush per batch of 500 (`put(durable=False)`, then
`sync`: an ingest's batches), in a temporary folder under the current one (so on the
disk a MEDLOOP_HOME there would use). Prints one JSON object per round:
`python benchmarks/blob_sync.py [N] [ROUNDS]`."""

import json
import os
import sys
import tempfile
import time
from pathlib import Path

from medloop.store import BlobStore

n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
batch = 500
for round_ in range(rounds):
    timings = {}
    for mode in ("each", "batch"):
        data = [os.urandom(20_000) for _ in range(n)]
        with tempfile.TemporaryDirectory(dir=".") as root:
            store = BlobStore(Path(root))
            start = time.perf_counter()
            if mode == "each":
                for blob in data:
                    store.put(blob)
            else:
                for first in range(0, n, batch):
                    chunk = data[first : first + batch]
                    store.sync([store.put(b, durable=False) for b in chunk])
            timings[mode] = time.perf_counter() - start
    print(
        json.dumps(
            {
                "blobs": n,
                "round": round_,
                "fsync_each_s": round(timings["each"], 2),
                "sync_per_500_s": round(timings["batch"], 2),
                "ratio": round(timings["each"] / timings["batch"], 1),
            }
        )
    )
