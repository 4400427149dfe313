"""Plain-data state files: a JSON document that a state dict round-trips through exactly.

Strict JSON (no NaN or Infinity literals, so any JSON reader takes it), with tagged objects for
what JSON has no word for; every tag is a one-key object whose key starts with ``$``:

- ``{"$float": "nan" | "inf" | "-inf"}``: a non-finite float;
- ``{"$tuple": [...]}``: a tuple;
- ``{"$dict": [[key, value], ...]}``: a dict whose keys are not all strings (or one starts with ``$``);
- ``{"$ndarray": [flat values], "dtype": "float64", "shape": [2, 3]}``: a numpy array;
- ``{"$np": value, "dtype": "int64"}``: a numpy scalar;
- ``{"$dataclass": "LCMParams", "fields": {...}}``: one of the dataclasses in ``DATACLASSES``.

Python ints of any size (numpy's bit-generator states hold 128-bit ones) are JSON numbers. The file
is written to a temporary name, flushed and renamed into place, so a failed or killed write leaves
the previous file as it was.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from metapb2_core.errors import MetaPB2Error
from metapb2_core.gp.lcm_fit import LCMParams
from metapb2_core.store.files import atomic_write

DATACLASSES: dict[str, type] = {"LCMParams": LCMParams}  # what a method's state may hold
PICKLE_MAGIC = b"\x80"  # every pickle of protocol 2 and later starts so


def encode(value: Any) -> Any:
    """``value`` as JSON-ready data (see the module's tags)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.generic):
        return {"$np": encode(value.item()), "dtype": value.dtype.str}
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if math.isfinite(value):
            return float(value)
        return {"$float": "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")}
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf":
            raise MetaPB2Error(f"cannot save a numpy array of dtype {value.dtype} in a state file")
        return {"$ndarray": [encode(v) for v in value.ravel().tolist()], "dtype": value.dtype.str,
                "shape": list(value.shape)}  # fmt: skip
    if isinstance(value, tuple):
        return {"$tuple": [encode(v) for v in value]}
    if isinstance(value, list):
        return [encode(v) for v in value]
    if isinstance(value, dict):
        if all(isinstance(k, str) and not k.startswith("$") for k in value):
            return {k: encode(v) for k, v in value.items()}
        return {"$dict": [[encode(k), encode(v)] for k, v in value.items()]}
    if dataclasses.is_dataclass(value) and DATACLASSES.get(type(value).__name__) is type(value):
        fields = {f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return {"$dataclass": type(value).__name__, "fields": fields}
    raise MetaPB2Error(f"cannot save a value of type {type(value).__name__} in a state file")


def decode(data: Any) -> Any:
    """The value ``encode`` made ``data`` of."""
    if isinstance(data, list):
        return [decode(v) for v in data]
    if not isinstance(data, dict):
        return data
    if "$float" in data:
        return float(data["$float"])
    if "$tuple" in data:
        return tuple(decode(v) for v in data["$tuple"])
    if "$dict" in data:
        return {_hashable(decode(k)): decode(v) for k, v in data["$dict"]}
    if "$ndarray" in data:
        flat = [decode(v) for v in data["$ndarray"]]
        return np.array(flat, dtype=np.dtype(data["dtype"])).reshape(data["shape"])
    if "$np" in data:
        return np.dtype(data["dtype"]).type(decode(data["$np"]))
    if "$dataclass" in data:
        cls = DATACLASSES.get(data["$dataclass"])
        if cls is None:
            raise MetaPB2Error(f"a state file names an unknown type {data['$dataclass']!r}")
        return cls(**{k: decode(v) for k, v in data["fields"].items()})
    return {k: decode(v) for k, v in data.items()}


def _hashable(key: Any) -> Any:
    return tuple(_hashable(k) for k in key) if isinstance(key, list) else key


def write_state(path: str | Path, document: dict[str, Any]) -> None:
    """Write ``document`` (encoded) to ``path`` atomically (``store.files.atomic_write``)."""
    path = Path(path)
    text = json.dumps(encode(document), allow_nan=False)
    try:
        atomic_write(path, (text + "\n").encode("utf-8"))
    except OSError as e:
        raise MetaPB2Error(f"cannot save the state file {path}: {e.strerror or e}") from None


def read_state(path: str | Path, what: str) -> dict[str, Any] | None:
    """The document saved at ``path`` (decoded), None when there is no file there. A file that is
    not one (an old pickle, a truncated or foreign file) is one error line naming ``what``."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise MetaPB2Error(f"cannot read {path}: {e.strerror or e}") from None
    if raw.startswith(PICKLE_MAGIC):
        raise MetaPB2Error(
            f"{path} is an old pickle state (saved before states were JSON); it is not loaded: "
            f"start the {what} afresh"
        )
    try:
        document = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise MetaPB2Error(f"{path} is not a saved {what} (unreadable JSON: {e})") from None
    if not isinstance(document, dict):
        raise MetaPB2Error(f"{path} is not a saved {what}")
    return decode(document)
