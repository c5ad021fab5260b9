#!/usr/bin/env python3
"""Write a run's checkpoint with its parameters only: the `param.*` tensors and the header's
metadata (the training state `varattn` embeds), without the optimizer's moments (`adam.*`), which
make up two thirds of the file. Such a checkpoint loads for evaluation (`varattn eval`,
`translate`, `align`, the notebooks), not for resuming training.

    scripts/checkpoint-params.py IN.safetensors OUT.safetensors

The repository keeps the best checkpoints of the runs notebook 06 loads this way.
Standard library only; the output is written to a temporary file and renamed."""
import json
import os
import struct
import sys


def main(src: str, dst: str) -> None:
    with open(src, "rb") as f:
        data = f.read()
    if len(data) < 8:
        sys.exit(f"{src}: not a safetensors file (shorter than its 8-byte header length)")
    (n,) = struct.unpack("<Q", data[:8])
    try:
        header = json.loads(data[8 : 8 + n])
    except ValueError as e:
        sys.exit(f"{src}: unreadable safetensors header ({e})")
    body = data[8 + n :]
    out_header, chunks, offset = {}, [], 0
    if "__metadata__" in header:
        out_header["__metadata__"] = header["__metadata__"]
    # tensors in their original order in the file, so that the output is deterministic
    params = sorted((k for k in header if k.startswith("param.")), key=lambda k: header[k]["data_offsets"][0])
    if not params:
        sys.exit(f"{src}: no `param.*` tensors: not a varattn checkpoint")
    for k in params:
        a, b = header[k]["data_offsets"]
        chunks.append(body[a:b])
        out_header[k] = {"dtype": header[k]["dtype"], "shape": header[k]["shape"], "data_offsets": [offset, offset + b - a]}
        offset += b - a
    text = json.dumps(out_header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # keep the tensor data 8-byte aligned, as safetensors writers do
    tmp = dst + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(chunks))
    os.replace(tmp, dst)
    print(f"{dst}: {len(params)} parameter tensors, {os.path.getsize(dst)} bytes (was {len(data)})")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
