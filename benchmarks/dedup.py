"""Near-duplicates: what ``musictl tokenize --dedup group`` finds in ../shared/datasets, and what it costs.

    python benchmarks/dedup.py             # all of ../shared/datasets (about a minute); results/dedup.md/.json and
                                           # the numbers of docs/tokenize.md's near-duplicates section
    python benchmarks/dedup.py --smoke     # a small subset linked into a temporary folder: the pipeline end to end
    python benchmarks/dedup.py --render    # only rebuild dedup.md and the docs numbers from dedup.json

Everything comes from the user's path, ``python -m musictl tokenize`` (in a work folder of its own,
``$MUSICTL_BENCH_WORK/dedup``):

1. **Cost.** ``tokenize DATASETS -o WORK/<mode> --workers 2 --overwrite --dedup off|group``, ``--runs`` times each,
   alternating (off, group, off, group) so that a change in the machine's load hits both alike. Per run: the
   tokenize time of the summary line (the manifest's ``seconds``), the step after encoding (``dedup.seconds``),
   the process's wall and CPU seconds and its peak memory (the largest resident set of the process and its
   workers, from ``os.wait4``), and the 1-minute load average just before it.
2. **What it finds**, read from the last ``group`` run's ``duplicates.jsonl`` and both runs' ``index.jsonl``:
   groups by collection (the folder below the datasets: ``music21/<collection>``, else the first folder), within
   one collection or across several; how many groups the per-file split of ``--dedup off`` puts in more than one
   split, and how many after ``--dedup group`` (every piece's split compared: the manifest's ``moved`` checked);
   how many groups a byte hash finds (members with the same ``hash``, BLAKE2 of the file bytes); the members of
   every group in a collection with few groups (with each piece's length).
3. **POP909's 017 and 018**: their group and pair share, their shingle counts (from the tokens), their splits in
   POP909's standard split file, and ``tokenize pop909/midi --split-file splits.json --dedup group`` (one worker):
   its near-copy warning.
4. **Scale**: :func:`musictl.midi.dedup.similar_pairs` in a fresh single-threaded process on the group run's
   shingle sets once and ``--copies`` times over, each copy's hashes XORed with a constant of its own so that
   copies do not match each other (and the pairs found must be the copies times those found once); the seconds
   of the comparison alone (scipy loaded before) and the peak memory it adds (``ru_maxrss`` after minus before).

Only the tokenize timing runs use 2 workers; everything else runs in one process, one thread.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import cells, docs, paths, tables

SCRIPT = "benchmarks/dedup.py"
MODES = ("off", "group")
DOC = paths.ROOT / "docs" / "tokenize.md"
BLOCKS = ("found", "report", "cost")  # the docs blocks this script writes, each between its two markers
SINGLE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
EMOPIA_SONG = re.compile(r"^Q([1-4])_(.+)_[0-9]+\.mid$")  # quadrant, YouTube id
FEW_GROUPS = 3  # a collection key with this many groups or fewer has its groups listed member by member
SMOKE_PER_FOLDER = 25
SMOKE_EXTRA = ("pop909/midi/017.mid", "pop909/midi/018.mid")
NAMES = {"music21/oneills1850": "O'Neill's 1850", "music21/ryansMammoth": "Ryan's Mammoth",
         "music21/essenFolksong": "the Essen songs", "music21/palestrina": "Palestrina", "music21/bach": "Bach chorales",
         "nottingham": "Nottingham", "emopia": "EMOPIA", "pop909": "POP909", "pianist8": "Pianist8"}
PAIR_ROWS = {"pairs": "near-duplicate pairs", "byte_identical": "byte-identical files",
             "bytes_differ": "files that differ in bytes", "transposed": "... transposed",
             "octave": "... of those by whole octaves", "tempo": "... another tempo", "metre": "... another metre",
             "same_tokens": "... the same tokens", "none_of_these": "... none of these",
             "no_shared_run": "... no run of 12 steps shared"}
QUESTION = ("Does `tokenize --dedup group` find the transposed and re-timed copies a byte hash misses and keep each "
            "group in one split, and at what cost in time and memory?")
COMPARISON = ("on all of ../shared/datasets: the near-duplicate groups found against the groups of byte-identical files "
              "(the index's `hash`), the groups a per-file split puts in more than one split with `--dedup off` and with "
              "`group`; and the tokenize time (the summary line) and peak memory with `--dedup off` and `group`, "
              "two runs of each")


# ----- running tokenize ------------------------------------------------------------------------------
class Bench:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.work = Path(args.work)
        self.root = Path(args.datasets)
        config = {"smoke": args.smoke, "runs": args.runs, "copies": args.copies, "workers": 2,
                  "datasets": paths.show(str(self.root), self.work)}
        # the machine (paths.machine imports torch) is recorded after the runs: a child forked from a large
        # parent counts the parent's pages in its peak memory
        self.results = cells.Results(Path(args.out) / "dedup.json", SCRIPT, config, command=command_line(args),
                                     fresh=True)
        self.data = self.results.data

    def shown(self, text: str) -> str:
        return paths.show(text, self.work)

    def tokenize(self, *args: str, env: dict | None = None) -> dict:
        """``python -m musictl tokenize ARGS``, its output kept; wall and CPU seconds, peak memory (the largest
        resident set of the process and its workers), the stderr lines; the command recorded."""
        shown = "musictl tokenize " + self.shown(shlex.join(args))
        print(f"$ {shown}", file=sys.stderr, flush=True)
        load = os.getloadavg()[0]
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            started = time.perf_counter()
            process = subprocess.Popen([sys.executable, "-m", "musictl", "tokenize", *args], cwd=paths.ROOT, stdout=out,
                                       stderr=err, env={**os.environ, "COLUMNS": "10000", **(env or {})}, text=True)
            _, status, usage = os.wait4(process.pid, 0)
            wall = time.perf_counter() - started
            process.returncode = os.waitstatus_to_exitcode(status)
            err.seek(0)
            stderr = err.read()
        if process.returncode:
            print(stderr[-3000:], file=sys.stderr)
            raise SystemExit(f"error: failed (exit {process.returncode}): {shown}")
        self.results.record(shown, wall)
        return {"wall_seconds": round(wall, 2), "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 2),
                "peak_mib": round(usage.ru_maxrss / 1024, 1), "load": round(load, 2),
                "lines": [self.shown(line.strip()) for line in stderr.splitlines() if line.strip()]}


def command_line(args) -> str:
    return " ".join(["python", SCRIPT, *map(shlex.quote, args.argv)])


def stage_smoke(folder: Path) -> Path:
    """The first few files (by name) of every folder of the datasets that holds MIDI files, and POP909's 017 and
    018, linked into ``folder`` with the same layout; POP909's split file beside them."""
    shared = paths.require_datasets()
    chosen: set[Path] = {shared / extra for extra in SMOKE_EXTRA}
    by_folder: dict[Path, list[Path]] = defaultdict(list)
    for f in shared.rglob("*"):
        if f.suffix.lower() in (".mid", ".midi"):
            by_folder[f.parent].append(f)
    for files in by_folder.values():
        chosen.update(sorted(files)[:SMOKE_PER_FOLDER])
    for f in chosen:
        target = folder / f.relative_to(shared)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(f)
    shutil.copy(shared / "pop909" / "splits.json", folder / "pop909" / "splits.json")
    return folder


def cost_runs(b: Bench) -> None:
    """``--runs`` runs of ``tokenize --dedup off`` and ``group``, alternating, each a cell."""
    for run in range(b.args.runs):
        for mode in MODES:
            out = b.work / mode
            measured = b.tokenize(str(b.root), "-o", str(out), "--workers", "2", "--overwrite", "--dedup", mode)
            metrics = json.loads((out / "manifest.json").read_text())["metrics"]
            dedup = metrics.get("dedup")
            b.results.put({"part": "tokenize", "dedup": mode, "run": run},
                          {**{k: v for k, v in measured.items() if k != "lines"}, "seconds": metrics["seconds"],
                           "files": metrics["files"], "ok": metrics["ok"], "notes": metrics["notes"],
                           "dedup_seconds": dedup["seconds"] if dedup else None,
                           "report": [line for line in measured["lines"] if line.startswith("near-duplicates")]})


# ----- what --dedup group found -------------------------------------------------------------------
def read_index(tokens: Path) -> list[dict]:
    return [json.loads(line) for line in (tokens / "index.jsonl").read_text().splitlines() if line.strip()]


def parts_below(path: str, root: Path) -> tuple[str, ...] | None:
    """A piece's path parts below this run's datasets link ``root`` or the datasets themselves (either way as
    written or resolved); None when it lies below neither."""
    for base in (root, paths.DATASETS):
        for candidate in (Path(path), Path(path).resolve()):
            try:
                return candidate.relative_to(base).parts
            except ValueError:
                continue
    return None


def collection(path: str, root: Path) -> str:
    """The collection of a piece: ``music21/<collection>`` below the datasets, else the first folder."""
    parts = parts_below(path, root)
    if parts is None:
        raise SystemExit(f"error: {path} is not below {root}: the index does not come from this run")
    return "/".join(parts[:2]) if parts[0] == "music21" else parts[0]


def name_of(path: str, root: Path) -> str:
    """A piece's path below its collection's folder and a ``midi`` folder (``Hisaishi/x.mid``), as the page names it."""
    parts = parts_below(path, root)
    if parts is None:
        return Path(path).name
    parts = parts[2:] if parts[0] == "music21" else parts[1:]
    return "/".join(parts[1:] if parts[0] == "midi" else parts)


def key_of(collections: list[str]) -> str:
    found = sorted(set(collections))
    return f"within {found[0]}" if len(found) == 1 else "across " + " + ".join(found)


def melody(tokens) -> tuple:
    """The highest voice as :mod:`musictl.midi.dedup` reads it: its pitch ids (repeated pitches left out) and
    its steps (:func:`~musictl.midi.dedup.melody_intervals`); step ``k`` leads from pitch ``k`` to ``k + 1``."""
    import numpy as np

    from musictl import constants as C
    from musictl.midi.dedup import melody_intervals

    steps = melody_intervals(tokens)
    rows = tokens[(tokens.min(axis=1) >= C.N_SPECIAL) & (tokens[:, C.INSTRUMENT] != C.DRUM_PROGRAM + C.N_SPECIAL)]
    if len(rows) == 0:
        return np.zeros(0, np.int64), steps
    onset = rows[:, C.BAR].astype(np.int64) * 65536 + rows[:, C.POSITION]
    first = int(rows[: int(np.argmax(onset != onset[0])) or len(rows), C.PITCH].max())
    return first + np.r_[0, np.cumsum(steps, dtype=np.int64)], steps


def compare_pair(a, b) -> dict:
    """How two near-duplicate pieces' tokens differ: the melody's transposition (semitones, the most common pitch
    offset over the runs of 12 steps they share; None when none is shared), whether their most common tempo and
    time signature differ, whether the token rows are the same."""
    import numpy as np

    from musictl import constants as C
    from musictl.midi.dedup import SHINGLE

    (pa, sa), (pb, sb) = melody(a), melody(b)
    runs: dict[bytes, int] = {}
    for j in range(len(sb) - SHINGLE + 1):
        runs.setdefault(sb[j : j + SHINGLE].tobytes(), j)
    offsets = Counter(int(pa[i] - pb[runs[key]]) for i in range(len(sa) - SHINGLE + 1)
                      if (key := sa[i : i + SHINGLE].tobytes()) in runs)
    common = lambda t, field: int(np.bincount(t[:, field]).argmax())  # noqa: E731
    return {"transposed": offsets.most_common(1)[0][0] if offsets else None,
            "tempo": common(a, C.TEMPO) != common(b, C.TEMPO),
            "metre": common(a, C.TIME_SIGNATURE) != common(b, C.TIME_SIGNATURE),
            "same_tokens": a.shape == b.shape and bool(np.array_equal(a, b))}


def pair_kinds(tokens: Path, groups: list[dict], by_path: dict[str, dict], root: Path) -> tuple[dict, dict]:
    """Every near-duplicate pair of files that differ in bytes, compared (:func:`compare_pair`): counts over all
    of them, and the transposed ones per collection key."""
    from musictl.midi.tokens import TokenCorpus

    corpus = TokenCorpus.open(tokens)
    kinds = Counter()
    transposed_by_key: Counter = Counter()
    for g in groups:
        members = [m["path"] for m in g["members"]]
        key = key_of([collection(p, root) for p in members])
        for i, j, _ in g["pairs"]:
            first, second = by_path[members[int(i)]], by_path[members[int(j)]]
            kinds["pairs"] += 1
            if first["hash"] == second["hash"]:
                kinds["byte_identical"] += 1
                continue
            found = compare_pair(corpus.piece_tokens(first["id"]), corpus.piece_tokens(second["id"]))
            kinds["bytes_differ"] += 1
            shift = found["transposed"]
            kinds["transposed"] += bool(shift)
            kinds["octave"] += bool(shift) and shift % 12 == 0
            kinds["no_shared_run"] += shift is None
            kinds["tempo"] += found["tempo"]
            kinds["metre"] += found["metre"]
            kinds["same_tokens"] += found["same_tokens"]
            kinds["none_of_these"] += not (shift or found["tempo"] or found["metre"] or found["same_tokens"])
            transposed_by_key[key] += bool(shift)
    return dict(kinds), dict(transposed_by_key)


def analyse(b: Bench) -> None:
    """What the last group run found (duplicates.jsonl, both indexes), into the JSON's ``found`` section."""
    group_dir, off_dir = b.work / "group", b.work / "off"
    groups = [json.loads(line) for line in (group_dir / "duplicates.jsonl").read_text().splitlines() if line.strip()] \
        if (group_dir / "duplicates.jsonl").is_file() else []
    index_group, index_off = read_index(group_dir), read_index(off_dir)
    split_off = {row["path"]: row["split"] for row in index_off}
    split_group = {row["path"]: row["split"] for row in index_group}
    by_path = {row["path"]: row for row in index_group}
    metrics = json.loads((group_dir / "manifest.json").read_text())
    rows: dict[str, dict] = {}
    listed = []
    for g in groups:
        members = [m["path"] for m in g["members"]]
        key = key_of([collection(p, b.root) for p in members])
        row = rows.setdefault(key, {"groups": 0, "pieces": 0, "sizes": Counter(), "split_apart_off": 0,
                                    "split_apart_group": 0, "byte_identical": 0})
        row["groups"] += 1
        row["pieces"] += len(members)
        row["sizes"][len(members)] += 1
        row["split_apart_off"] += len({split_off[p] for p in members}) > 1
        row["split_apart_group"] += len({split_group[p] for p in members}) > 1
        row["byte_identical"] += len({by_path[p]["hash"] for p in members}) == 1
    for key, row in rows.items():
        row["sizes"] = {str(k): v for k, v in sorted(row["sizes"].items())}
        if row["groups"] <= FEW_GROUPS:
            listed.append(key)
    details = []
    for g in groups:
        members = [m["path"] for m in g["members"]]
        if key_of([collection(p, b.root) for p in members]) in listed:
            details.append({"key": key_of([collection(p, b.root) for p in members]),
                            "members": [{"name": name_of(p, b.root), "minutes": round(by_path[p]["seconds"] / 60, 1),
                                         "notes": by_path[p]["notes"], "split_off": split_off[p],
                                         "split_group": split_group[p]} for p in members],
                            "pairs": g["pairs"]})
    emopia = []
    for d in details:
        songs = [EMOPIA_SONG.match(Path(m["name"]).name) for m in d["members"]]
        if d["key"] == "within emopia" and all(songs):
            emopia.append({"songs": len({s.group(2) for s in songs}), "quadrants": sorted({s.group(1) for s in songs})})
    kinds, transposed = pair_kinds(group_dir, groups, by_path, b.root)
    for key, row in rows.items():
        row["transposed_pairs"] = transposed.get(key, 0)
    hashes = Counter(row["hash"] for row in index_group)
    in_groups = {m["path"] for g in groups for m in g["members"]}
    identical = [h for h, n in hashes.items() if n > 1]
    identical_paths = {row["path"] for row in index_group if hashes[row["hash"]] > 1}
    b.data["found"] = {
        "files": metrics["metrics"]["files"], "ok": metrics["metrics"]["ok"], "notes": metrics["metrics"]["notes"],
        "parameters": {k: metrics["parameters"].get(k) for k in ("split", "seed", "dedup", "dedup_threshold")},
        "groups": len(groups), "pieces": len(in_groups), "moved": metrics["metrics"]["dedup"]["moved"],
        "moved_counted": sum(split_off[p] != split_group[p] for p in split_group),
        "split_apart_off": sum(r["split_apart_off"] for r in rows.values()),
        "split_apart_group": sum(r["split_apart_group"] for r in rows.values()),
        "byte_groups": len(identical), "byte_pieces": len(identical_paths),
        "byte_pieces_in_groups": len(identical_paths & in_groups),
        "groups_byte_identical": sum(r["byte_identical"] for r in rows.values()),
        "pairs": kinds, "collections": dict(sorted(rows.items(), key=lambda kv: (-kv[1]["groups"], kv[0]))),
        "listed": details, "emopia_songs": emopia}


def pop909_check(b: Bench) -> None:
    """POP909's 017 and 018: their group, shares, shingle counts and standard splits; the standard split file's
    near-copy report (``tokenize pop909/midi --split-file splits.json --dedup group``, one worker)."""
    from musictl.midi.dedup import corpus_shingles
    from musictl.midi.tokens import TokenCorpus

    pair = ("017.mid", "018.mid")
    group_dir = b.work / "group"
    corpus = TokenCorpus.open(group_dir)
    pieces = {Path(p.path).name: p for p in corpus.pieces if collection(p.path, b.root) == "pop909"
              and Path(p.path).name in pair}
    if len(pieces) != 2:
        raise SystemExit("error: POP909's 017.mid and 018.mid are not both in the datasets; check ../shared/datasets")
    sizes = dict(zip(pair, (len(s) for s in corpus_shingles(corpus, [pieces[n] for n in pair]))))
    grouped = None
    for line in (group_dir / "duplicates.jsonl").read_text().splitlines():
        g = json.loads(line)
        names = [Path(m["path"]).name if collection(m["path"], b.root) == "pop909" else None for m in g["members"]]
        if set(pair) <= set(names):
            grouped = {"members": [name_of(m["path"], b.root) for m in g["members"]], "pairs": g["pairs"],
                       "split": sorted({m["split"] for m in g["members"]})}
    split_file = b.root / "pop909" / "splits.json"
    standard = json.loads(split_file.read_text())
    where = {name: [s for s in ("train", "valid", "test") if name in standard.get(s, [])] for name in pair}
    out = b.work / "pop909-standard"
    measured = b.tokenize(str(b.root / "pop909" / "midi"), "-o", str(out), "--split-file", str(split_file),
                          "--workers", "1", "--overwrite", "--dedup", "group", env=SINGLE_THREAD)
    dedup = json.loads((out / "manifest.json").read_text())["metrics"]["dedup"]
    b.data["pop909"] = {"shingles": sizes, "grouped": grouped, "standard_split": where,
                        "standard": {"groups": dedup["groups"], "pieces_in_groups": dedup["pieces_in_groups"],
                                     "near_copies": dedup["near_copies"],
                                     "lines": [line for line in measured["lines"] if line.startswith("near-duplicates")
                                               or (line.startswith("warning:") and "near-copies" in line)]}}


# ----- scale -----------------------------------------------------------------------------------------
def scale_child(tokens: Path, copies: int) -> dict:
    """In this (fresh, single-threaded) process: the shingle sets of ``tokens``'s pieces ``copies`` times over,
    each copy's hashes XORed with a constant of its own; :func:`similar_pairs` timed; the peak memory it adds."""
    import gc
    import resource
    import tracemalloc

    import numpy as np
    import scipy.sparse  # noqa: F401  (loaded before the clock starts: the comparison alone is timed)

    from musictl.midi.dedup import corpus_shingles, duplicate_groups, similar_pairs
    from musictl.midi.tokens import TokenCorpus

    once = corpus_shingles(TokenCorpus.open(tokens))
    sets = list(once)
    for copy in range(1, copies):
        mask = np.uint64(np.random.default_rng(copy).integers(1, 2**63))
        sets += [np.sort(s ^ mask) for s in once]
    shingles = int(sum(len(s) for s in sets))
    gc.collect()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    pairs = similar_pairs(sets)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    del pairs
    gc.collect()
    tracemalloc.start()  # a second, untimed pass: the peak of what the comparison allocates (numpy arrays included)
    base = tracemalloc.get_traced_memory()[0]
    pairs = similar_pairs(sets)
    traced = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return {"pieces": len(sets), "shingles": shingles, "pairs": len(pairs),
            "groups": len(duplicate_groups(len(sets), pairs)), "seconds": round(seconds, 3),
            "peak_before_mib": round(before / 1024, 1), "peak_after_mib": round(after / 1024, 1),
            "traced_peak_mib": round(traced / 2**20, 1), "traced_bytes_per_shingle": round(traced / max(1, shingles), 1),
            "set_bytes_per_shingle": int(sets[0].itemsize)}


def scale_runs(b: Bench) -> None:
    for run in range(b.args.runs):
        for copies in sorted({1, b.args.copies}):
            command = [sys.executable, SCRIPT, "--scale-child", str(b.work / "group"), "--copies", str(copies)]
            print(f"$ python {SCRIPT} --scale-child WORK/group --copies {copies}", file=sys.stderr, flush=True)
            done = subprocess.run(command, cwd=paths.ROOT, capture_output=True, text=True,
                                  env={**os.environ, **SINGLE_THREAD})
            if done.returncode:
                print(done.stderr[-3000:], file=sys.stderr)
                raise SystemExit(f"error: the scale test failed (exit {done.returncode}) at {copies} copies")
            b.results.put({"part": "scale", "copies": copies, "run": run}, json.loads(done.stdout))


# ----- the tables --------------------------------------------------------------------------------------
def span(values: list[float], digits: int = 1, unit: str = "") -> str:
    low, high = min(values), max(values)
    f = f"{{:.{digits}f}}".format
    return f"{f(low)}{unit}" if f(low) == f(high) else f"{f(low)}-{f(high)}{unit}"


def summarise(data: dict) -> dict:
    runs = {mode: cells.select(data["cells"], part="tokenize", dedup=mode) for mode in MODES}
    cost = {mode: {"seconds": [c["seconds"] for c in rs], "wall": [c["wall_seconds"] for c in rs],
                   "cpu": [c["cpu_seconds"] for c in rs], "peak_mib": [c["peak_mib"] for c in rs],
                   "dedup_seconds": [c["dedup_seconds"] for c in rs if c["dedup_seconds"] is not None],
                   "load": [c["load"] for c in rs]} for mode, rs in runs.items()}
    mean = lambda xs: sum(xs) / len(xs) if xs else None  # noqa: E731
    ratio = mean(cost["group"]["seconds"]) / mean(cost["off"]["seconds"])
    scale = {}
    for c in cells.select(data["cells"], part="scale"):
        scale.setdefault(c["settings"]["copies"], []).append(c)
    once, most = scale.get(1, []), scale.get(max(scale), []) if scale else []
    copies = max(scale) if scale else None
    return {"cost": cost, "ratio": round(ratio, 2), "extra_seconds": round(mean(cost["group"]["seconds"])
                                                                            - mean(cost["off"]["seconds"]), 2),
            "scale": {str(k): v for k, v in sorted(scale.items())}, "copies": copies,
            "pairs_scale": bool(once and most and all(c["pairs"] == copies * once[0]["pairs"] for c in most))}


def differ(k: dict) -> str:
    """How the near-duplicate pairs whose files differ in bytes differ, in words."""
    return (f"of the {k.get('bytes_differ', 0):,} near-duplicate pairs whose files differ in bytes, {k.get('transposed', 0):,} "
            f"are transposed ({k.get('octave', 0):,} of them by whole octaves), {k.get('tempo', 0):,} in another tempo, "
            f"{k.get('metre', 0):,} in another metre, {k.get('same_tokens', 0):,} the same tokens and "
            f"{k.get('none_of_these', 0):,} none of these")


def collection_name(key: str) -> str:
    kind, _, rest = key.partition(" ")
    names = [NAMES.get(c, c) for c in rest.split(" + ")]
    return f"within {names[0]}" if kind == "within" else "across " + " and ".join([", ".join(names[:-1]), names[-1]]
                                                                                   if len(names) > 2 else names)


def answer(data: dict) -> str:
    f, t = data["found"], data["table"]
    cost = t["cost"]
    retimed = sum(f["pairs"].get(k, 0) for k in ("transposed", "tempo", "metre"))
    found = f["groups"] > f["groups_byte_identical"] and retimed > 0 and f["split_apart_group"] == 0
    return (f"{'yes' if found else 'no'}. `--dedup group` finds {f['groups']:,} groups of {f['pieces']:,} pieces; "
            f"{f['groups'] - f['groups_byte_identical']:,} of them are not all byte-identical files, which a byte hash "
            f"cannot group (it finds {f['byte_groups']:,} groups of identical files in all, {f['byte_pieces']:,} pieces); "
            f"{differ(f['pairs'])}. "
            f"A per-file split puts {f['split_apart_off']:,} of the groups in more than one split, `--dedup group` "
            f"{f['split_apart_group']:,} ({f['moved']:,} pieces moved). Tokenizing took "
            f"{span(cost['off']['seconds'])} s with `off` and {span(cost['group']['seconds'])} s with `group` "
            f"({t['ratio']:.2f}x), of which {span(cost['group']['dedup_seconds'])} s is the step after encoding; peak "
            f"memory {span(cost['off']['peak_mib'], 0)} and {span(cost['group']['peak_mib'], 0)} MiB.")


def render(data: dict) -> str:
    """dedup.md, from dedup.json only."""
    f, t, config, p = data["found"], data["table"], data["config"], data.get("pop909", {})
    rows = list(f["collections"].items())
    exploratory = len(rows) + len(PAIR_ROWS) + len(t["scale"]) + 1
    lines = ["# Near-duplicates: what `tokenize --dedup group` finds and what it costs", "",
             *tables.planned(QUESTION, COMPARISON, answer(data), exploratory=exploratory, intervals=False),
             f"Made by `{data['command']}` on {data['machine']}"
             + (" (**--smoke: a small subset, the numbers mean nothing**)" if config["smoke"] else "")
             + "; every number comes from benchmarks/results/dedup.json, rebuilt by "
               "`python benchmarks/dedup.py --render`. No intervals: the counts are exact, and the timings are runs "
               "listed one by one.", "",
             f"Input: {config['datasets']}: {f['files']:,} files, {f['ok']:,} tokenized, {f['notes']:,} notes; split "
             f"{f['parameters']['split']}, seed {f['parameters']['seed']}, threshold {f['parameters']['dedup_threshold']}.",
             "", "## What it finds, by collection", "",
             "A group's collections: the folder below the datasets (`music21/<collection>`, else the first folder). "
             "\"Split apart\": the group's pieces lie in more than one split; \"byte-identical\": every member has the "
             "same file hash.", ""]
    lines += tables.table(["collections", "groups", "pieces", "group sizes (size: groups)", "split apart, --dedup off",
                           "split apart, --dedup group", "byte-identical groups", "transposed pairs"],
                          [[k, r["groups"], r["pieces"], ", ".join(f"{s}: {n}" for s, n in r["sizes"].items()),
                            r["split_apart_off"], r["split_apart_group"], r["byte_identical"], r["transposed_pairs"]]
                           for k, r in rows]
                          + [["**all**", f["groups"], f["pieces"], "", f["split_apart_off"], f["split_apart_group"],
                              f["groups_byte_identical"], f["pairs"].get("transposed", 0)]], "lrrlrrrr")
    lines += ["", f"Pieces whose split differs between `--dedup off` and `group`: {f['moved_counted']:,} (the manifest's "
              f"`moved`: {f['moved']:,}). Byte hash: {f['byte_groups']:,} groups of identical files ({f['byte_pieces']:,} "
              f"pieces), {f['byte_pieces_in_groups']:,} of those pieces in a near-duplicate group.", "",
              "## How the near-duplicate pairs differ", "",
              "Every near-duplicate pair (two members whose share passed the threshold) whose files differ in bytes, "
              "compared on their tokens: transposed = the melody's most common pitch offset over the runs of 12 steps "
              "they share is not 0; tempo / metre = the pieces' most common tempo / time signature differ; same tokens "
              "= the token rows are equal (the bytes differ elsewhere). A pair can be several of these; what \"none of these\" "
              "holds (other voices, other note values, an excerpt) is not told apart here.", ""]
    k = f["pairs"]
    lines += tables.table(["pairs", "count"], [[label, k.get(name, 0)] for name, label in PAIR_ROWS.items()])
    lines += ["",
              f"## The groups of collections with {FEW_GROUPS} groups or fewer", ""]
    lines += tables.table(["collections", "members (minutes, notes)", "split off -> group", "pairs (member, member, share)"],
                          [[d["key"], "<br>".join(f"{m['name']} ({m['minutes']:.1f}, {m['notes']:,})" for m in d["members"]),
                            "<br>".join(f"{m['split_off']} -> {m['split_group']}" for m in d["members"]),
                            ", ".join(f"({a}, {b_}, {s:.2f})" for a, b_, s in d["pairs"])] for d in f["listed"]], "llll")
    if f["emopia_songs"]:
        lines += ["", "EMOPIA groups: " + "; ".join(f"{e['songs']} song id{'s' * (e['songs'] != 1)}, quadrants "
                                                     f"{'/'.join(e['quadrants'])}" for e in f["emopia_songs"]) + "."]
    if p:
        lines += ["", "## POP909's 017 and 018", ""]
        grouped = p["grouped"]
        near = " and ".join(f"{v['shared']} of {v['files']} {k}" for k, v in p["standard"]["near_copies"].items())
        near += " pieces near-copies of training pieces"
        where = {name: "/".join(found) or "no split" for name, found in p["standard_split"].items()}
        said = (f"yes: {', '.join(grouped['members'])}, pairs (member, member, share) {grouped['pairs']}, split "
                f"{'/'.join(grouped['split'])}" if grouped else "**no**")
        lines += [f"One group: {said}. Shingles: 017 {p['shingles']['017.mid']}, 018 {p['shingles']['018.mid']}. "
                  f"The standard split (pop909/splits.json) has 017 in {where['017.mid']} and 018 in {where['018.mid']}. "
                  f"With it (`--split-file`, the file decides the splits), `--dedup group` reports {near}:", "",
                  "```", *p["standard"]["lines"], "```"]
    lines += ["", "## Cost: `tokenize --workers 2`, all of the datasets", "",
              "Seconds: the summary line (the manifest's `seconds`); after encoding: `dedup.seconds` (loading scipy, the "
              "comparison, new splits, the index rewritten); wall and CPU: the whole process (its workers' CPU "
              "included); peak: the largest resident set of the process and its workers; load: the 1-minute load "
              "average just before the run, on a machine shared with other work.", ""]
    lines += tables.table(["--dedup", "run", "seconds", "after encoding", "wall s", "CPU s", "peak MiB", "load"],
                          [[c["settings"]["dedup"], c["settings"]["run"], f"{c['seconds']:.2f}",
                            "-" if c["dedup_seconds"] is None else f"{c['dedup_seconds']:.2f}", f"{c['wall_seconds']:.2f}",
                            f"{c['cpu_seconds']:.2f}", f"{c['peak_mib']:.0f}", f"{c['load']:.2f}"]
                           for c in sorted(cells.select(data["cells"], part="tokenize"),
                                           key=lambda c: (c["settings"]["run"], MODES.index(c["settings"]["dedup"])))],
                          "lrrrrrrr")
    lines += ["", f"Mean `group` minus `off`: {t['extra_seconds']:+.2f} s ({t['ratio']:.2f}x).", "",
              "## Scale: `similar_pairs` on the shingle sets, once and many times over", "",
              "Each copy's hashes XORed with a constant of its own, so copies do not match each other; one process, one "
              "thread, scipy loaded before the clock starts. Added peak: `ru_maxrss` after the comparison minus before "
              "(the sets already built; the peak before counts the pages of the token array read to make the sets, so "
              "this can read 0); traced: the peak of what the comparison allocates (tracemalloc, in a second, untimed "
              "pass), and that per shingle.", ""]
    lines += tables.table(["copies", "run", "pieces", "shingles", "pairs", "groups", "seconds", "added peak RSS MiB",
                           "traced peak MiB", "traced bytes per shingle"],
                          [[c["settings"]["copies"], c["settings"]["run"], f"{c['pieces']:,}", f"{c['shingles']:,}",
                            f"{c['pairs']:,}", f"{c['groups']:,}", f"{c['seconds']:.2f}",
                            f"{c['peak_after_mib'] - c['peak_before_mib']:.0f}", f"{c['traced_peak_mib']:.0f}",
                            f"{c['traced_bytes_per_shingle']:.1f}"]
                           for k in t["scale"] for c in t["scale"][k]])
    lines += ["", f"Pairs found at {t['copies']} copies = {t['copies']} x the pairs found once: "
              f"{'yes' if t['pairs_scale'] else '**no**'}.", "",
              *tables.commands(data["commands"], note="; WORK = the benchmark's work folder")]
    return "\n".join(lines)


# ----- docs/tokenize.md ---------------------------------------------------------------------------------
def doc_blocks(data: dict) -> dict[str, str]:
    """The three numbered passages of docs/tokenize.md's near-duplicates section, from dedup.json only."""
    f, t, p = data["found"], data["table"], data["pop909"]
    parts = []
    for key, row in f["collections"].items():
        sizes = row["sizes"]
        what = f"{row['groups']} {'pair' if set(sizes) == {'2'} else 'group'}{'s' * (row['groups'] != 1)}"
        parts.append(f"{what} {collection_name(key)}")
    grouped = p["grouped"]
    listed = [d for d in f["listed"] if d["key"] == "within pianist8"]
    longest = []
    for d in listed:
        at = max(range(len(d["members"])), key=lambda i: d["members"][i]["minutes"])
        top = d["members"][at]
        holds = "holds" if all(at in pair[:2] for pair in d["pairs"]) else "is in one group with"
        longest.append(f"`{top['name']}` ({top['minutes']:.0f} minutes) {holds} {len(d['members']) - 1} other "
                       f"file{'s' * (len(d['members']) != 2)} of its folder")
    found = (f"All of `../shared/datasets` ({f['files']:,} files) holds {f['groups']:,} groups of {f['pieces']:,} pieces: "
             + ", ".join(parts) + "."
             + (f" In Pianist8, {'; '.join(longest)}." if longest else "")
             + (f" EMOPIA's groups are clips of one song in two quadrants ({len(f['emopia_songs'])} songs)."
                if f["emopia_songs"] and all(e["songs"] == 1 and len(e["quadrants"]) == 2 for e in f["emopia_songs"]) else "")
             + f" {f['groups_byte_identical']} of the groups consist of byte-identical files (a byte hash finds "
               f"{f['byte_groups']} groups of identical files in all; {f['byte_pieces_in_groups']} of their {f['byte_pieces']} "
               "pieces are in near-duplicate groups); "
               f"{differ(f['pairs'])} (most common tempo and time signature compared)."
             + (f" POP909's standard split has `018.mid` in {p['standard_split']['018.mid'][0]} and `017.mid` in "
                f"{p['standard_split']['017.mid'][0]}; they are one group, and {grouped['pairs'][0][2]:.0%} of the shingles "
                f"of the smaller melody ({min(p['shingles'].values())} shingles) lie in the other's."
                if grouped and all(p["standard_split"].values()) else "")
             + f" A per-file split (seed {f['parameters']['seed']}) puts the pieces of {f['split_apart_off']} of those "
               f"{f['groups']} groups in different splits; `--dedup group` puts {f['split_apart_group']}.")
    near = p["standard"]["near_copies"]
    report = ("On all of `../shared/datasets` (`tokenize ../shared/datasets --dedup group`):\n```\n"
              + "\n".join(r.replace("WORK/group", "WORKDIR/tokens") for r in
                          cells.select(data["cells"], part="tokenize", dedup="group")[0]["report"])
              + "\n```\nand on POP909 with its standard split file (`tokenize ../shared/datasets/pop909/midi --split-file "
                "../shared/datasets/pop909/splits.json`), where the file decides the splits"
              + f" ({near['test']['shared']} of {near['test']['files']} test and {near['valid']['shared']} of "
                f"{near['valid']['files']} valid pieces near-copies of training pieces):\n```\n"
              + "\n".join(line.replace("WORK/pop909-standard", "WORKDIR/tokens") for line in p["standard"]["lines"])
              + "\n```")
    cost, scale, copies = t["cost"], t["scale"], t["copies"]
    once, most = scale.get("1", []), scale.get(str(copies), [])
    cost_text = (f"**Cost.** Measured by `{data['command']}` on {data['machine']}, on all of `../shared/datasets` ({f['files']:,} "
                 f"files, {f['notes'] / 1e6:.2f} million notes), `tokenize --workers 2 --dedup off` and `group`, "
                 f"{len(cost['off']['seconds'])} runs of each (page: `benchmarks/results/dedup.md`): tokenizing took "
                 f"{span(cost['off']['seconds'])} s with `off` and {span(cost['group']['seconds'])} s with `group` (the "
                 f"summary line; 1-minute load average {span(cost['off']['load'] + cost['group']['load'], 1)} on these 2 "
                 f"shared cores; CPU seconds of the process and its workers {span(cost['off']['cpu'])} and "
                 f"{span(cost['group']['cpu'])}), of which {span(cost['group']['dedup_seconds'])} s is the step after encoding "
                 "(`dedup.seconds`: loading scipy, the comparison, new splits, the index rewritten); the rest is the "
                 f"shingles, computed by the workers beside the tokens. Peak memory {span(cost['off']['peak_mib'], 0)} "
                 f"MiB and {span(cost['group']['peak_mib'], 0)} MiB. Scale (`musictl.midi.dedup.similar_pairs`, one "
                 f"thread): these shingle sets ({once[0]['pieces']:,} pieces, {once[0]['shingles'] / 1e6:.2f} million "
                 f"shingles) compare in {span([c['seconds'] for c in once], 2)} s; {copies} times over, each copy's "
                 f"hashes changed so that copies do not match ({most[0]['pieces']:,} pieces, "
                 f"{most[0]['shingles'] / 1e6:.1f} million shingles), in {span([c['seconds'] for c in most], 2)} s with "
                 f"{span([c['traced_peak_mib'] for c in most], 0)} MiB allocated at the peak by the comparison "
                 f"({span([c['traced_bytes_per_shingle'] for c in most], 0)} bytes per shingle, on top of the sets' own "
                 f"{most[0]['set_bytes_per_shingle']}; "
                 f"{span([c['peak_after_mib'] - c['peak_before_mib'] for c in most], 0)} MiB more peak resident memory), "
                 f"finding {copies} times the pairs found once: {'yes' if t['pairs_scale'] else 'no'}.")
    return {"found": wrap(found), "report": report, "cost": wrap(cost_text)}


def wrap(paragraph: str) -> str:
    return textwrap.fill(paragraph, width=105, break_long_words=False, break_on_hyphens=False)


def write_doc(data: dict) -> None:
    """The numbered passages into docs/tokenize.md, each in its block (:mod:`harness.docs`)."""
    for block, body in doc_blocks(data).items():
        docs.replace_block(DOC, f"dedup {block}", "benchmarks/dedup.py", body)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=2, help="runs of each tokenize mode and scale size")
    parser.add_argument("--copies", type=int, default=5, help="the scale test's copies of the shingle sets")
    parser.add_argument("--work", default=None, help="work folder [default: $MUSICTL_BENCH_WORK or "
                                                     "~/.cache/musictl-bench, /dedup]")
    parser.add_argument("--out", default=None, help="folder of dedup.json/.md [default: benchmarks/results]")
    parser.add_argument("--render", action="store_true", help="only rebuild dedup.md and the docs numbers from the JSON")
    parser.add_argument("--smoke", action="store_true", help="a small subset, one run, into a temporary folder")
    parser.add_argument("--scale-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.argv = list(argv if argv is not None else sys.argv[1:])
    if args.scale_child:
        print(json.dumps(scale_child(Path(args.scale_child), args.copies)))
        return
    if args.runs < 1 or args.copies < 2:
        raise SystemExit("error: --runs must be at least 1 and --copies at least 2")
    if args.smoke:
        temporary = Path(tempfile.mkdtemp(prefix="dedup-smoke-"))
        args.work, args.out, args.runs = args.work or str(temporary), args.out or str(temporary), 1
        args.datasets = str(stage_smoke(temporary / "datasets"))
    else:
        args.datasets = str(paths.require_datasets())
    args.work = args.work or str(paths.work_folder("dedup"))
    args.out = args.out or str(paths.RESULTS)
    json_path, md_path = Path(args.out) / "dedup.json", Path(args.out) / "dedup.md"
    if args.render:
        data = cells.load(json_path)
    else:
        b = Bench(args)
        started = time.perf_counter()
        cost_runs(b)
        analyse(b)
        pop909_check(b)
        scale_runs(b)
        data = b.data
        data["machine"] = paths.machine()
        print(f"finished in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    text = cells.publish(data, summarise, render, json_path, md_path)
    if not data["config"]["smoke"]:
        write_doc(data)
    print(text)


if __name__ == "__main__":
    main()
