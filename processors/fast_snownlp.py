"""A faster, bit-compatible reimplementation of ``snownlp.SnowNLP(text).sentiments``.

snownlp spends ~99% of a sentiment call in its character-based generative
segmenter (a TnT-style trigram HMM over the tags b/m/e/s), written with one dict
lookup on nested tuples per trigram and a copied path list per Viterbi state.
This module reads the same model files from the installed snownlp package and
gives the same scores (same float operations in the same order, same tie-breaking)
at a fraction of the time and memory.

Why hand-written: no library reimplements snownlp's segmenter/classifier with
identical numerics, and the scores feed stored `sentiment.snownlp` values that
must not change when we switch implementations.
"""

from __future__ import annotations

import codecs
import gzip
import marshal
import math
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["FastSentiment"]

_I64 = npt.NDArray[np.int64]
_F64 = npt.NDArray[np.float64]

# Same pattern as snownlp.seg / snownlp.normal: only these characters reach the segmenter.
_RE_ZH = re.compile("([\u4e00-\u9fa5]+)")
_ZH_FIRST = 0x4E00
_ZH_COUNT = 0x9FA5 - 0x4E00 + 1
_TAGS = ("b", "m", "e", "s")
_TAG_ID = {t: i for i, t in enumerate(_TAGS)}
# (char, tag) -> small int: 0 is ('', 'BOS'), else 1 + 4 * (ord(char) - 0x4E00) + tag.
_PAIR_BITS = 17
_N_PAIRS = 1 + 4 * _ZH_COUNT
_NEG_INF = float("-inf")
_BATCH = 512


def _snownlp_dir() -> str:
    """Directory of the installed snownlp package, found without importing it
    (importing snownlp loads all its models, ~400 MB)."""
    import importlib.util

    spec = importlib.util.find_spec("snownlp")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("snownlp is not installed")
    return str(next(iter(spec.submodule_search_locations)))


def _load_marshal(path: str) -> Any:
    """snownlp's model loader: gzip'ed marshal, falling back to plain marshal."""
    try:
        with gzip.open(path, "rb") as f:
            return marshal.loads(f.read())
    except OSError:
        with open(path, "rb") as f:
            return marshal.loads(f.read())


def _pair_id(item: Any) -> int:
    """Compact id of a (char, tag) pair, or -1 if the segmenter can never query it."""
    char, tag = item
    if tag == "BOS" and char == "":
        return 0
    if len(char) != 1 or tag not in _TAG_ID:
        return -1
    code = ord(char) - _ZH_FIRST
    if not 0 <= code < _ZH_COUNT:
        return -1
    return 1 + 4 * code + _TAG_ID[tag]


def _build_arrays(snownlp_dir: str) -> dict[str, Any]:
    """Turn the dict-of-nested-tuples segmenter model into sorted int64 key arrays.

    Entries with characters outside U+4E00..U+9FA5 are dropped: snownlp's seg()
    only ever sends runs of those characters to the model.
    """
    d = _load_marshal(os.path.join(snownlp_dir, "seg", "seg.marshal.3"))
    uni = np.zeros(_N_PAIRS, dtype=np.int64)
    for k, v in d["uni"]["d"].items():
        p = _pair_id(k)
        if p >= 0:
            uni[p] = v
    out: dict[str, Any] = {
        "l1": float(d["l1"]),
        "l2": float(d["l2"]),
        "l3": float(d["l3"]),
        "uni_total": float(d["uni"]["total"]),
        "uni": uni,
    }
    out["bos_bos"] = int(d["bi"]["d"].get((("", "BOS"), ("", "BOS")), 0))
    for name in ("bi", "tri"):
        keys: list[int] = []
        vals: list[int] = []
        for k, v in d[name]["d"].items():
            key = 0
            for item in k:
                p = _pair_id(item)
                if p < 0:
                    break
                key = (key << _PAIR_BITS) | p
            else:
                keys.append(key)
                vals.append(v)
        karr = np.array(keys, dtype=np.int64)
        varr = np.array(vals, dtype=np.int64)
        order = np.argsort(karr, kind="stable")
        out[name + "_keys"] = karr[order]
        out[name + "_vals"] = varr[order]
    # The key pruning in _log_probs relies on training having counted every part
    # of a counted n-gram; check it rather than assume it.
    tri = out["tri_keys"]
    mask = (1 << (2 * _PAIR_BITS)) - 1
    if not (
        np.isin(tri & mask, out["bi_keys"]).all()
        and np.isin(tri >> _PAIR_BITS, out["bi_keys"]).all()
        and (uni[out["bi_keys"] & ((1 << _PAIR_BITS) - 1)] != 0).all()
        and (uni[out["bi_keys"] >> _PAIR_BITS] != 0).all()
    ):
        raise ValueError("snownlp seg model: an n-gram is counted without its parts")
    return out


def _build_to_file(snownlp_dir: str, path: str) -> None:
    """Child-process entry: build the arrays and save them, so the ~400 MB peak of
    unmarshalling snownlp's model is never reached in the serving process."""
    payload: dict[str, Any] = {k: np.asarray(v) for k, v in _build_arrays(snownlp_dir).items()}
    np.savez(path, **payload)


@dataclass(frozen=True)
class _SegModel:
    l1: float
    l2: float
    l3: float
    uni_total: float
    uni: _I64
    bi_keys: _I64
    bi_vals: _I64
    tri_keys: _I64
    tri_vals: _I64
    bos_bos: int


def _lookup(keys: _I64, vals: _I64, query: _I64) -> _I64:
    """Counts for `query` keys in a sorted key array (0 where absent, as NormalProb)."""
    if len(keys) == 0:
        return np.zeros(query.shape, dtype=np.int64)
    idx = np.searchsorted(keys, query)
    np.minimum(idx, len(keys) - 1, out=idx)
    found = keys[idx] == query
    return np.where(found, vals[idx], 0)


def _logs(values: _F64) -> _F64:
    """math.log elementwise (bit-identical to snownlp), -inf where the value is 0."""
    flat = values.ravel()
    zero = flat == 0
    safe = np.where(zero, 1.0, flat).tolist()
    out = np.fromiter(map(math.log, safe), dtype=np.float64, count=len(safe))
    out[zero] = _NEG_INF
    return out.reshape(values.shape)


def _safe_div(num: _F64, den: npt.NDArray[Any]) -> _F64:
    """snownlp's `div`: num / den, or 0 where den == 0."""
    out = np.zeros(np.broadcast(num, den).shape, dtype=np.float64)
    np.divide(num, den, out=out, where=den != 0)
    return out


class FastSentiment:
    """Drop-in for ``SnowNLP(text).sentiments`` with identical scores.

    One difference on purpose: ``SnowNLP("")`` raises ZeroDivisionError in its BM25
    constructor before `.sentiments` runs; ``score("")`` returns what the
    classifier behind `.sentiments` gives for "" (``snownlp.sentiment.classify("")``).
    Not thread-safe during the first (loading) call.
    """

    def __init__(self, build_in_subprocess: bool = True, cache_dir: str | None = None) -> None:
        """Models load on first `score`. `build_in_subprocess` keeps the one-off
        ~400 MB unmarshalling peak out of this process; `cache_dir`, if given, keeps
        the compact arrays (derived from the installed model, keyed by its size and
        mtime) so later processes skip the ~2 s build."""
        self._build_in_subprocess = build_in_subprocess
        self._cache_dir = cache_dir
        self._seg: _SegModel | None = None
        self._stop: frozenset[str] = frozenset()
        self._classes: list[tuple[str, float, dict[str, float], float]] = []
        self._total = 0.0

    # ------------------------------------------------------------------ loading
    def _load(self) -> _SegModel:
        root = _snownlp_dir()
        cached: str | None = None
        if self._cache_dir is not None:
            st = os.stat(os.path.join(root, "seg", "seg.marshal.3"))
            name = f"fast_snownlp-v1-{st.st_size}-{st.st_mtime_ns}.npz"
            cached = os.path.join(self._cache_dir, name)
        if cached is not None and os.path.exists(cached):
            with np.load(cached) as z:
                arrays: dict[str, Any] = {k: z[k] for k in z.files}
        elif self._build_in_subprocess:
            if cached is not None:
                os.makedirs(os.path.dirname(cached), exist_ok=True)
            fd, path = tempfile.mkstemp(suffix=".npz", dir=self._cache_dir)
            os.close(fd)
            try:
                # A plain script run (not multiprocessing/spawn): works from any __main__.
                subprocess.run([sys.executable, os.path.abspath(__file__), root, path], check=True)
                with np.load(path) as z:
                    arrays = {k: z[k] for k in z.files}
                if cached is not None:
                    os.replace(path, cached)  # atomic: concurrent workers are safe
            finally:
                if os.path.exists(path):
                    os.unlink(path)
        else:
            arrays = _build_arrays(root)
            if cached is not None:
                os.makedirs(os.path.dirname(cached), exist_ok=True)
                fd, path = tempfile.mkstemp(suffix=".npz", dir=self._cache_dir)
                os.close(fd)
                payload: dict[str, Any] = {k: np.asarray(v) for k, v in arrays.items()}
                np.savez(path, **payload)
                os.replace(path, cached)
        seg = _SegModel(
            l1=float(arrays["l1"]),
            l2=float(arrays["l2"]),
            l3=float(arrays["l3"]),
            uni_total=float(arrays["uni_total"]),
            uni=np.asarray(arrays["uni"], dtype=np.int64),
            bi_keys=np.asarray(arrays["bi_keys"], dtype=np.int64),
            bi_vals=np.asarray(arrays["bi_vals"], dtype=np.int64),
            tri_keys=np.asarray(arrays["tri_keys"], dtype=np.int64),
            tri_vals=np.asarray(arrays["tri_vals"], dtype=np.int64),
            bos_bos=int(arrays["bos_bos"]),
        )
        # Stopwords: read exactly like snownlp.normal (codecs line splitting, strip()).
        stop: set[str] = set()
        with codecs.open(os.path.join(root, "normal", "stopwords.txt"), "r", "utf-8") as fr:
            for word in fr:
                stop.add(word.strip())
        self._stop = frozenset(stop)
        # Bayes: per class log(P(class)) parts and per word log(freq), same float ops.
        sd = _load_marshal(os.path.join(root, "sentiment", "sentiment.marshal.3"))
        self._total = sd["total"]
        classes = []
        for name, prob in sd["d"].items():
            total = prob["total"]
            logs = {w: math.log(float(c) / total) for w, c in prob["d"].items()}
            classes.append((name, total, logs, math.log(float(prob["none"]) / total)))
        self._classes = classes
        self._seg = seg
        return seg

    # -------------------------------------------------------------- segmenting
    def _log_probs(self, seg: _SegModel, pieces: list[str]) -> tuple[list[bool], list[list[float]]]:
        """Per position, whether the char is known and the 64 `log_prob` values
        indexed x*16 + a*4 + s (tags of chars i-2, i-1, i), all positions at once.

        Terms are computed with the same IEEE operations as snownlp (l1*(c/total),
        (l2*c)/d, (l3*c)/d, (uni+bi)+tri; adding a 0.0 term is exact), and logs
        with math.log (numpy's log can differ in the last bit).
        """
        # All CJK runs of a text in one pass (numpy's per-call cost dominates on the
        # short runs between punctuation); each run restarts at BOS.
        text = "".join(pieces)
        n = len(text)
        codes = np.fromiter((ord(c) - _ZH_FIRST for c in text), dtype=np.int64, count=n)
        starts = np.cumsum([0, *(len(p) for p in pieces[:-1])])
        pairs = 1 + 4 * codes[:, None] + np.arange(4, dtype=np.int64)[None, :]  # (n,4)
        prev1 = np.zeros((n, 4), dtype=np.int64)
        prev2 = np.zeros((n, 4), dtype=np.int64)
        if n > 1:
            prev1[1:] = pairs[:-1]
        if n > 2:
            prev2[2:] = pairs[:-2]
        first = np.zeros(n, dtype=bool)  # first char of a run
        first[starts] = True
        second = np.zeros(n, dtype=bool)
        second[1:] = first[:-1] & ~first[1:]
        prev1[first] = 0
        prev2[first] = 0
        prev2[second] = 0
        uni3 = seg.uni[pairs]  # (n,4)[s] counts of (c_i, s)
        found = (uni3 != 0).any(axis=1).tolist()
        uniterm = seg.l1 * (uni3.astype(np.float64) / seg.uni_total)
        u2 = seg.uni[prev1]  # (n,4)[a]
        # A bigram/trigram can only have been counted if its parts were (training
        # adds them together), so only those keys are searched.
        bicnt = np.zeros((n, 4, 4), dtype=np.int64)
        bi_m = (u2 != 0)[:, :, None] & (uni3 != 0)[:, None, :]
        bi_q = ((prev1[:, :, None] << _PAIR_BITS) | pairs[:, None, :])[bi_m]
        bicnt[bi_m] = _lookup(seg.bi_keys, seg.bi_vals, bi_q)
        biterm = _safe_div(seg.l2 * bicnt.astype(np.float64), u2[:, :, None])
        base = uniterm[:, None, :] + biterm  # (n,4,4)[a,s]: uni + bi
        # Denominator bi((c_{i-2},x),(c_{i-1},a)) is the previous position's bigram.
        # (At a run's 2nd char the previous bigram rows all start at BOS, so equal.)
        b12 = np.empty((n, 4, 4), dtype=np.int64)
        if n > 1:
            b12[1:] = bicnt[:-1]
        b12[first] = seg.bos_bos
        full = np.repeat(_logs(base.reshape(n, 1, 16)), 4, axis=1).reshape(n, 64)
        tri_m = (b12 != 0)[:, :, :, None] & (bicnt != 0)[:, None, :, :]
        idx = np.flatnonzero(tri_m)
        if len(idx):
            i_idx, x_idx, a_idx, s_idx = np.unravel_index(idx, (n, 4, 4, 4))
            tri_q = (
                ((prev2[i_idx, x_idx] << _PAIR_BITS) | prev1[i_idx, a_idx]) << _PAIR_BITS
            ) | pairs[i_idx, s_idx]
            tricnt = _lookup(seg.tri_keys, seg.tri_vals, tri_q)
            hit = tricnt != 0
            if hit.any():
                i_idx, x_idx, a_idx, s_idx = i_idx[hit], x_idx[hit], a_idx[hit], s_idx[hit]
                den = b12[i_idx, x_idx, a_idx]
                triterm = (seg.l3 * tricnt[hit].astype(np.float64)) / den
                total = base[i_idx, a_idx, s_idx] + triterm
                full[i_idx, x_idx * 16 + a_idx * 4 + s_idx] = _logs(total)
        rows: list[list[float]] = full.tolist()
        return found, rows

    def _tag(self, found: list[bool], rows: list[list[float]], start: int, n: int) -> list[int]:
        """Viterbi exactly as CharacterBasedGenerativeModel.tag, incl. tie-breaking:
        state (prev tag a, tag s) keeps the first best predecessor in b/m/e/s order;
        an unknown char copies scores from the last predecessor; ties at the end go
        to the first state in (tag, prev tag) order. Works on rows[start:start+n]."""
        found = found[start : start + n]
        rows = rows[start : start + n]
        # Step 1: states (BOS, s).
        row = rows[0]
        v1 = [row[s] for s in range(4)] if found[0] else [0.0, 0.0, 0.0, 0.0]
        if n == 1:
            best = 0
            for s in range(1, 4):
                if v1[s] > v1[best]:
                    best = s
            return [best]
        # Step 2: states (a, s), from (BOS, a); V is indexed prev*4 + cur.
        row = rows[1]
        if found[1]:
            v = [v1[a] + row[a * 4 + s] for a in range(4) for s in range(4)]
        else:
            v = [v1[a] for a in range(4) for _s in range(4)]
        backs: list[list[int]] = []
        for i in range(2, n):
            if found[i]:
                row = rows[i]
                nv = [0.0] * 16
                bp = [0] * 16
                for a in range(4):
                    w0 = v[a]
                    w1 = v[4 + a]
                    w2 = v[8 + a]
                    w3 = v[12 + a]
                    for s in range(4):
                        k = a * 4 + s
                        best_p = w0 + row[k]
                        bx = 0
                        p = w1 + row[16 + k]
                        if p > best_p:
                            best_p = p
                            bx = 1
                        p = w2 + row[32 + k]
                        if p > best_p:
                            best_p = p
                            bx = 2
                        p = w3 + row[48 + k]
                        if p > best_p:
                            best_p = p
                            bx = 3
                        nv[k] = best_p
                        bp[k] = bx
                v = nv
            else:
                # stage[(pre.cur, (w, s))] is overwritten: the last pre (prev tag 's') wins.
                v = [v[12 + a] for a in range(4) for _s in range(4)]
                bp = [3] * 16
            backs.append(bp)
        # max(now) in snownlp's stage order: tag-major, then prev tag.
        best_k = 0
        best_v = v[0]
        for s in range(4):
            for a in range(4):
                k = a * 4 + s
                if v[k] > best_v:
                    best_v = v[k]
                    best_k = k
        tags = [0] * n
        a, s = divmod(best_k, 4)
        tags[n - 1] = s
        tags[n - 2] = a
        for i in range(n - 1, 1, -1):
            x = backs[i - 2][a * 4 + s]
            tags[i - 2] = x
            a, s = x, a
        return tags

    @staticmethod
    def _tags_to_words(sent: str, tags: list[int], words: list[str]) -> None:
        """snownlp.seg.seg.Seg.seg: turn b/m/e/s tags into words."""
        tmp = ""
        for ch, t in zip(sent, tags, strict=True):
            if t == 2:  # e
                words.append(tmp + ch)
                tmp = ""
            elif t == 0 or t == 3:  # b, s
                if tmp:
                    words.append(tmp)
                tmp = ch
            else:
                tmp += ch
        if tmp:
            words.append(tmp)

    def words(self, text: str) -> list[str]:
        """snownlp.seg.seg(text): CJK runs go through the HMM, the rest splits on spaces."""
        seg = self._seg or self._load()
        parts: list[str | list[str]] = []  # a CJK run, or the words of a non-CJK piece
        runs: list[str] = []
        for piece in _RE_ZH.split(text):
            s = piece.strip()
            if not s:
                continue
            if _RE_ZH.match(s):
                parts.append(s)
                runs.append(s)
            else:
                parts.append([w for w in (x.strip() for x in s.split()) if w])
        # Runs are scored in batches of ~_BATCH chars: one numpy pass per batch, and
        # bounded temporaries for very long texts.
        tagged: list[list[int]] = []
        i = 0
        while i < len(runs):
            j, size = i, 0
            while j < len(runs) and (j == i or size + len(runs[j]) <= _BATCH):
                size += len(runs[j])
                j += 1
            found, rows = self._log_probs(seg, runs[i:j])
            start = 0
            for run in runs[i:j]:
                tagged.append(self._tag(found, rows, start, len(run)))
                start += len(run)
            i = j
        words: list[str] = []
        k = 0
        for p in parts:
            if isinstance(p, str):
                self._tags_to_words(p, tagged[k], words)
                k += 1
            else:
                words += p
        return words

    # ------------------------------------------------------------------ scoring
    def score(self, text: str) -> float:
        """``SnowNLP(text).sentiments``: Bayes over the non-stopword words."""
        seg_words = self.words(text)
        stop = self._stop
        x = [w for w in seg_words if w not in stop]
        total = self._total
        tmp: list[float] = []
        for _name, ctotal, logs, unseen in self._classes:
            acc = math.log(ctotal) - math.log(total)
            for word in x:
                acc += logs.get(word, unseen)
            tmp.append(acc)
        ret: str | int = 0
        prob: float = 0
        for k, (name, _t, _l, _u) in enumerate(self._classes):
            now: float = 0
            try:
                for other in tmp:
                    now += math.exp(other - tmp[k])
                now = 1 / now
            except OverflowError:
                now = 0
            if now > prob:
                ret, prob = name, now
        if ret == "pos":
            return float(prob)
        return float(1 - prob)


if __name__ == "__main__":  # the model-build child process (see FastSentiment._load)
    _build_to_file(sys.argv[1], sys.argv[2])
