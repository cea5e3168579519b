"""Chunks: a run of one series' rows, as columns, and the blob the store keeps them in.

The store never keeps one row per point: it keeps one blob per series and time block (an hour of
raw points; six hours, a day or a week of rollup buckets). A chunk is a set of equally long numpy
columns, the first always the timestamps in ms, sorted and unique. Pure functions only: merging
two chunks (the newer row wins at an equal timestamp, as a put at an existing time replaces the
old point), the blobs, and the two views of raw values.

Raw values keep OpenTSDB's int/float distinction: a raw chunk has three columns — timestamps,
`bits` (an int as itself, a float as its IEEE-754 bit pattern, so both survive exactly in one
int64 column) and `is_int` — packed compressed (`pack`), since raw points are most of the bytes.
Rollup buckets are `RECORD` doubles each (start, min, max, sum, count) stored as they lie in
memory (`records`), so that a query joins a thousand series' blobs and reads them with one
`numpy.frombuffer`: a decompression per blob would cost more than the whole rest of the query.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

Column = npt.NDArray[Any]
Chunk = tuple[Column, ...]
"""Equally long columns; column 0 is the timestamps (int64 ms), sorted and unique."""

Value = int | float

RAW_DTYPES = (np.dtype(np.int64), np.dtype(np.int64), np.dtype(np.bool_))
"""ts, bits, is_int."""
RECORD = 5
"""Doubles per rollup bucket: start (ms), min, max, sum, count."""

_HEADER = struct.Struct("<I")


def raw_chunk(stamps: Sequence[int], values: Sequence[Value]) -> Chunk:
    """Points as two lists (any order; a later one wins at an equal timestamp) → a raw chunk.

    Sealing turns every point into a chunk once, so the usual cases (all ints, all floats) are
    converted by numpy in C; only a mix of the two goes point by point."""
    ts = np.array(stamps, np.int64)
    kinds = set(map(type, values))
    if kinds <= {int}:
        bits = np.array(values, np.int64)
        is_int = np.ones(len(ts), np.bool_)
    elif int not in kinds:
        bits = np.array(values, np.float64).view(np.int64)
        is_int = np.zeros(len(ts), np.bool_)
    else:
        is_int = np.array([type(v) is int for v in values], np.bool_)
        bits = np.array([float(v) for v in values], np.float64).view(np.int64)
        bits[is_int] = [v for v in values if type(v) is int]
    return _latest_per_timestamp((ts, bits, is_int))


def run_starts(*keys: npt.NDArray[Any]) -> npt.NDArray[np.intp]:
    """Indexes where a run of rows equal in every key column begins (rows sorted by the keys)."""
    change = np.ones(len(keys[0]), np.bool_)
    if len(change) > 1:
        change[1:] = np.logical_or.reduce([key[1:] != key[:-1] for key in keys])
    return np.flatnonzero(change)


def floats(chunk: Chunk) -> npt.NDArray[np.float64]:
    """The raw values as doubles, for rollups and downsampling."""
    _, bits, is_int = chunk
    as_float = bits.view(np.float64).copy()
    as_float[is_int] = bits[is_int]
    return as_float


def points(chunk: Chunk) -> list[tuple[int, Value]]:
    """The raw values as the Python numbers they were put as, with their timestamps."""
    ts, bits, is_int = chunk
    stamps: list[int] = ts.tolist()
    if is_int.all():
        values: list[Value] = bits.tolist()
    elif not is_int.any():
        values = bits.view(np.float64).tolist()
    else:
        as_float = bits.view(np.float64).tolist()
        values = [int(b) if i else f for b, i, f in zip(bits.tolist(), is_int.tolist(), as_float, strict=True)]
    return list(zip(stamps, values, strict=True))


def merge(old: Chunk, new: Chunk) -> Chunk:
    """The rows of both, sorted by time; at an equal timestamp the row of `new` wins."""
    if len(old[0]) == 0:
        return new
    joined = tuple(np.concatenate((a, b)) for a, b in zip(old, new, strict=True))
    if len(new[0]) == 0 or old[0][-1] < new[0][0]:
        return joined  # appended after the end, as sealing the hour that just ended does
    return _latest_per_timestamp(joined)


def _latest_per_timestamp(chunk: Chunk) -> Chunk:
    ts = chunk[0]
    if len(ts) < 2 or bool((ts[1:] > ts[:-1]).all()):
        return chunk
    order = np.argsort(ts, kind="stable")
    ts_sorted = ts[order]
    # The last of each run of equal timestamps is the latest written.
    keep = np.ones(len(ts_sorted), dtype=np.bool_)
    keep[:-1] = ts_sorted[1:] != ts_sorted[:-1]
    chosen = order[keep]
    return tuple(column[chosen] for column in chunk)


def rollup(
    ts: npt.NDArray[np.int64], values: npt.NDArray[np.float64], width: int, owner: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Points of many series, sorted by owner (the series) then time → one record (start, min,
    max, sum, count) per series and `width`-ms bucket, epoch-aligned, with each record's owner.
    All series at once: sealing an hour of a thousand series must not loop in numpy per series."""
    buckets = ts - ts % width
    starts = run_starts(owner, buckets)
    records = np.empty((len(starts), RECORD), np.float64)
    records[:, 0] = buckets[starts]
    records[:, 1] = np.minimum.reduceat(values, starts)
    records[:, 2] = np.maximum.reduceat(values, starts)
    records[:, 3] = np.add.reduceat(values, starts)
    records[:, 4] = np.diff(starts, append=len(ts))
    return owner[starts], records


def merge_records(old: npt.NDArray[np.float64], new: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """`merge` for rollup records: at an equal bucket start the record of `new` wins."""
    if len(old) and len(new) and old[-1, 0] < new[0, 0]:
        return np.concatenate((old, new))
    merged = merge(tuple(old.T), tuple(new.T))
    return np.column_stack(merged).astype(np.float64).reshape(-1, RECORD)


def records(blob: bytes) -> npt.NDArray[np.float64]:
    return np.frombuffer(blob, np.float64).reshape(-1, RECORD)


def pack(chunk: Chunk) -> bytes:
    """Columns → one blob: timestamps as deltas, every column byte-shuffled and deflated.

    Shuffling puts the k-th byte of every value together, so the sign/exponent bytes of
    similar doubles and the high bytes of small counts and steady time steps compress well."""
    ts = chunk[0]
    deltas = np.diff(ts, prepend=np.int64(0))
    parts = [_HEADER.pack(len(ts))]
    for column in (deltas, *chunk[1:]):
        width = column.dtype.itemsize
        shuffled = np.ascontiguousarray(column).view(np.uint8).reshape(-1, width).T.tobytes()
        body = zlib.compress(shuffled, 1)
        parts.append(_HEADER.pack(len(body)))
        parts.append(body)
    return b"".join(parts)


def unpack(blob: bytes, dtypes: Sequence[np.dtype[np.generic]]) -> Chunk:
    """The columns `pack` wrote, given their dtypes."""
    (count,) = _HEADER.unpack_from(blob, 0)
    offset = _HEADER.size
    columns: list[Column] = []
    for dtype in dtypes:
        (length,) = _HEADER.unpack_from(blob, offset)
        offset += _HEADER.size
        shuffled = np.frombuffer(zlib.decompress(blob[offset : offset + length]), np.uint8)
        offset += length
        columns.append(shuffled.reshape(dtype.itemsize, count).T.copy().view(dtype).reshape(count))
    columns[0] = np.cumsum(columns[0])
    return tuple(columns)
